"""What every protocol report shares: the arms of a study read back from its root, the tuning table (trials, picks,
edges and their limits), per-seed outcomes, and paired differences against the baseline with their verdict words.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments import analysis, stats
from experiments.checks import WrongRuns
from experiments.runs import Run, find_runs


def by_seed(runs: list[Run], value) -> dict[int, float | None]:
    """{seed: value(run)} over `runs`; None for a run that did not finish (counted as a failure)."""
    return {r.config.get("seed"): (value(r) if analysis.finished(r) else None) for r in runs}


def runs_in(root: Path, dirs: list[str]) -> list[Run]:
    """The runs in `dirs`, relative to a study's `root` as protocol.json lists them (a missing one is an error),
    each labelled by that relative directory (how a report names the runs it draws). A listed folder outside the root
    (a protocol.json edited or from elsewhere) is refused: a report reads only the study it was given."""
    for d in dirs:
        if Path(d).is_absolute() or ".." in Path(d).parts:
            raise WrongRuns(f"{root / 'protocol.json'} lists the run {d!r}, which is not a folder under the study's "
                            "root: the file was edited or comes from elsewhere; run the study again to rewrite it")
    runs = [find_runs(root / d)[0] for d in dirs]
    for run, d in zip(runs, dirs):
        run.label = str(d)
    return runs


def tuning_runs(root: str | Path, record: dict) -> list[Run]:
    """Every tuning trial of every method of the study under `root`, for the provenance."""
    return runs_in(Path(root), [t["run"] for e in record["methods"].values() for t in e["trials"]])


@dataclass
class Arm:
    """A method's or an ablation's finals: the runs, and its entry of protocol.json."""

    name: str
    label: str
    runs: list[Run]
    entry: dict
    ablation: bool = False

    def by_seed(self, value) -> dict[int, float | None]:
        return by_seed(self.runs, value)

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if analysis.finished(r)]

    @property
    def failed(self) -> int:
        return len(self.runs) - len(self.finished)


def load(root: str | Path) -> tuple[dict, dict[str, Arm]]:
    """protocol.json and the arms (methods, then ablations) of the study under `root`."""
    root = Path(root)
    path = root / "protocol.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run python -m experiments.protocol ... --root {root} first")
    record = json.loads(path.read_text())
    arms = {}
    for kind, entries in (("methods", record["methods"]), ("ablations", record.get("ablations", {}))):
        for name, entry in entries.items():
            arms[name] = Arm(name, entry["label"], runs_in(root, entry["finals"]), entry, ablation=kind == "ablations")
    return record, arms


def short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def value_text(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def edge_text(entry: dict) -> str:
    """'interior', or each edge with the limit that stopped its extension."""
    if not entry["rounds"]:
        return "not tuned"
    if not entry["edges"]:
        return "interior"
    return "; ".join(f"{short(e['key'])} at its {e['side']} end (limit: {e['limit'] or 'none'})"
                     for e in entry["edges"])


def tuning_rows(record: dict) -> list[dict]:
    rows = []
    for entry in record["methods"].values():
        rounds = [r["trials"] for r in entry["rounds"]]
        searched = ", ".join(f"{short(k)} [{value_text(lo)}, {value_text(hi)}]"
                             for k, (lo, hi) in entry.get("explored", {}).items()) or "–"
        if entry.get("note"):  # a fixed grid, or no knob at all: nothing was searched beyond it
            searched = ("grid: " if entry["rounds"] else "") + entry["note"]
        rows.append({
            "method": entry["label"], "space": entry["space"],
            "trials": (" + ".join(map(str, rounds)) + (" (extensions)" if len(rounds) > 1 else "")) or "0 (fixed)",
            "diverged trials": entry["diverged_trials"],
            "searched": searched,
            "pick": ", ".join(f"{short(k)}={value_text(v)}" for k, v in entry["pick"].items()),
            "tied to": ", ".join(f"{short(k)}" for k in entry.get("tied", {})) or "–",
            "pick at an edge?": entry["note"] if entry.get("note") and entry["rounds"] else edge_text(entry),
            "selection score": "–" if entry["pick_score"] is None else f"{entry['pick_score']:.2f}"})
    return rows


def paired_cell(diff: stats.Paired, word: str, digits: int = 2) -> str:
    if diff.n == 1:
        return f"{diff.mean:+.{digits}f} ({word})"
    return f"{diff.text(digits)}, {diff.wins}/{diff.n} seeds: {word}" if diff.n else f"–: {word}"


def most_seeds(arms: dict[str, Arm]) -> int:
    """The most finished seeds of any arm: whether a table's means have a spread at all."""
    return max((len(arm.finished) for arm in arms.values()), default=0)


def median_text(values: list[float | None], digits: int = 0) -> str:
    """The median over seeds with ∞ for a miss, and the misses counted."""
    vals = [math.inf if v is None or not math.isfinite(v) else v for v in values]
    if not vals:
        return "–"
    med = float(np.median(vals))
    misses = sum(math.isinf(v) for v in vals)
    return ("∞" if math.isinf(med) else f"{med:,.{digits}f}") + (f" ({misses}/{len(vals)} never)" if misses else "")


def markdown_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    columns = list(rows[0])
    for row in rows:
        columns += [c for c in row if c not in columns]
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]]
