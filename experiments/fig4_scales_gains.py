"""Figure 4 of the Funnel paper: (a) the step-size scales of four layers over training, (b) the gains of the
coordinates sampled in those layers; with the paper's description of them checked in words.

Drawn from every finished Funnel run given (one per seed): the scales as the mean over seeds with a +-1 std band, the
gains as the median and the 10-90% quantile band over the sampled coordinates of all seeds. The layers: the ones
named, else two depthwise and two pointwise convolutions of MobileNetV1 (as the paper shows), else the first two
and last two weights.

Which runs: under a study root (protocol.json), the finals of its `funnel` method (or --method); under any other
directory, the finished runs of its one Funnel arm (or the arm labelled --method). The figure's title and the caption
written beside it (figure4.md) name them: directories relative to the root, label, seeds. Saved as PNG, PDF and SVG.

    python -m experiments.fig4_scales_gains multirun/mobilenet_cifar10 --out results/mobilenet_cifar10/figure4.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments import analysis, compare
from experiments.checks import WrongRuns, cli, judged, one_experiment
from experiments.plots import band, plt, save, wrap
from experiments.runs import Run, by_arm, find_runs, which

RISE = 1.05  # a gain "rises first" when it climbs 5% above its start and ends 5% below its peak


def pick_layers(names: list[str], wanted: tuple[str, ...] = ()) -> list[str]:
    if wanted:
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"layers {missing} have no scale in the runs; layers with one: {names}")
        return list(wanted)
    depthwise = [n for n in names if "conv_dw" in n]
    pointwise = [n for n in names if "conv_pw" in n]
    if depthwise and pointwise:
        return [depthwise[0], depthwise[-1], pointwise[0], pointwise[-1]]
    weights = [n for n in names if n.endswith("weight")] or names
    return list(dict.fromkeys(weights[:2] + weights[-2:]))


def is_funnel(run: Run) -> bool:
    return str((run.config.get("optimizer") or {}).get("_target_", "")).endswith(".Funnel")


def funnel_runs(root: str | Path, method: str | None = None) -> list[Run]:
    """The finished runs Figure 4 draws from under `root`: one Funnel method's finals (see the module's doc)."""
    root = Path(root)
    if (root / "protocol.json").exists():
        _, arms = compare.load(root)
        funnels = [n for n, arm in arms.items() if not arm.ablation and any(map(is_funnel, arm.runs))]
        name = method or ("funnel" if "funnel" in funnels else funnels[0] if len(funnels) == 1 else None)
        if name not in arms:
            raise WrongRuns(f"fig4_scales_gains draws one Funnel method's finals; the study under {root} has "
                            f"{funnels or 'none'}{'' if method is None else f', not {method!r}'}: pick one with "
                            "--method")
        runs = arms[name].runs
    else:
        groups = {arm: runs for arm, runs in by_arm(find_runs(root)).items() if any(map(is_funnel, runs))}
        if method is None and len(groups) > 1:
            raise WrongRuns(f"fig4_scales_gains draws one Funnel arm; the runs under {root} have {len(groups)}: "
                            f"{list(groups)}: pick one with --method LABEL")
        if method is not None and method not in groups:
            raise WrongRuns(f"no Funnel arm labelled {method!r} under {root}; its Funnel arms: {list(groups)}")
        runs = groups.get(method, next(iter(groups.values()), []))
    check_funnel(runs, root)
    return [r for r in runs if analysis.finished(r)]


def check_funnel(runs: list[Run], root) -> None:
    """Figure 4's artefact: Funnel runs (they record scales and gains) of one experiment."""
    if not runs:
        raise WrongRuns(f"fig4_scales_gains draws Funnel runs (optimizer funnel.optim.Funnel), but found none under "
                        f"{root}: give it a study root or a directory of Funnel runs")
    others = [r for r, _ in judged(runs) if not is_funnel(r)]
    if others:
        raise WrongRuns(f"fig4_scales_gains draws Funnel runs (optimizer funnel.optim.Funnel), but "
                        f"{others[0].label} is {others[0].config.get('optimizer', {}).get('_target_')}")
    one_experiment(runs, "fig4_scales_gains")


def scale_names(run: Run) -> list[str]:
    return [k[len("scale/"):] for k in run.keys("scale/")]


