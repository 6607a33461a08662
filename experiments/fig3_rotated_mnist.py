"""Figure 3 of the Funnel paper from runs: rotated-noisy MNIST through distribution shifts.

    python -m experiments.fig3_rotated_mnist <finals dir> --out results/rotated_mnist/<variant> [--sweep DIR ...]

Writes figure3.png (a: top-1 on the current angle over training, shifts marked; b: step-size scales; c: gains of
sampled coordinates), table.md / table.csv (accuracy at the end of each phase, steps and seconds to recover 90% of
the pre-shift accuracy, mean +- std over seeds) and whether the paper's claim holds on these runs.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from experiments import analysis
from experiments.plots import band, mark_phases, plt
from experiments.provenance import markdown, provenance
from experiments.runs import by_arm, find_runs

CLAIM = ("the paper (section 4.1, Figure 3) prints no numbers; its claim is the ordering: Funnel recovers faster "
         "after each shift and stays higher than AdaGrad")
METRIC = "test/current/top1"


def pooled_std(a: float, b: float) -> float:
    return ((a**2 + b**2) / 2) ** 0.5


def build(root: str | Path, out: str | Path, sweeps=(), fraction: float = 0.9, title: str = "") -> dict:
    runs = find_runs(root)
    groups = by_arm(runs)
    method = next((a for a in groups if "Funnel" in a), None)
    baseline = next((a for a in groups if a != method), None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference = next(r for r in runs if r.summary)
    phases = [name for name, _, _ in analysis.phase_bounds(reference)]

    rows, stats = [], {}
    for arm, members in groups.items():
        done = [r for r in members if analysis.finished(r)]
        ends = [analysis.phase_end_values(r, METRIC) for r in done]
        recov = [analysis.recovery(r, METRIC, fraction) for r in done]
        row = {"arm": arm, "n": len(done), "diverged": sum(analysis.diverged(r) for r in members)}
        stats[arm] = {"end": [], "recovery": []}
        for k, phase in enumerate(phases):
            m, s, _ = analysis.mean_std([e[k] for e in ends])
            row[f"end of {phase} (top-1 %)"] = analysis.fmt(m, s)
            stats[arm]["end"].append((m, s))
        for k in range(len(phases) - 1):
            steps = [r[k][0] for r in recov]
            seconds = [r[k][1] for r in recov]
            m, s, n = analysis.mean_std(steps)
            ms, ss, _ = analysis.mean_std(seconds)
            row[f"recovery after shift {k + 1}: steps"] = analysis.fmt(m, s, 1) + (f" ({n}/{len(done)} recovered)"
                                                                                  if n < len(done) else "")
            row[f"recovery after shift {k + 1}: s"] = analysis.fmt(ms, ss, 2)
            stats[arm]["recovery"].append((m, s, n, len(done)))
        m, s, _ = analysis.mean_std([analysis.mean_over_evaluations(r, METRIC) for r in done])
        row["mean top-1 over training (%)"] = analysis.fmt(m, s)
        rows.append(row)

    verdict = []
    if method and baseline:
        fm, bm = stats[method], stats[baseline]
        for k, phase in enumerate(phases):
            (a, sa), (b, sb) = fm["end"][k], bm["end"][k]
            clear = abs(a - b) > pooled_std(sa, sb) if all(map(lambda x: x == x, (sa, sb))) else False
            verdict.append(f"- end of {phase}: {method} {a:.2f} vs {baseline} {b:.2f} ({a - b:+.2f} points; "
                           f"{'more' if clear else 'less'} than one pooled std): "
                           f"{'higher' if a > b else 'not higher'}")
        for k in range(len(phases) - 1):
            (a, sa, na, ta), (b, sb, nb, tb) = fm["recovery"][k], bm["recovery"][k]
            faster = (na == ta) and (nb < tb or a < b)
            clear = abs(a - b) > pooled_std(sa, sb) if all(map(lambda x: x == x, (sa, sb))) else False
            verdict.append(f"- shift {k + 1}: {method} recovers to {fraction:.0%} of its pre-shift accuracy in "
                           f"{a:.1f} steps ({na}/{ta} runs), {baseline} in {b:.1f} ({nb}/{tb}; {a - b:+.1f} steps, "
                           f"{'more' if clear else 'less'} than one pooled std): "
                           f"{'faster' if faster else 'not faster'}")

    columns = list(rows[0])
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    prov = provenance(runs, sweeps)
    selections = sorted(out.glob("selection*.md"))
    md = [f"# Figure 3: rotated-noisy MNIST{(' — ' + title) if title else ''}", "",
          f"Runs: `{root}`. Metric: `{METRIC}` (top-1 % on the test subset of the angle being trained on). "
          f"Recovery: steps (and wall seconds) after a shift until that accuracy is back to {fraction:.0%} of its "
          "value just before the shift. Mean ± std over seeds (sample std).", "",
          "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    md += ["", f"Paper: {CLAIM}.", "", "Does the claim hold on these runs?", *verdict, "",
           "![Figure 3](figure3.png)", ""]
    if selections:
        md += ["Hyperparameters: chosen on validation by the sweeps in " +
               ", ".join(f"[{p.name}]({p.name})" for p in selections) + ".", ""]
    md.append(markdown(prov))
    (out / "table.md").write_text("\n".join(md))
    (out / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    for arm, members in groups.items():
        band(axes[0], [r for r in members if analysis.finished(r)], METRIC, arm)
    mark_phases(axes[0], reference)
    axes[0].set(xlabel="step", ylabel="test top-1 (%) on the current angle", title="(a) accuracy through the shifts")
    axes[0].legend(fontsize=8)
    funnel_runs = [r for r in groups.get(method, []) if analysis.finished(r)]
    if funnel_runs:
        for key in funnel_runs[0].keys("scale/"):
            band(axes[1], funnel_runs, key, key[len("scale/"):])
        mark_phases(axes[1], reference)
        axes[1].set(xlabel="step", ylabel="scale s", title=f"(b) step-size scales, {method}")
        axes[1].legend(fontsize=8)
        gains = funnel_runs[0].gains
        names = [k[len("gain/"):] for k in gains if k.startswith("gain/")]
        if names:
            axes[2].plot(gains["step"], gains[f"gain/{names[0]}"], lw=0.9)
            mark_phases(axes[2], reference)
            axes[2].set(xlabel="step", ylabel="gain p", title=f"(c) gains of {gains[f'gain/{names[0]}'].shape[1]} "
                        f"coordinates of {names[0]} (seed {funnel_runs[0].config.get('seed')})")
    fig.tight_layout()
    fig.savefig(out / "figure3.png", dpi=120)
    plt.close(fig)
    return {"rows": rows, "verdict": verdict}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="directory holding the final runs (all arms, all seeds)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--sweep", action="append", default=[], help="sweep directories, for the provenance")
    parser.add_argument("--fraction", type=float, default=0.9)
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    result = build(args.root, args.out, args.sweep, args.fraction, args.title)
    print("\n".join(result["verdict"]))
    print(f"wrote {args.out}/table.md, table.csv, figure3.png")


if __name__ == "__main__":
    main()
