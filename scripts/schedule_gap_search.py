"""The search record of the CPU Table 1 workload: which settings make the lr schedule matter.

Every run under ROOT is Momentum on Fashion-MNIST with the staircase schedule (x0.1 at 50% and 75%) or without it;
runs whose resolved configs differ only in the schedule are paired, and the gap (scheduled - constant, final test
top-1) is reported per setting with mean ± std over the seeds that ran, the runs that were not ok (chance-level,
diverged), and the wall time each took. Runs stopped by hand (no summary.json) have no result and are left out
of the table; the results README counts them. Writes the table as markdown.

    python -m scripts.schedule_gap_search /work/search/table1_fashion --out results/table1_cpu_fashion/search.md
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from experiments import analysis, compare
from experiments.runs import find_runs


def setting_of(run) -> tuple[bool, tuple, int]:
    """(scheduled?, the setting, seed) read off the run's resolved config."""
    c = run.config
    scheduled = not c["schedule"]["_target_"].endswith("Constant")
    setting = (c["model"].get("width"), c["model"].get("batch_norm", False), c["dataset"].get("augment", False),
               c["optimizer"].get("weight_decay", 0), c["trainer"]["epochs"], c["optimizer"]["lr"])
    return scheduled, setting, c["seed"]


def status(run) -> str:
    if not analysis.finished(run):
        return run.status
    return "chance" if analysis.final(run, "test/top1") < 20 else "ok"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    cells: dict[tuple, dict[bool, dict[int, object]]] = defaultdict(lambda: defaultdict(dict))
    for run in find_runs(args.root):
        if run.summary is None:  # a run stopped early has no summary: its config is in its checkpoint, if any
            continue
        scheduled, setting, seed = setting_of(run)
        cells[setting][scheduled][seed] = run
    top1 = lambda r: analysis.final(r, "test/top1")
    rows = []
    for setting in sorted(cells):
        sched, const = cells[setting][True], cells[setting][False]
        s = {k: top1(r) for k, r in sched.items()}
        c = {k: top1(r) for k, r in const.items()}
        gaps = [s[k] - c[k] for k in s if k in c and s[k] is not None and c[k] is not None]
        runs = [*sched.values(), *const.values()]
        bad = [word for word in map(status, runs) if word != "ok"]
        rows.append({**dict(zip(("width", "BatchNorm", "crop + flip", "weight decay", "epochs", "lr"), setting)),
                     "seeds": sorted(set(s) | set(c)),
                     "scheduled top-1": analysis.fmt(*analysis.mean_std(list(s.values()))[:2]),
                     "constant top-1": analysis.fmt(*analysis.mean_std(list(c.values()))[:2]),
                     "gap": analysis.fmt(*analysis.mean_std(gaps)[:2]), "runs not ok": ", ".join(bad) or "0",
                     "wall s per run": f"{np.mean([r.summary['wall_time_s'] for r in runs]):.0f}"})
    rows = compare.markdown_table(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
