"""Plot the runs under a directory (one experiment's): an accuracy metric over training (phase shifts marked) and,
for Funnel runs, the per-layer step-size scales and the sampled gains of one run, named in its panel titles.
Curves are labelled by each run's label (its config's `label`), with the seed where an arm has several.

    python -m experiments.plot_runs multirun/quick [--metric test/current/top1] [--out curves.png]

Writes the figure as PNG, PDF and SVG.
"""
from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path

from experiments import analysis
from experiments.checks import cli, one_experiment
from experiments.plots import mark_phases, plt, save, wrap
from experiments.runs import Run, find_runs


def legend_label(run: Run, runs: list[Run]) -> str:
    """The run's label; with its seed where several runs share that label."""
    shared = Counter(r.arm for r in runs)[run.arm] > 1
    return f"{run.arm}, seed {run.seed}" if shared else run.arm


def draw(runs: list[Run], metric: str = "test/current/top1"):
    """The figure: `metric` of every run, and for the last Funnel run its scales and gains."""
    one_experiment(runs, "plot_runs")
    funnel_runs = [r for r in runs if r.keys("scale/")]
    ncols = 1 + 2 * bool(funnel_runs)
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4.6), squeeze=False)
    ax = axes[0, 0]
    for run in runs:
        steps, values = run.series(metric)
        ax.plot(steps, values, label=legend_label(run, runs))
    ax.set(xlabel="step", ylabel=metric, title=f"{metric} over training")
    ax.legend()
    mark_phases(ax, runs[0])
    if funnel_runs:
        run = funnel_runs[-1]
        for key in run.keys("scale/"):
            ax_steps, values = run.series(key)
            axes[0, 1].plot(ax_steps, values, label=key[len("scale/"):])
        axes[0, 1].set(xlabel="step", ylabel="scale s", title=wrap(f"step-size scales of\n{run.which()}"))
        axes[0, 1].legend()
        names = [k[len("gain/"):] for k in run.gains if k.startswith("gain/")]
        if names:
            gains = run.gains[f"gain/{names[0]}"]
            axes[0, 2].plot(run.gains["step"], gains, lw=0.9)
            axes[0, 2].set(xlabel="step", ylabel="gain p",
                           title=f"gains of {gains.shape[1]} coordinates of {names[0]}")
        for a in axes[0, 1:]:
            mark_phases(a, run)
    fig.tight_layout()
    return fig


def plot(root: str | Path, metric: str = "test/current/top1", out: str | Path | None = None) -> Path:
    """The figure of the runs under `root` into `out` (default <root>/curves.png) and its PDF and SVG."""
    return save(draw(find_runs(root), metric), Path(out) if out else Path(root) / "curves.png")


@cli
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="a run directory or a sweep directory holding several")
    parser.add_argument("--metric", default="test/current/top1")
    parser.add_argument("--out", default=None, help="PNG path (default: <root>/curves.png; .pdf and .svg beside it)")
    args = parser.parse_args(argv)
    runs = find_runs(args.root)  # read once: what is wrong with a run's files is said once
    out = save(draw(runs, args.metric), Path(args.out) if args.out else Path(args.root) / "curves.png")
    for run in runs:
        value = analysis.final(run, args.metric)  # None where the run did not finish (or is inconsistent)
        shown = f"{math.nan if value is None else value:.2f}" + ("" if analysis.finished(run) else f" ({run.status})")
        print(f"{run.arm}, seed {run.seed}: {args.metric} = {shown}   metrics: {run.path / 'metrics.jsonl'}")
    print(f"plot: {out} (and .pdf, .svg)")


if __name__ == "__main__":
    main()
