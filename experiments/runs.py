"""Reading run directories."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Run:
    path: Path
    label: str
    metrics: list[dict]
    summary: dict | None = None
    gains: dict[str, np.ndarray] = field(default_factory=dict)

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
        rows = [(r["step"], r[key]) for r in self.metrics if key in r and isinstance(r[key], (int, float))]
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


def find_runs(root: str | Path) -> list[Run]:
    """Every run under `root` (a directory with metrics.jsonl), labelled by its path relative to `root`."""
    root = Path(root)
    runs = []
    for metrics_path in sorted(root.rglob("metrics.jsonl")):
        run_dir = metrics_path.parent
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        gains = {}
        if (run_dir / "gains.npz").exists():
            with np.load(run_dir / "gains.npz") as data:
                gains = {k: data[k] for k in data.files}
        label = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
        runs.append(Run(run_dir, label, metrics, summary, gains))
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
