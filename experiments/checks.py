"""Which runs a report may draw. Every report checks that the runs it is given are its artefact's (the experiment,
dataset and model in each run's summary.json "config") and otherwise stops with one line naming what it found and
what it expects: a table of rotated-MNIST runs under a Fashion-MNIST title would be all "–" or, worse, plausible.

A run with no summary yet (still training) has no config to judge here and is left out of the check.
"""
from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from experiments.runs import Run

EXPERIMENT_DIR = Path(__file__).resolve().parents[1] / "configs" / "experiment"


class WrongRuns(ValueError):
    """The runs given to a report are not its artefact's; the report's command prints this as one line."""


def identity(config: dict) -> dict[str, str]:
    """What a run is, for the check: its experiment (config "name"), dataset and model."""
    dataset = config.get("dataset") or {}
    if dataset.get("name"):
        data = dataset["name"]
    elif dataset.get("base"):
        data = f"rotated_{dataset['base']}"  # build_rotated_mnist without a name: the rotated-noisy task
    else:
        data = str(dataset.get("_target_", "?")).rsplit(".", 1)[-1].removeprefix("build_")
    model = str((config.get("model") or {}).get("_target_", "?")).rsplit(".", 1)[-1]
    return {"experiment": str(config.get("name", "?")), "dataset": data, "model": model}


def identity_text(ident: dict[str, str]) -> str:
    return f"experiment {ident['experiment']} (dataset {ident['dataset']}, model {ident['model']})"


@dataclass(frozen=True)
class Expect:
    """The runs a report draws: the allowed values of each part of `identity` (empty: any)."""

    report: str  # its module, experiments/<report>.py
    experiment: tuple[str, ...] = ()
    dataset: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    source: str = ""  # where such runs come from, for the fix in the message

    def accepts(self, ident: dict[str, str]) -> bool:
        return all(not allowed or ident[part] in allowed
                   for part, allowed in (("experiment", self.experiment), ("dataset", self.dataset),
                                         ("model", self.model)))

    def text(self) -> str:
        parts = [f"{part} {' or '.join(allowed)}" for part, allowed in
                 (("dataset", self.dataset), ("model", self.model)) if allowed]
        return f"experiment {' or '.join(self.experiment) or 'any'}" + (f" ({', '.join(parts)})" if parts else "")


def judged(runs: list[Run]) -> list[tuple[Run, dict[str, str]]]:
    """The runs that have a summary, with their identity (a run still training is not judged)."""
    return [(r, identity(r.config)) for r in runs if r.summary]


def found_text(wrong: list[tuple[Run, dict[str, str]]], total: int) -> str:
    counts = Counter(identity_text(i) for _, i in wrong)
    return "; ".join(f"{text} in {n} of {total} runs" for text, n in counts.items()) + f", e.g. {wrong[0][0].label}"


def check(runs: list[Run], expect: Expect) -> None:
    """Raise WrongRuns unless every judged run is one `expect` accepts."""
    runs = judged(runs)
    wrong = [(r, i) for r, i in runs if not expect.accepts(i)]
    if wrong:
        fix = f": give it {expect.source}" if expect.source else ""
        raise WrongRuns(f"{expect.report} draws {expect.text()}, but found {found_text(wrong, len(runs))}{fix}")


def one_experiment(runs: list[Run], report: str) -> None:
    """Raise WrongRuns if the judged runs are of more than one experiment, dataset or model (a mean over seeds, or
    phase lines from one run drawn over all, would mix tasks)."""
    runs = judged(runs)
    kinds = Counter(identity_text(i) for _, i in runs)
    if len(kinds) > 1:
        found = "; ".join(f"{text} in {n} of {len(runs)} runs" for text, n in kinds.items())
        raise WrongRuns(f"{report} draws the runs of one experiment, but found {found}: give it one experiment's "
                        "runs (e.g. multirun/<name>)")


def peers_experiments() -> tuple[str, ...]:
    """The peer comparison's workloads: configs/experiment/peers_*.yaml."""
    return tuple(sorted(p.stem for p in EXPERIMENT_DIR.glob("peers_*.yaml")))


def cli(main):
    """A report's main: runs of another artefact, or a missing file (a study not run yet), end it with
    `error: <the line>` and exit status 1, not a traceback."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (WrongRuns, FileNotFoundError) as err:
            raise SystemExit(f"error: {err}") from None
    return wrapped
