"""Reading run directories: one reader of a run's files (`read_run`), for the reports and experiments.select.

A run's files can be damaged (a line cut short by a crash, garbage, a summary.json emptied by a full disk) or
disagree (summary.json says the run ended at step 24 but metrics.jsonl ends at step 10: a retrain killed, lines cut).
The reader goes on with what it can read, and says what is wrong in one line per run on stderr (`warning: <run
directory>: <problem>; <problem>`), kept on the run as `problems`. A run whose summary.json and metrics.jsonl
disagree on its last step is `inconsistent` and never counts as finished or diverged.
"""
from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from funnel.train.records import ended_steps, load_summary, read_metrics_lines, stretches_text


@dataclass
class Run:
    path: Path
    label: str
    metrics: list[dict]
    summary: dict | None = None
    gains: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what is wrong with its files, one phrase each
    inconsistent: str | None = None  # why summary.json and metrics.jsonl disagree: then the run has not ended

    @property
    def status(self) -> str:
        """finished or diverged (as summary.json says), unfinished (no readable summary), or inconsistent."""
        if not self.summary:
            return "unfinished"
        return "inconsistent" if self.inconsistent else self.summary.get("status", "unfinished")

    @property
    def config(self) -> dict:
        return (self.summary or {}).get("config", {})

    @property
    def arm(self) -> str:
        """The run's row in a table and its name in a legend: the config's label, else a readable name of its
        optimizer (the registry's description, or the class), else its directory (a run with no summary yet)."""
        config = self.config
        if config.get("label"):
            return config["label"]
        optimizer = config.get("optimizer") or {}
        if optimizer.get("name"):
            return readable(optimizer["name"])
        if optimizer.get("_target_"):
            return optimizer["_target_"].rsplit(".", 1)[-1]
        return self.path.name

    @property
    def seed(self):
        return self.config.get("seed")

    def which(self) -> str:
        """The run as a report names it: its directory (relative to the root it was found under), label, seed."""
        return f"{self.label} ({self.arm}, seed {self.seed})"

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of `key` over the records that have it."""
        rows = [(r["step"], r[key]) for r in self.metrics
                if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]  # "nan" written is read as nan
        if not rows:
            return np.zeros(0, dtype=int), np.zeros(0)
        steps, values = zip(*rows)
        return np.asarray(steps), np.asarray(values, dtype=float)

    def keys(self, prefix: str) -> list[str]:
        return sorted({k for r in self.metrics for k in r if k.startswith(prefix)})

    def phases(self) -> list[tuple[int, str]]:
        """(step, phase name) where each phase begins: from summary.json, or for a run still going, from its
        records (a later phase from the last record of the one before)."""
        if self.summary and "phases" in self.summary:
            return [(p["start_step"], p["name"]) for p in self.summary["phases"]]
        out, previous, previous_step = [], None, 0
        for r in self.metrics:
            if "phase" in r:
                if r["phase"] != previous:
                    out.append((previous_step if previous is not None else 0, r["phase"]))
                previous, previous_step = r["phase"], r["step"]
        return out

    def phase_starts(self) -> list[tuple[int, str]]:
        """(step, phase name) where each phase after the first begins."""
        return self.phases()[1:]


def readable(key: str) -> str:
    """A readable name for an optimizer registry key (`mechanic_adagrad` -> "Mechanic over AdaGrad"): its
    description without the source in parentheses; the key itself if the registry does not know it."""
    from funnel.optim.registry import PEER, REGISTRY  # imports torch: only for a run or method with no label

    spec = REGISTRY.get(key)
    return spec.description.removeprefix(PEER).split(" (")[0] if spec else key


def which(runs: list[Run]) -> str:
    """Several runs (seeds of one arm) as a report names them: the directories, the label, the seeds."""
    if len(runs) == 1:
        return runs[0].which()
    parents = {str(Path(r.label).parent) for r in runs}
    leaves = ", ".join(Path(r.label).name for r in runs)
    where = ", ".join(r.label for r in runs)
    if len(parents) == 1 and parents != {"."}:
        where = f"{parents.pop()}/{{{leaves}}}"
    labels = ", ".join(dict.fromkeys(r.arm for r in runs))
    return f"{where} ({labels}, seeds {[r.seed for r in runs]})"


def read_summary(path: str | Path) -> tuple[dict | None, str | None]:
    """summary.json, and what is wrong with it: one that cannot be read, is no JSON object, or has no "status" of
    an ended run is read as no summary (the run has not ended). (None, None) without the file."""
    summary, problem = load_summary(path)
    return summary, problem and f"{Path(path).name} {problem}: taken as not ended"


def read_gains(path: str | Path) -> tuple[dict[str, np.ndarray], str | None]:
    """gains.npz's arrays, and what is wrong with it: one that cannot be read is read as no gain trajectories."""
    path = Path(path)
    if not path.exists():
        return {}, None
    try:
        if not zipfile.is_zipfile(path):  # numpy would read it as a pickle, and say so (allow_pickle is off)
            raise ValueError("not an .npz archive")
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        wrong = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]  # numpy gives a member's raw bytes
        if wrong:
            raise ValueError(f"{wrong[0]} is no array")
        return arrays, None
    except Exception as err:  # numpy and zipfile raise many kinds on a damaged archive
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return {}, f"{path.name} is unreadable ({reason}): read as no gain trajectories"


