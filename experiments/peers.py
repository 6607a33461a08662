"""The peer comparison: Funnel and its baseline against Schedule-Free, Prodigy, D-Adaptation and DoG, from the runs
of scripts/reproduce_peers.py (its protocol.json says which lr each method got).

    python -m experiments.peers multirun/peers --out results/peers

Per workload: final test accuracy, one-shot (documented defaults) and tuned (best of a 3-point lr grid on
validation), mean +- std over seeds; steps and seconds to a target through every phase; an AlgoPerf-style performance
profile over the workloads; and a plain account of where Funnel wins and loses.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from experiments import analysis
from experiments.plots import plt
from experiments.provenance import markdown, provenance
from experiments.runs import Run, find_runs
from funnel.optim.registry import PEER, REGISTRY

COLUMNS = ("one-shot", "tuned")
TARGET_FRACTION = 0.97


def runs_at(runs: list[Run], lr: float) -> list[Run]:
    return [r for r in runs if math.isclose(r.config["optimizer"]["lr"], lr, rel_tol=1e-9)]


def end_of_phase(run: Run, key: str) -> list[float | None]:
    return analysis.phase_end_values(run, key) if analysis.finished(run) else [None] * len(run.summary["phases"])


def time_through_phases(run: Run, key: str, targets: list[float]) -> tuple[float, float]:
    """Steps and seconds spent reaching each phase's target from the phase's start, summed; inf if any phase
    (or the run) never gets there."""
    if not analysis.finished(run):
        return math.inf, math.inf
    steps = seconds = 0.0
    for (_, start, end), target in zip(analysis.phase_bounds(run), targets):
        s, t = analysis.time_to_target(run, key, target, start=start)
        if s is None or start + s > end:
            return math.inf, math.inf
        steps, seconds = steps + s, seconds + (t or 0.0)
    return steps, seconds


def median_or_inf(values: list[float]) -> float:
    """The median, inf when more than half of the values are inf (most seeds never reached the target)."""
    return float(np.median(values)) if values else math.inf


def summarize(root: Path) -> dict:
    protocol = json.loads((root / "protocol.json").read_text())
    out = {}
    for workload, spec in protocol.items():
        metric = spec["metric"]
        test_key = metric.replace("val/", "test/", 1)
        groups = {}
        for method, lrs in spec["methods"].items():
            runs = find_runs(root / workload / method)
            groups[method] = {"one-shot": runs_at(runs, lrs["default_lr"]), "tuned": runs_at(runs, lrs["chosen_lr"])}
        phases = max(len(r.summary["phases"]) for g in groups.values() for rs in g.values() for r in rs if r.summary)
        targets = []
        for k in range(phases):
            means = [analysis.mean_std([end_of_phase(r, metric)[k] for r in rs])[0]
                     for g in groups.values() for rs in g.values()]
            targets.append(TARGET_FRACTION * max(m for m in means if math.isfinite(m)))
        rows = {}
        for method, g in groups.items():
            lrs = spec["methods"][method]
            row = {"default lr": lrs["default_lr"], "chosen lr": lrs["chosen_lr"],
                   "at grid edge": any(math.isclose(lrs["chosen_lr"], edge, rel_tol=1e-9)
                                       for edge in (min(lrs["grid"]), max(lrs["grid"])))}
            for column, rs in g.items():
                row[column] = {
                    "final": analysis.mean_std([analysis.final(r, test_key) for r in rs]),
                    "mean over training": analysis.mean_std([analysis.mean_over_evaluations(r, test_key)
                                                             for r in rs if analysis.finished(r)]),
                    "time": [time_through_phases(r, metric, targets) for r in rs],
                    "n": len(rs), "diverged": sum(analysis.diverged(r) for r in rs)}
            rows[method] = row
        out[workload] = {"spec": spec, "targets": targets, "test_key": test_key, "rows": rows,
                         "runs": [r for g in groups.values() for rs in g.values() for r in rs]}
    return out


def role(method: str) -> str:
    """The method's line in a performance profile: a peer under its own name; Funnel and the plain baseline, which
    are a different optimizer on each workload (over AdaGrad, over momentum), under one name each, so that every
    line covers every workload."""
    if method.startswith("funnel"):
        return "Funnel"
    return method if REGISTRY[method].description.startswith(PEER) else "baseline"


def profile(summary: dict, column: str) -> dict[str, list[float]]:
    """Per role, its performance ratio on each workload: median steps to target over the best method's."""
    ratios: dict[str, list[float]] = {}
    for data in summary.values():
        medians = {m: median_or_inf([s for s, _ in row[column]["time"]]) for m, row in data["rows"].items()}
        best = min(medians.values())
        for m, t in medians.items():
            ratios.setdefault(role(m), []).append(t / best if math.isfinite(best) else math.inf)
    return ratios