def pooled_gains(runs: list[Run], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, gains (T, coordinates of all runs)) at the steps every run recorded."""
    usable = [r for r in runs if f"gain/{name}" in r.gains]
    if not usable:
        return np.zeros(0, dtype=int), np.zeros((0, 0))
    common = sorted(set.intersection(*(set(r.gains["step"].tolist()) for r in usable)))
    columns = []
    for r in usable:
        row = {s: i for i, s in enumerate(r.gains["step"].tolist())}
        columns.append(r.gains[f"gain/{name}"][[row[s] for s in common]])
    return np.asarray(common), np.concatenate(columns, axis=1)


def describe(runs: list[Run]) -> list[dict]:
    """The paper's description of Figure 4 checked on these runs: all scales decay (every layer's final scale below
    its first, mean over seeds), at different rates (the largest final / first ratio at least twice the smallest);
    some gains rise before they fall (see RISE). One record per claim: {"claim", "holds", "evidence"}; `sentence`
    words it."""
    names = scale_names(runs[0])
    ratios = {}
    for name in names:
        per_seed = []
        for r in runs:
            _, values = r.series(f"scale/{name}")
            if len(values) > 1 and values[0] > 0:
                per_seed.append(values[-1] / values[0])
        if per_seed:
            ratios[name] = float(np.mean(per_seed))
    if not ratios:
        return []
    decaying = [n for n, q in ratios.items() if q < 1]
    low, high = min(ratios, key=ratios.get), max(ratios, key=ratios.get)
    out = [{"claim": "All scales decay", "holds": len(decaying) == len(ratios),
            "evidence": f"{len(decaying)} of {len(ratios)} layers end below their start (final / first scale, "
                        + (f"mean over {len(runs)} seeds)" if len(runs) > 1 else "one seed)")},
           {"claim": "At different rates", "holds": ratios[high] > 2 * ratios[low],
            "evidence": f"final / first scale ranges from {ratios[low]:.3g} (`{low}`) to {ratios[high]:.3g} "
                        f"(`{high}`)"}]
    rising, total = 0, 0
    for name in names:
        _, gains = pooled_gains(runs, name)
        if gains.size == 0:
            continue
        peak = gains.max(0)
        rising += int(np.sum((peak >= RISE * gains[0]) & (gains[-1] * RISE <= peak)))
        total += gains.shape[1]
    if total:
        out.append({"claim": "Some gains rise first", "holds": rising > 0,
                    "evidence": f"{rising} of {total} sampled coordinates ({100 * rising / total:.1f}%) climb at "
                                f"least {100 * (RISE - 1):.0f}% above their start and end at least that far below "
                                "their peak"})
    return out


def sentence(check: dict) -> str:
    return f"{check['claim']}: {'yes' if check['holds'] else 'no'}: {check['evidence']}."


def caption(runs: list[Run]) -> str:
    """Which runs the figure draws: directories relative to their root, label, seeds."""
    return f"Drawn from {which(runs)}."


def spread_text(runs: list[Run]) -> str:
    return "mean ± std over seeds" if len(runs) > 1 else "one seed: no spread"


def figure(runs: list[Run], out: str | Path, layers: tuple[str, ...] = ()) -> Path | None:
    """Figure 4 from finished Funnel runs (seeds of one arm) into `out` (PNG, PDF, SVG); None without one."""
    if not runs:
        return None
    return save(draw(runs, layers), out)


def draw(runs: list[Run], layers: tuple[str, ...] = ()):
    chosen = pick_layers(scale_names(runs[0]), layers)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for name, color in zip(chosen, colors):
        band(axes[0], runs, f"scale/{name}", name, color)
        steps, gains = pooled_gains(runs, name)
        if gains.size:
            q10, q50, q90 = np.quantile(gains, [0.1, 0.5, 0.9], axis=1)
            axes[1].plot(steps, q50, color=color, label=f"{name} ({gains.shape[1]} coordinates)")
            axes[1].fill_between(steps, q10, q90, color=color, alpha=0.15)
    axes[0].set(xlabel="step", ylabel="scale s", title=f"(a) step-size scale per layer: {spread_text(runs)}")
    axes[1].set(xlabel="step", ylabel="gain p", title="(b) gains: median and 10-90% of sampled coordinates")
    for ax in axes:
        ax.legend()
    fig.suptitle(wrap(f"Figure 4: {which(runs)}", 110))
    fig.tight_layout()
    return fig


@cli
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--out", required=True, help="PNG path; .pdf, .svg and the caption (.md) go beside it")
    parser.add_argument("--layers", nargs="*", default=(), help="the parameter names to draw (default: see above)")
    parser.add_argument("--method", help="the study's method, or the arm's label, to draw (default: see above)")
    args = parser.parse_args(argv)
    runs = funnel_runs(args.root, args.method)
    if not runs:
        raise WrongRuns(f"no run of the chosen Funnel arm under {args.root} has finished yet")
    out = figure(runs, args.out, tuple(args.layers))
    lines = [caption(runs), *map(sentence, describe(runs))]
    out.with_suffix(".md").write_text(f"![Figure 4]({out.name})\n\n" + "\n".join(lines) + "\n")
    print("\n".join([f"wrote {out} (and .pdf, .svg, .md)", *lines]))


if __name__ == "__main__":
    main()
