"""The comparison tables of Tables 1 and 2 (and their CPU analogue), from a study that experiments/protocol.py ran:
one row per method's finals (mean ± std over seeds, failures counted), the paper's value beside ours, the paired
difference to the scheduled baseline with its 95% t-interval, steps to the baseline's accuracy; then the tuning.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments import analysis, compare, stats
from experiments.checks import Expect, check, cli
from experiments.provenance import markdown, provenance

# The paper's value for a method of the study (by its name there): (top-1 mean, std, top-5 mean, std).
Paper = dict[str, tuple[float, float, float, float]]
TOP1, TOP5 = "test/top1", "test/top5"


def protocol_text(study: dict) -> str:
    return (f"Protocol: every tuned method gets **{study['budget']} Halton trials** over its own search space "
            "(configs/search/), plus half that many per extension where its pick was the most extreme trial of an "
            f"open range (at most {study['max_extensions']} extensions), chosen on `{study['metric']}` "
            f"({study['reduce']}) at seed {study['selection_seed']}; a fixed space spends no trial. Finals at seeds "
            f"{study['seeds']}, paired (same init, same data order for every method).")


def rows_for(arms: dict[str, compare.Arm], paper: Paper, baseline: str, metric: str, same_task: bool,
             paper_gaps: dict[str, str] | None = None) -> tuple[list[dict], float, dict[str, dict]]:
    """The rows; the target: the baseline's median final `metric` (what steps-to-target counts up to); and each
    method's paired top-1 difference to the baseline as numbers (mean, low, high, wins, n, verdict), for the ledger.
    `paper_gaps`: the paper's gap for each row, as text naming its source, where it is not computed from `paper`."""
    base = arms[baseline]
    if not base.finished:
        raise ValueError(f"no run of the baseline {base.label!r} finished: nothing to compare against")
    target = float(np.median([analysis.final(r, metric) for r in base.finished]))
    budget = base.finished[0].summary["total_steps"]
    top1 = {name: arm.by_seed(lambda r: analysis.final(r, TOP1)) for name, arm in arms.items()}
    to_target = {name: arm.by_seed(lambda r: analysis.time_to_target(r, metric, target)) for name, arm in arms.items()}
    steps = {name: {s: (v or (None, None))[0] for s, v in d.items()} for name, d in to_target.items()}
    rows, differences = [], {}
    for name, arm in arms.items():
        t1 = analysis.mean_std([v for v in top1[name].values() if v is not None])
        t5 = analysis.mean_std([analysis.final(r, TOP5) for r in arm.finished])
        p, ref = paper.get(name), paper.get(baseline)
        row = {"method": arm.label, "finals": f"{len(arm.finished)}/{len(arm.runs)}",
               "diverged": sum(analysis.diverged(r) for r in arm.runs),
               "top-1 (%)": analysis.fmt(t1[0], t1[1]), "top-5 (%)": analysis.fmt(t5[0], t5[1])}
        if paper:
            row["paper top-1"] = analysis.fmt(p[0], p[1]) if p else "–"
            row["paper top-5"] = analysis.fmt(p[2], p[3]) if p else "–"
        if same_task:
            row["top-1 − paper"] = f"{t1[0] - p[0]:+.2f}" if p and math.isfinite(t1[0]) else "–"
        row["steps to target (median)"] = compare.median_text(list(steps[name].values()))
        seconds = [(v or (None, None))[1] for v in to_target[name].values()]
        row["seconds to target (median)"] = compare.median_text(seconds, 1)
        if name != baseline:
            diff = stats.paired(top1[name], top1[baseline])
            word = stats.verdict(diff, "higher", "lower")
            row["top-1 − baseline"] = compare.paired_cell(diff, word)
            differences[name] = {**dataclasses.asdict(diff), "verdict": word}
            diff, word = stats.time_verdict(steps[name], steps[baseline], budget)
            row["steps − baseline"] = compare.paired_cell(diff, word, 0)
        else:
            row["top-1 − baseline"] = row["steps − baseline"] = "(baseline)"
        if paper_gaps is not None:
            row["paper's gap to baseline"] = paper_gaps.get(name, "–")
        else:
            row["paper's gap to baseline"] = f"{p[0] - ref[0]:+.2f}" if p and ref and name != baseline else "–"
        rows.append(row)
    return rows, target, differences


