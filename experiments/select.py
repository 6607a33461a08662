"""Pick the best point of a hyperparameter sweep on a validation metric, and record the choice.

    python -m experiments.select <sweep dir> --metric val/current/top1 --reduce mean --out results/x/selection
    python -m experiments.select <sweep dir> --metric val/top1 --print-overrides    # the chosen values, as overrides

The swept keys are the config keys whose values differ between the sweep's runs. A diverged run scores -inf.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from experiments.analysis import finished, mean_over_evaluations
from experiments.runs import Run, find_runs

REDUCERS = ("final", "mean", "best")


def flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def score(run: Run, metric: str, reduce: str) -> float:
    if not finished(run):
        return -math.inf
    if reduce == "mean":
        return mean_over_evaluations(run, metric)
    _, values = run.series(metric)
    if not len(values):
        raise ValueError(f"{run.path}: no values of {metric!r}; metrics it has: {run.keys('val')[:10]}")
    return float(values[-1] if reduce == "final" else values.max())


def swept_keys(runs: list[Run]) -> list[str]:
    flat = [flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1]


def override(key: str, value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return f"{key}={'null' if value is None else text}"


def select(root: str | Path, metric: str, reduce: str = "final") -> dict:
    if reduce not in REDUCERS:
        raise ValueError(f"--reduce must be one of {REDUCERS}")
    runs = find_runs(root)
    keys = swept_keys(runs)
    rows = []
    for run in runs:
        flat = flatten(run.config)
        rows.append({"run": run.label, "score": score(run, metric, reduce),
                     "status": (run.summary or {}).get("status", "unfinished"),
                     "values": {k: flat.get(k) for k in keys}})
    rows.sort(key=lambda r: r["score"], reverse=True)
    if not math.isfinite(rows[0]["score"]):
        raise ValueError(f"no run under {root} finished: nothing to select")
    return {"sweep": str(root), "metric": metric, "reduce": reduce, "swept": keys, "best": rows[0], "runs": rows}


def write(selection: dict, out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(selection, indent=2) + "\n")
    keys = selection["swept"]
    lines = [f"# Selection from `{selection['sweep']}`", "",
             f"Score: `{selection['metric']}`, {selection['reduce']} over each run's evaluations "
             f"({len(selection['runs'])} runs). Chosen: " +
             ", ".join(f"`{k}={selection['best']['values'][k]}`" for k in keys), "",
             "| " + " | ".join(keys + ["score", "status"]) + " |", "|" + "---|" * (len(keys) + 2)]
    for row in selection["runs"]:
        values = " | ".join(str(row["values"][k]) for k in keys)
        lines.append(f"| {values} | {row['score']:.3f} | {row['status']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep")
    parser.add_argument("--metric", required=True)
    parser.add_argument("--reduce", default="final", choices=REDUCERS)
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    parser.add_argument("--print-overrides", action="store_true", help="print only the chosen key=value overrides")
    args = parser.parse_args(argv)
    selection = select(args.sweep, args.metric, args.reduce)
    if args.out:
        write(selection, args.out)
    best = selection["best"]
    if args.print_overrides:
        print(" ".join(override(k, v) for k, v in best["values"].items()))
    else:
        print(f"best of {len(selection['runs'])}: {best['run']} ({args.metric} {args.reduce} = {best['score']:.3f})")


if __name__ == "__main__":
    main()
