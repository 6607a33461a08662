"""The comparison table of Tables 1 and 2 (and their CPU analogue): one row per arm, mean +- std over seeds, the
paper's value beside ours, time to a target accuracy, diverged runs counted."""
from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from experiments import analysis
from experiments.provenance import markdown, provenance
from experiments.runs import Run, by_arm, find_runs

# paper value: (top-1 mean, std, top-5 mean, std)
Paper = dict[str, tuple[float, float, float, float]]


def rows_for(groups: dict[str, list[Run]], paper: Paper, target: float, gap_to: str | None,
             top1: str = "test/top1", top5: str = "test/top5") -> list[dict]:
    """With `gap_to`, ours and the paper's values are compared as gaps to that arm (for a different dataset or
    model, where only the ordering can be compared); without it, ours minus the paper's."""
    means = {}
    rows = []
    for arm, members in groups.items():
        done = [r for r in members if analysis.finished(r)]
        t1 = analysis.mean_std([analysis.final(r, top1) for r in done])
        t5 = analysis.mean_std([analysis.final(r, top5) for r in done])
        tt = [analysis.time_to_target(r, top1, target) for r in done]
        steps = analysis.mean_std([s for s, _ in tt])
        seconds = analysis.mean_std([s for _, s in tt])
        means[arm] = t1[0]
        p = paper.get(arm)
        row = {"method": arm, "n": len(done), "diverged": sum(analysis.diverged(r) for r in members),
               "top-1 (%)": analysis.fmt(t1[0], t1[1]), "top-5 (%)": analysis.fmt(t5[0], t5[1]),
               "paper top-1": analysis.fmt(p[0], p[1]) if p else "–",
               "paper top-5": analysis.fmt(p[2], p[3]) if p else "–"}
        if gap_to is None:
            row["top-1 − paper"] = f"{t1[0] - p[0]:+.2f}" if p and math.isfinite(t1[0]) else "–"
        row[f"steps to {target:g}% top-1"] = analysis.fmt(steps[0], steps[1], 0) + (
            f" ({steps[2]}/{len(done)} reached)" if steps[2] < len(done) else "")
        row[f"seconds to {target:g}%"] = analysis.fmt(seconds[0], seconds[1], 1)
        rows.append(row)
    if gap_to is not None:
        for row in rows:
            arm = row["method"]
            ours = means[arm] - means.get(gap_to, float("nan"))
            p, ref = paper.get(arm), paper.get(gap_to)
            row[f"top-1 gap to “{gap_to}”"] = f"{ours:+.2f}" if math.isfinite(ours) else "–"
            row["paper's gap"] = f"{p[0] - ref[0]:+.2f}" if p and ref else "–"
    return rows


def write(rows: list[dict], out: Path, title: str, intro: str, runs: list[Run], sweeps=(), figures=()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    prov = provenance(runs, sweeps)
    md = [f"# {title}", "", intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    md.append("")
    md += [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    selections = sorted(out.glob("selection*.md"))
    if selections:
        md += ["", "Hyperparameters chosen on validation: " + ", ".join(f"[{p.name}]({p.name})" for p in selections)]
    md += ["", markdown(prov)]
    (out / "table.md").write_text("\n".join(md))
    (out / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")


def build(root, out, title: str, intro: str, paper: Paper, order: list[str], target: float,
          gap_to: str | None = None, sweeps=(), figures=()) -> list[dict]:
    runs = find_runs(root)
    rows = rows_for(by_arm(runs, order), paper, target, gap_to)
    write(rows, Path(out), title, intro, runs, sweeps, figures)
    return rows


def write_not_run(out: str | Path, title: str, why: str, commands: list[str], compute: str) -> None:
    """For an artefact this machine cannot produce: what it needs and the commands that make it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = [f"# {title}: not run here", "", why, "", f"Compute: {compute}", "", "Commands:", "", "```bash",
            *commands, "```", "",
            "Its pipeline (configs, runs, table and figure code) runs end to end on tiny data in the real formats "
            "in tests/experiments, so it cannot rot.", ""]
    (out / "README.md").write_text("\n".join(text))


@dataclass(frozen=True)
class Artefact:
    """A paper table built from runs: what it compares and, when this machine cannot run it, what it needs."""

    title: str
    intro: str
    paper: Paper
    target: float  # top-1 % for the time-to-target columns
    order: list[str] = field(default_factory=list)
    gap_to: str | None = None
    scales_figure: str | None = None  # also draw Figure 4's scales and gains into this file of the output
    not_run: tuple[str, list[str], str] | None = None  # (why, commands, compute)

    def main(self, argv=None, doc: str = "") -> None:
        parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("root", nargs="?", help="directory holding the final runs (all arms, all seeds)")
        parser.add_argument("--out", required=True)
        parser.add_argument("--sweep", action="append", default=[], help="sweep directories, for the provenance")
        parser.add_argument("--target", type=float, default=self.target)
        if self.not_run:
            parser.add_argument("--not-run", action="store_true", help="write what this artefact needs instead")
        args = parser.parse_args(argv)
        if getattr(args, "not_run", False):
            write_not_run(args.out, self.title, *self.not_run)
            return
        if args.root is None:
            parser.error("the runs directory is required")
        figures = []
        if self.scales_figure:
            from experiments.fig4_scales_gains import figure

            made = figure(args.root, Path(args.out) / self.scales_figure)
            figures = [made] if made else []
        build(args.root, args.out, self.title, self.intro, self.paper, self.order or list(self.paper), args.target,
              self.gap_to, args.sweep, figures)
        print(f"wrote {args.out}/table.md")
