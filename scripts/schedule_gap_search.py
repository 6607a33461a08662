"""The search record of the CPU Table 1 workload: which settings make the lr schedule matter.

Every run under ROOT is one setting of Momentum with the staircase schedule (x0.1 at 50% and 75%) or without it;
runs that differ only in the schedule are paired, and the gap (scheduled - constant, final test top-1) is reported
per setting with mean ± std over the seeds that ran, failures (chance-level or diverged runs) counted, and the wall
time each run took. Writes ROOT's table as markdown.

    python -m scripts.schedule_gap_search /work/search/table1_fashion --out results/table1_cpu_fashion/search.md
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from experiments import analysis
from experiments.runs import find_runs

SCHEDULED = "arm=cnn_momentum_schedule"
CONSTANT = "arm=cnn_momentum"


def setting_of(label: str) -> tuple[str, str, int]:
    """(schedule arm, the other overrides without the seed, seed) from a run folder's override name."""
    parts = label.split(",")
    arm = next(p for p in parts if p.startswith("arm="))
    seed = next((int(p[5:]) for p in parts if p.startswith("seed=")), 0)
    rest = ",".join(p for p in parts if p != arm and not p.startswith("seed="))
    return arm, rest, seed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    cells: dict[str, dict[str, dict[int, object]]] = defaultdict(lambda: defaultdict(dict))
    for run in find_runs(args.root):
        arm, rest, seed = setting_of(run.label)
        cells[rest][arm][seed] = run
    rows = ["| setting | seeds | scheduled top-1 | constant top-1 | gap (paired) | gap / std | failures | "
            "wall s per run |", "|---|---|---|---|---|---|---|---|"]
    for rest in sorted(cells):
        sched, const = cells[rest][SCHEDULED], cells[rest][CONSTANT]
        top1 = lambda r: analysis.final(r, "test/top1")
        s = {k: top1(r) for k, r in sched.items()}
        c = {k: top1(r) for k, r in const.items()}
        failures = sum(1 for r in [*sched.values(), *const.values()]
                       if not analysis.finished(r) or (top1(r) or 0) < 20)
        gaps = [s[k] - c[k] for k in s if k in c and s[k] is not None and c[k] is not None]
        g = analysis.mean_std(gaps)
        std = max(analysis.mean_std(list(s.values()))[1], analysis.mean_std(list(c.values()))[1])
        ratio = f"{g[0] / std:.1f}" if np.isfinite(std) and std > 0 and np.isfinite(g[0]) else "–"
        walls = [r.summary["wall_time_s"] for r in [*sched.values(), *const.values()] if r.summary]
        rows.append(f"| {rest} | {sorted(set(s) | set(c))} | {analysis.fmt(*analysis.mean_std(list(s.values()))[:2])} "
                    f"| {analysis.fmt(*analysis.mean_std(list(c.values()))[:2])} | {analysis.fmt(g[0], g[1])} | "
                    f"{ratio} | {failures} | {np.mean(walls):.0f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