@dataclass(frozen=True)
class Artefact:
    """A paper table built from a study's runs; when this machine cannot run it, what it needs."""

    name: str  # its module experiments/<name>.py; its study configs/tuning/<name>.yaml
    title: str
    intro: str
    paper: Paper
    expect: Expect  # the runs it draws (experiment, dataset, model): anything else stops the report
    paper_gaps: dict[str, str] | None = None  # another task's gaps, as text with their source (see rows_for)
    baseline: str = "momentum_schedule"  # the study's method every other is paired against
    same_task: bool = True  # ours and the paper's accuracies are comparable (same data and model)
    scales_figure: str | None = None  # Figure 4's scales and gains of the fair Funnel's finals, into this file
    figure_layers: tuple[str, ...] = ()  # the layers Figure 4 draws (default: experiments/fig4_scales_gains.py)
    funnel: str = "funnel"
    target_metric: str | None = None  # what steps-to-target reads (default: the study's selection metric)
    not_run: tuple[str, list[str], str] | None = None  # (why, commands, compute)

    def build(self, root: str | Path, out: str | Path) -> list[dict]:
        record, arms = compare.load(root)
        runs = [r for arm in arms.values() for r in arm.runs] + compare.tuning_runs(root, record)
        check(runs, self.expect)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        study = record["study"]
        metric = self.target_metric or study["metric"]
        rows, target, differences = rows_for(arms, self.paper, self.baseline, metric, self.same_task,
                                             self.paper_gaps)
        with open(out / "table.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="")
            writer.writeheader()
            writer.writerows(rows)
        figures, description, checks = [], [], []
        if self.scales_figure and self.funnel in arms and arms[self.funnel].finished:
            from experiments.fig4_scales_gains import caption, describe, figure, sentence

            finals = arms[self.funnel].finished
            figures.append(figure(finals, out / self.scales_figure, self.figure_layers))
            checks = describe(finals)
            description = ["## Figure 4: scales and gains", "",
                           f"From the finals of “{arms[self.funnel].label}”. {caption(finals)} The paper's "
                           "description, checked:", "", *[f"- {sentence(c)}" for c in checks], ""]
        prov = provenance(runs, [f"python -m experiments.protocol {self.study} --root <runs>",
                                 f"python -m experiments.{self.name} <runs> --out {out}"])
        base = arms[self.baseline].label
        md = [f"# {self.title}", "", self.intro, "", protocol_text(study), "",
              f"Test accuracy after training, {stats.spread_text(compare.most_seeds(arms))}; *finals* counts "
              "the seeds that finished. "
              f"Paired differences: method − “{base}” over seeds, mean [95% t-interval] and the seeds the method "
              "wins; a verdict word only where the interval excludes 0. Steps to target: steps until "
              f"`{metric}` reaches the baseline's median final value, {target:.2f}% (∞: never; in a "
              "paired difference a miss counts as the whole run, which can only understate a difference).", "",
              "## Results", "", *compare.markdown_table(rows), "",
              "## Tuning", "", *compare.markdown_table(compare.tuning_rows(record)), "",
              *description, *[f"![{f.stem}]({f.name}) (also {f.stem}.pdf, {f.stem}.svg)" for f in figures], "",
              markdown(prov)]
        (out / "table.md").write_text("\n".join(md))
        (out / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        summary = {"title": self.title, "baseline": self.baseline, "target": target, "study": study,
                   "rows": {name: row for name, row in zip(arms, rows)}, "top1_vs_baseline": differences,
                   "figure4": checks}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return rows

    @property
    def study(self) -> str:
        return f"configs/tuning/{self.name}.yaml"

    def write_not_run(self, out: str | Path) -> None:
        """For an artefact this machine cannot produce: what it needs and the commands that make it."""
        why, commands, compute = self.not_run
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        text = [f"# {self.title}: not run here", "", why, "", f"Compute: {compute}", "", "Commands:", "", "```bash",
                *commands, "```", "",
                "Its pipeline (study, runs, table and figure code) runs end to end on tiny data in the real formats "
                "in tests/experiments, so it cannot rot.", ""]
        (out / "README.md").write_text("\n".join(text))

    def main(self, argv=None, doc: str = "") -> None:
        parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("root", nargs="?", help=f"the study's root (holds protocol.json of {self.study})")
        parser.add_argument("--out", required=True)
        if self.not_run:
            parser.add_argument("--not-run", action="store_true", help="write what this artefact needs instead")
        args = parser.parse_args(argv)
        if getattr(args, "not_run", False):
            self.write_not_run(args.out)
            return
        if args.root is None:
            parser.error("the study's root is required")
        cli(self.build)(args.root, args.out)
        print(f"wrote {args.out}/table.md")