def step_ranges(ranges) -> str:
    """[[3, 5], [9, 9]] as "3-5, 9" (as written, if the file holds something else)."""
    try:
        return stretches_text(ranges)
    except (TypeError, ValueError):
        return str(ranges)


def lines_text(numbers: list[int], shown: int = 5) -> str:
    head = ", ".join(map(str, numbers[:shown]))
    return f"line{'s' if len(numbers) > 1 else ''} {head}" + (", ..." if len(numbers) > shown else "")


def check_record(summary: dict | None, metrics: list[dict], unreadable: list[int]) -> tuple[list[str], str | None]:
    """What is wrong with a run's record, and why its summary.json and metrics.jsonl disagree (None if they do not).
    They disagree when the summary says the run ended at a step (its "record"'s last_step, or in an older summary
    its "steps") that is not the step of metrics.jsonl's last readable line. Fewer readable lines than the record
    counted, at the right last step, is named but the run stands. A summary with neither is taken as it is."""
    problems = []
    if unreadable:
        problems.append(f"metrics.jsonl has {len(unreadable)} unreadable line{'s' if len(unreadable) > 1 else ''} "
                        f"({lines_text(unreadable)}), skipped")
    if summary is None:
        return problems, None
    record = summary.get("record") if isinstance(summary.get("record"), dict) else None
    disagree = ended_steps(summary, metrics)
    inconsistent = None
    if disagree:
        expected, last = disagree
        found = f"'s last readable step is {last}" if metrics else " has no readable line"
        inconsistent = f"summary.json says {summary['status']} at step {expected}, but metrics.jsonl{found}"
        problems.append(f"inconsistent: {inconsistent}; not counted as {summary['status']}")
    elif record is not None and type(record.get("lines")) is int and len(metrics) < record["lines"]:
        problems.append(f"metrics.jsonl has {len(metrics)} readable lines of the {record['lines']} summary.json "
                        f"recorded: {record['lines'] - len(metrics)} missing")
    if record is not None:
        if record.get("missing_steps"):
            problems.append(f"its record misses steps {step_ranges(record['missing_steps'])} (lost before the run "
                            "ended)")
        elif record.get("complete") is False:
            problems.append("its record is incomplete (summary.json record.complete is false)")
    return problems, inconsistent


def warn(run_dir: Path, problems: list[str]) -> None:
    """The run's problems, in one line on stderr."""
    if problems:
        print(f"warning: {run_dir}: {'; '.join(problems)}", file=sys.stderr)


def read_run(run_dir: str | Path, gains: bool = True) -> Run:
    """The run in `run_dir` (labelled by its name), whatever its files hold; what is wrong with them is on the run
    (`problems`, `inconsistent`) and in a warning on stderr. `gains=False` leaves gains.npz unread."""
    run_dir = Path(run_dir)
    summary, summary_problem = read_summary(run_dir / "summary.json")
    metrics, unreadable = read_metrics_lines(run_dir / "metrics.jsonl")
    problems, inconsistent = check_record(summary, metrics, unreadable)
    arrays, gains_problem = read_gains(run_dir / "gains.npz") if gains else ({}, None)
    problems = [p for p in (summary_problem, *problems, gains_problem) if p]
    warn(run_dir, problems)
    return Run(run_dir, run_dir.name, metrics, summary, arrays, problems, inconsistent)


def find_runs(root: str | Path) -> list[Run]:
    """Every run under `root` (a directory with metrics.jsonl), labelled by its path relative to `root`."""
    root = Path(root)
    runs = []
    for metrics_path in sorted(root.rglob("metrics.jsonl")):
        run = read_run(metrics_path.parent)
        if run.path != root:
            run.label = str(run.path.relative_to(root))
        runs.append(run)
    if not runs:
        raise FileNotFoundError(f"no runs under {root} (a run directory holds metrics.jsonl)")
    return runs


def by_arm(runs: list[Run], order: list[str] | None = None) -> dict[str, list[Run]]:
    """Runs grouped by arm, in `order` first (arms missing from the runs are left out), then as found."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.arm, []).append(run)
    ordered = [a for a in (order or []) if a in groups] + [a for a in groups if a not in (order or [])]
    return {a: sorted(groups[a], key=lambda r: r.config.get("seed", 0)) for a in ordered}