def plot_profiles(summary: dict, out: Path) -> None:
    members: dict[str, list[str]] = {}
    for data in summary.values():
        for m in data["rows"]:
            if m not in members.setdefault(role(m), []):
                members[role(m)].append(m)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, column in zip(axes, COLUMNS):
        ratios = profile(summary, column)
        finite = [r for rs in ratios.values() for r in rs if math.isfinite(r)]
        taus = np.logspace(0, math.log10(max(finite + [2.0]) * 1.5), 200)
        for name, rs in ratios.items():
            label = name if members[name] == [name] else f"{name} ({', '.join(members[name])})"
            ax.step(taus, [np.mean([r <= t for r in rs]) for t in taus], where="post", label=label,
                    lw=2.5 if name == "Funnel" else 1.2)
        ax.set(xscale="log", xlabel="τ (steps to target over the best method's)", title=f"{column}",
               ylim=(-0.02, 1.02))
    axes[0].set_ylabel(f"fraction of the {len(summary)} workloads with ratio ≤ τ")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8)  # below both panels
    fig.suptitle("Performance profiles (AlgoPerf-style): higher and further left is better", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def verdicts(summary: dict) -> list[str]:
    lines = []
    for workload, data in summary.items():
        rows = data["rows"]
        funnel = next(m for m in rows if m.startswith("funnel"))
        for column in COLUMNS:
            finals = {m: row[column]["final"][0] for m, row in rows.items()}
            order = sorted(finals, key=lambda m: -finals[m] if math.isfinite(finals[m]) else math.inf)
            times = {m: median_or_inf([s for s, _ in row[column]["time"]]) for m, row in rows.items()}
            t_order = sorted(times, key=lambda m: times[m])
            best = order[0]
            t = times[funnel]
            if not math.isfinite(times[t_order[0]]):
                timing = "no method reaches the target"
            elif not math.isfinite(t):
                timing = f"it never reaches the target (fastest: {t_order[0]}, {int(times[t_order[0]]):,} steps)"
            else:
                timing = (f"it reaches the target in {int(t):,} steps, {t_order.index(funnel) + 1} of {len(t_order)}"
                          + (f" (fastest: {t_order[0]}, {int(times[t_order[0]]):,})" if t_order[0] != funnel else ""))
            lines.append(
                f"- {workload}, {column}: Funnel ({funnel}) {analysis.fmt(*rows[funnel][column]['final'][:2])} is "
                f"{order.index(funnel) + 1} of {len(order)} on final test top-1"
                + (f" (best: {best}, {analysis.fmt(*rows[best][column]['final'][:2])})" if best != funnel else "")
                + f"; {timing}.")
    return lines


def write(summary: dict, out: Path, sweeps: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot_profiles(summary, out / "profiles.png")
    md = ["# Funnel against the peers a user would pick instead", "",
          "Protocol (scripts/reproduce_peers.py): the same step budget and seeds for every method; *one-shot* is the "
          "method's documented defaults; *tuned* is the best of lr × {1/3, 1, 3} around them on the validation "
          "metric (seed 0), then all seeds at that lr; *(edge)* marks a tuned lr at an end of its grid, where a wider "
          "grid might have found a better one. Final test top-1 (%) mean ± std over seeds. *Steps to "
          f"target*: steps from each phase's start until the validation metric reaches {TARGET_FRACTION:.0%} of the "
          "best method's mean end-of-phase value, summed over phases (the median over seeds; ∞ if never).", "",
          "## Where Funnel wins and where it loses", "", *verdicts(summary), "", "![profiles](profiles.png)", ""]
    csv_rows = []
    for workload, data in summary.items():
        spec = data["spec"]
        md += [f"## {workload} (`experiment={spec['experiment']}`, selection on `{spec['metric']}` {spec['reduce']})",
               "", f"Targets per phase: {', '.join(f'{t:.2f}' for t in data['targets'])}", "",
               "| method | default lr | tuned lr | one-shot top-1 | tuned top-1 | one-shot steps to target | "
               "tuned steps to target | tuned seconds to target | mean test top-1 over training (tuned) | "
               "diverged (one-shot / tuned) |", "|" + "---|" * 10]
        for method, row in data["rows"].items():
            cells = {"workload": workload, "method": method, "default lr": f"{row['default lr']:.4g}",
                     "tuned lr": f"{row['chosen lr']:.4g}", "tuned lr at grid edge": row["at grid edge"]}
            for column in COLUMNS:
                r = row[column]
                steps = median_or_inf([s for s, _ in r["time"]])
                seconds = median_or_inf([t for _, t in r["time"]])
                cells[f"{column} top-1"] = analysis.fmt(*r["final"][:2])
                cells[f"{column} steps to target"] = f"{steps:,.0f}" if math.isfinite(steps) else "∞"
                cells[f"{column} seconds to target"] = f"{seconds:.1f}" if math.isfinite(seconds) else "∞"
                cells[f"{column} n"] = r["n"]
                cells[f"{column} diverged"] = r["diverged"]
            cells["mean over training (tuned)"] = analysis.fmt(*row["tuned"]["mean over training"][:2])
            edge = " (edge)" if row["at grid edge"] else ""
            md.append(f"| {method} | {cells['default lr']} | {cells['tuned lr']}{edge} | {cells['one-shot top-1']} | "
                      f"{cells['tuned top-1']} | {cells['one-shot steps to target']} | "
                      f"{cells['tuned steps to target']} | {cells['tuned seconds to target']} | "
                      f"{cells['mean over training (tuned)']} | {cells['one-shot diverged']} / "
                      f"{cells['tuned diverged']} |")
            csv_rows.append(cells)
        md.append("")
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    runs = [r for data in summary.values() for r in data["runs"]]
    md.append(markdown(provenance(runs, sweeps)))
    (out / "table.md").write_text("\n".join(md))
    (out / "protocol.json").write_text(json.dumps({w: d["spec"] for w, d in summary.items()}, indent=2) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="the runs of scripts/reproduce_peers.py (holds protocol.json)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    root = Path(args.root)
    summary = summarize(root)
    sweeps = sorted(p.parent for p in root.rglob("multirun.yaml"))
    write(summary, Path(args.out), sweeps)
    print("\n".join(verdicts(summary)))
    print(f"wrote {args.out}/table.md, table.csv, profiles.png")


if __name__ == "__main__":
    main()
