"""Figure 4 of the Funnel paper: (a) step-size scales of two depthwise and two pointwise layers of MobileNetV1 over
training, (b) gains of sampled coordinates in two layers. Reads a Funnel run (the lowest seed of the arms whose
labels name Funnel). For other models the first two and last two layers with a scale stand in.

    python -m experiments.fig4_scales_gains multirun/mobilenet_cifar10 --out results/mobilenet_cifar10/figure4.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

from experiments import analysis
from experiments.plots import plt
from experiments.runs import by_arm, find_runs


def pick_layers(names: list[str]) -> list[str]:
    depthwise = [n for n in names if "conv_dw" in n]
    pointwise = [n for n in names if "conv_pw" in n]
    if depthwise and pointwise:
        return [depthwise[0], depthwise[-1], pointwise[0], pointwise[-1]]
    weights = [n for n in names if n.endswith("weight")] or names
    return list(dict.fromkeys(weights[:2] + weights[-2:]))


def funnel_runs(root: str | Path) -> list:
    """The finished runs under `root` of the arms whose label names Funnel."""
    groups = by_arm(find_runs(root))
    return [r for arm, runs in groups.items() if "Funnel" in arm for r in runs if analysis.finished(r)]


def figure(runs: list, out: str | Path) -> Path | None:
    """Figure 4 from the lowest-seed run of `runs` (Funnel runs, finished); None without one."""
    if not runs:
        return None
    run = min(runs, key=lambda r: r.config.get("seed", 0))
    names = [k[len("scale/"):] for k in run.keys("scale/")]
    layers = pick_layers(names)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    for name in layers:
        steps, values = run.series(f"scale/{name}")
        axes[0].plot(steps, values, label=name)
    axes[0].set(xlabel="step", ylabel="scale s", title="(a) step-size scales per layer")
    axes[0].legend(fontsize=7)
    gain_layers = [n for n in layers if f"gain/{n}" in run.gains][:2] or \
        [k[len("gain/"):] for k in run.gains if k.startswith("gain/")][:2]
    for name, style in zip(gain_layers, ("-", "--")):
        axes[1].plot(run.gains["step"], run.gains[f"gain/{name}"], style, lw=0.9)
    styles = ", ".join(f"{name} ({style})" for name, style in zip(gain_layers, ("solid", "dashed")))
    axes[1].set(xlabel="step", ylabel="gain p", title=f"(b) gains of sampled coordinates\n{styles}")
    fig.suptitle(f"{run.arm}, seed {run.config.get('seed')}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = figure(funnel_runs(args.root), args.out)
    print(f"wrote {out}" if out else f"no finished Funnel run under {args.root}")


if __name__ == "__main__":
    main()
