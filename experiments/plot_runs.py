"""Plot the runs under a directory: an accuracy metric over training (phase shifts marked) and, for Funnel runs,
the per-layer step-size scales and the sampled gains.

    python -m experiments.plot_runs multirun/quick [--metric test/current/top1] [--out curves.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.runs import find_runs  # noqa: E402


def plot(root: str | Path, metric: str = "test/current/top1", out: str | Path | None = None) -> Path:
    runs = find_runs(root)
    funnel_runs = [r for r in runs if r.keys("scale/")]
    ncols = 1 + 2 * bool(funnel_runs)
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4.2), squeeze=False)
    ax = axes[0, 0]
    for run in runs:
        steps, values = run.series(metric)
        ax.plot(steps, values, label=run.label)
    for step, phase in runs[0].phase_starts():
        ax.axvline(step, color="gray", ls="--", lw=0.8)
        ax.text(step, ax.get_ylim()[0], f" {phase}", color="gray", va="bottom", fontsize=8)
    ax.set(xlabel="step", ylabel=metric, title=f"{metric} over training")
    ax.legend(fontsize=8)
    if funnel_runs:
        run = funnel_runs[-1]
        for key in run.keys("scale/"):
            ax_steps, values = run.series(key)
            axes[0, 1].plot(ax_steps, values, label=key[len("scale/"):])
        axes[0, 1].set(xlabel="step", ylabel="scale s", title=f"step-size scales ({run.label})")
        axes[0, 1].legend(fontsize=7)
        names = [k[len("gain/"):] for k in run.gains if k.startswith("gain/")]
        if names:
            gains = run.gains[f"gain/{names[0]}"]
            axes[0, 2].plot(run.gains["step"], gains, lw=0.9)
            axes[0, 2].set(xlabel="step", ylabel="gain p", title=f"gains of {gains.shape[1]} coordinates of {names[0]}")
        for a in axes[0, 1:]:
            for step, _ in run.phase_starts():
                a.axvline(step, color="gray", ls="--", lw=0.8)
    fig.tight_layout()
    out = Path(out) if out else Path(root) / "curves.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="a run directory or a sweep directory holding several")
    parser.add_argument("--metric", default="test/current/top1")
    parser.add_argument("--out", default=None, help="PNG path (default: <root>/curves.png)")
    args = parser.parse_args(argv)
    out = plot(args.root, args.metric, args.out)
    for run in find_runs(args.root):
        final = (run.summary or {}).get("final", {})
        value = final.get(args.metric, float("nan"))
        print(f"{run.label}: {args.metric} = {value:.2f}   metrics: {run.path / 'metrics.jsonl'}")
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
