"""Plot helpers shared by the figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401  (re-exported for the figure modules)
import numpy as np  # noqa: E402

from experiments.runs import Run  # noqa: E402


def band(ax, runs: list[Run], key: str, label: str, color=None) -> None:
    """Mean over runs of `key` against step, with a +-1 std band (steps common to all runs)."""
    series = [r.series(key) for r in runs]
    series = [(s, v) for s, v in series if len(s)]
    if not series:
        return
    common = sorted(set.intersection(*(set(s.tolist()) for s, _ in series)))
    values = np.array([[dict(zip(s.tolist(), v.tolist()))[c] for c in common] for s, v in series])
    mean = values.mean(0)
    line, = ax.plot(common, mean, label=f"{label} (n={len(series)})", color=color)
    if len(series) > 1:
        std = values.std(0, ddof=1)
        ax.fill_between(common, mean - std, mean + std, alpha=0.2, color=line.get_color())


def mark_phases(ax, run: Run) -> None:
    phases = (run.summary or {}).get("phases", [])
    for p in phases[1:]:
        ax.axvline(p["start_step"], color="gray", ls="--", lw=0.8)
    for p in phases:
        ax.text(p["start_step"], 1.0, f" {p['name']}", transform=ax.get_xaxis_transform(), va="top", fontsize=8,
                color="gray")
