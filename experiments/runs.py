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
        """The run's row in a table: the config's label, else the optimizer's class."""
        config = self.config
        return config.get("label") or config.get("optimizer", {}).get("_target_", "?").rsplit(".", 1)[-1]

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of `key` over the records that have it."""
        rows = [(r["step"], r[key]) for r in self.metrics if key in r and isinstance(r[key], (int, float))]
        if not rows:
            return np.zeros(0, dtype=int), np.zeros(0)
        steps, values = zip(*rows)
        return np.asarray(steps), np.asarray(values, dtype=float)

    def keys(self, prefix: str) -> list[str]:
        return sorted({k for r in self.metrics for k in r if k.startswith(prefix)})

    def phase_starts(self) -> list[tuple[int, str]]:
        """(step, phase name) where each phase after the first begins: from summary.json, or for a run still
        going, the last record of the previous phase."""
        if self.summary and "phases" in self.summary:
            return [(p["start_step"], p["name"]) for p in self.summary["phases"][1:]]
        out, previous, previous_step = [], None, 0
        for r in self.metrics:
            if "phase" in r:
                if previous is not None and r["phase"] != previous:
                    out.append((previous_step, r["phase"]))
                previous, previous_step = r["phase"], r["step"]
        return out


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
