"""Funnel against the peers a user would pick instead, from the studies of scripts/reproduce_peers.py (one study root
per workload, each tuned by experiments/protocol.py).

    python -m experiments.peers multirun/peers --out results/peers

Per workload: every method's tuning (trials, pick, edges), its final test accuracy one-shot (documented defaults)
and tuned, its paired difference to the workload's baseline, and steps to the tuned baseline's accuracy; across
workloads, AlgoPerf-style performance profiles (profiles.png, .pdf, .svg; one line per method, named by its label)
and a plain account of where Funnel wins and loses. Each workload's runs must be one peers experiment
(configs/experiment/peers_*.yaml); anything else stops it with one line naming what it found.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from experiments import analysis, compare, stats
from experiments.checks import Expect, check, cli, one_experiment, peers_experiments
from experiments.plots import plt, save
from experiments.provenance import markdown, provenance
from experiments.runs import readable

COLUMNS = ("one_shot", "tuned")
TAUS = np.linspace(1.0, 4.0, 301)  # AlgoPerf's range of performance ratios


def role(name: str, baseline: str) -> str:
    """A method's line in the profiles: the baseline and the wrappers are a different optimizer per workload (over
    AdaGrad, over momentum) and get one line each, so that every line covers every workload."""
    return "baseline" if name == baseline else re.sub(r"^(mechanic|sf_wrap)_\w+$", r"\1", name)


def role_labels(summary: dict) -> dict[str, str]:
    """Each profile line's name: its methods' labels (one per workload where they differ), "baseline: ..." for the
    baselines; a readable name where a method has no label."""
    labels: dict[str, list[str]] = {}
    for data in summary.values():
        for name, m in data["methods"].items():
            labels.setdefault(role(name, data["baseline"]), []).append(m.get("label") or readable(name))
    return {r: ("baseline: " if r == "baseline" else "") + " / ".join(dict.fromkeys(ls)) for r, ls in labels.items()}


def summarize_workload(root: Path) -> dict:
    record = json.loads((root / "protocol.json").read_text())
    study = record["study"]
    metric, test_key = study["metric"], study["metric"].replace("val/", "test/", 1)
    baseline = next(iter(record["methods"]))
    columns = {}
    for column, field in (("tuned", "finals"), ("one_shot", "one_shot")):
        columns[column] = {name: compare.runs_in(root, entry.get(field, []))
                           for name, entry in record["methods"].items()}
    every = [r for c in columns.values() for rs in c.values() for r in rs] + compare.tuning_runs(root, record)
    check(every, Expect("peers", experiment=peers_experiments(), source="a root of scripts/reproduce_peers.py"))
    one_experiment(every, "peers")
    base_runs = [r for r in columns["tuned"][baseline] if analysis.finished(r)]
    phases = len(analysis.phase_bounds(base_runs[0]))
    targets = [float(np.median([analysis.phase_end_values(r, metric)[k] for r in base_runs])) for k in range(phases)]
    budget = base_runs[0].summary["total_steps"]
    methods = {}
    for name, entry in record["methods"].items():
        m = {"label": entry["label"], "entry": entry}
        for column in COLUMNS:
            runs = columns[column][name]
            m[column] = {"final": compare.by_seed(runs, lambda r: analysis.final(r, test_key)),
                         "steps": compare.by_seed(runs, lambda r: analysis.steps_to_targets(r, metric, targets)),
                         "n": len(runs), "failed": sum(not analysis.finished(r) for r in runs)}
        methods[name] = m
    for m in methods.values():
        for column in COLUMNS:
            b = methods[baseline]["tuned"]
            d = stats.paired(m[column]["final"], b["final"])
            m[column]["vs_baseline"] = vars(d) | {"verdict": stats.verdict(d, "higher", "lower")}
            d, word = stats.time_verdict(m[column]["steps"], b["steps"], budget)
            m[column]["steps_vs_baseline"] = vars(d) | {"verdict": word}
    runs = [r for c in columns.values() for rs in c.values() for r in rs]
    return {"study": study, "baseline": baseline, "targets": targets, "budget": budget, "methods": methods,
            "runs": runs, "tune_runs": compare.tuning_runs(root, record)}


def median_steps(values: dict) -> float:
    vals = [math.inf if v is None or not math.isfinite(v) else v for v in values.values()]
    return float(np.median(vals)) if vals else math.inf


def profiles(summary: dict, column: str) -> dict[str, list[float]]:
    """Per role, its performance ratio on each workload: median steps to the target over the best method's (∞ for
    a method whose median misses, or on a workload where no method reaches it)."""
    ratios: dict[str, list[float]] = {}
    for data in summary.values():
        medians = {name: median_steps(m[column]["steps"]) for name, m in data["methods"].items()}
        best = min(medians.values())
        for name, t in medians.items():
            ratios.setdefault(role(name, data["baseline"]), []).append(t / best if math.isfinite(best) else math.inf)
    return ratios


# The profiles run from 0 to 1: a margin below 0 keeps a method that reaches no target (a line at 0) off the
# x-axis, where the spine would hide it; the lines are drawn above the spines.
YLIM = (-0.08, 1.08)


def plot_profiles(summary: dict, out: Path) -> Path:
    """profiles.png, .pdf and .svg; returns the PNG's path."""
    return save(profile_figure(summary), out)


def profile_figure(summary: dict):
    names = role_labels(summary)
    colors = [plt.cm.tab20(k) for k in (*range(0, 20, 2), *range(1, 20, 2))]  # 11+ lines: strong colours first
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharey=True)
    for ax, column in zip(axes, COLUMNS):
        for k, (name, rs) in enumerate(profiles(summary, column).items()):
            ax.step(TAUS, [np.mean([r <= t for r in rs]) for t in TAUS], where="post", label=names[name],
                    lw=2.5 if name == "funnel" else 1.2, color=colors[k % 20], zorder=3, clip_on=False)
        ax.set(xlabel="τ (steps to target over the best method's)", title=column.replace("_", "-"), ylim=YLIM,
               xlim=(1, 4))
    axes[0].set_ylabel(f"fraction of the {len(summary)} workloads\nwith ratio ≤ τ")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3)
    fig.suptitle("Performance profiles (AlgoPerf): higher and further left is better")
    rows = -(-len(names) // 3)
    fig.tight_layout(rect=(0, 0.05 + 0.045 * rows, 1, 1))
    return fig


def verdicts(summary: dict) -> list[str]:
    """Where Funnel wins and loses: its tuned final accuracy paired against every other tuned method."""
    lines = []
    for workload, data in summary.items():
        funnel = data["methods"]["funnel"]["tuned"]
        beats, loses, ties, unjudged = [], [], [], []
        for name, m in data["methods"].items():
            if name == "funnel":
                continue
            d = stats.paired(funnel["final"], m["tuned"]["final"])
            if d.n < 2:
                unjudged.append(f"{m['label']} ({d.mean:+.2f})" if d.n else m["label"])
                continue
            word = stats.verdict(d, "higher", "lower")
            text = f"{m['label']} ({d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}])"
            {"higher": beats, "lower": loses}.get(word, ties).append(text)
        line = (f"- {workload}: tuned Funnel is higher than {', '.join(beats) or 'none'}; lower than "
                f"{', '.join(loses) or 'none'}; no detectable difference from {', '.join(ties) or 'none'}")
        if unjudged:
            line += f"; fewer than two paired seeds, no verdict: {', '.join(unjudged)}"
        lines.append(line + ".")
    return lines


def cell_final(values: dict) -> str:
    return analysis.fmt(*analysis.mean_std(values.values())[:2])


def write(summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot_profiles(summary, out / "profiles.png")
    any_study = next(iter(summary.values()))["study"]
    seeds = max(len(m["tuned"]["final"]) for data in summary.values() for m in data["methods"].values())
    md = ["# Funnel against the peers a user would pick instead", "",
          "Protocol (experiments/protocol.py, configs/tuning/peers_*.yaml): every method gets "
          f"**{any_study['budget']} Halton trials** over its own search space (configs/search/), plus half that "
          "many per extension where its pick was the most extreme trial of an open range, chosen on validation at "
          f"seed {any_study['selection_seed']}; finals at seeds {any_study['seeds']}, paired. *One-shot*: the "
          f"method's documented defaults, untuned, at the same seeds. Final test top-1 (%), "
          f"{stats.spread_text(seeds)}. "
          "*− baseline*: the paired difference to the tuned baseline, mean [95% t-interval], wins out of seeds, "
          "and a verdict word only where the interval excludes 0. *Steps to target*: steps from each phase's "
          "start until the validation metric reaches the tuned baseline's median end-of-phase value, summed over "
          "phases; the median over seeds (∞ if most never get there; a miss counts as the whole run in the paired "
          "difference).", "",
          "## Where Funnel wins and where it loses", "", *verdicts(summary), "", "![profiles](profiles.png)", "",
          "Performance profiles (also profiles.pdf, profiles.svg): one line per method, named by its label; the "
          "baseline and the wrappers are a different optimizer per workload, named by each one's label.", ""]
    csv_rows = []
    for workload, data in summary.items():
        study = data["study"]
        rows = []
        for name, m in data["methods"].items():
            entry = m["entry"]
            row = {"method": m["label"], "trials": " + ".join(str(r["trials"]) for r in entry["rounds"]),
                   "diverged trials": entry["diverged_trials"],
                   "pick": ", ".join(f"{compare.short(k)}={compare.value_text(v)}" for k, v in entry["pick"].items()),
                   "pick at an edge?": compare.edge_text(entry)}
            for column in COLUMNS:
                c = m[column]
                label = column.replace("_", "-")
                row[f"{label} top-1"] = cell_final(c["final"]) + (f" ({c['failed']} failed)" if c["failed"] else "")
                d = c["vs_baseline"]
                row[f"{label} − baseline"] = compare.paired_cell(stats.Paired(
                    d["mean"], d["low"], d["high"], d["wins"], d["n"]), d["verdict"]) if name != data["baseline"] or \
                    column == "one_shot" else "–"
                row[f"{label} steps to target"] = compare.median_text(list(c["steps"].values()))
            rows.append(row)
            csv_rows.append({"workload": workload, **row})
        md += [f"## {workload} (`experiment={study['experiment']}`, selection on `{study['metric']}` "
               f"{study['reduce']}; baseline: {data['methods'][data['baseline']]['label']})", "",
               f"Targets per phase: {', '.join(f'{t:.2f}' for t in data['targets'])}", "",
               *compare.markdown_table(rows), ""]
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    runs = [r for data in summary.values() for r in data["runs"] + data["tune_runs"]]
    prov = provenance(runs)
    prov["commands"] = ["python scripts/reproduce_peers.py"]
    md.append(markdown(prov))
    (out / "table.md").write_text("\n".join(md))
    (out / "summary.json").write_text(json.dumps({"workloads": {
        w: {"funnel": d["methods"]["funnel"]["label"], "baseline": d["methods"][d["baseline"]]["label"],
            "funnel_vs_baseline": d["methods"]["funnel"]["tuned"]["vs_baseline"],
            "methods": {n: {c: {"vs_baseline": m[c]["vs_baseline"], "steps_vs_baseline": m[c]["steps_vs_baseline"]}
                            for c in COLUMNS} for n, m in d["methods"].items()}}
        for w, d in summary.items()}}, indent=2) + "\n")


@cli
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="one study root per workload under it (each holds protocol.json)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    roots = sorted(p.parent for p in Path(args.root).glob("*/protocol.json"))
    if not roots:
        raise FileNotFoundError(f"no study under {args.root}: run python scripts/reproduce_peers.py first")
    summary = {root.name: summarize_workload(root) for root in roots}
    write(summary, Path(args.out))
    print("\n".join(verdicts(summary)))
    print(f"wrote {args.out}/table.md, table.csv, summary.json, profiles.png (and .pdf, .svg)")


if __name__ == "__main__":
    main()
