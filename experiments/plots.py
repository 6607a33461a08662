"""Plot helpers shared by the figures: one style (fonts readable at the saved size), one way to save (PNG, PDF and
SVG side by side), the mean-and-band curve and the phase marks."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (re-exported for the figure modules)
import numpy as np  # noqa: E402

from experiments.runs import Run  # noqa: E402

# Sizes in points at the figure's own size, which is the saved size (no bbox cropping or rescaling on save).
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
         "legend.fontsize": 8, "figure.titlesize": 11,
         "svg.fonttype": "none", "pdf.fonttype": 42}  # text stays text: searchable, editable, checked by the tests
plt.rcParams.update(STYLE)
FORMATS = ("png", "pdf", "svg")
DPI = 200
PHASE_FONT = 8
TITLE_ABOVE_PHASES = 16  # points between the axes and its title when a band of phase names sits in between


def save(fig, path: str | Path) -> Path:
    """`fig` as PNG (at DPI), PDF and SVG: `path` with each suffix; closes it. Returns the PNG's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for fmt in FORMATS:
        fig.savefig(path.with_suffix(f".{fmt}"), dpi=DPI)
    plt.close(fig)
    return path.with_suffix(".png")


def wrap(text: str, width: int = 60) -> str:
    """A title that names runs, each of its lines cut short enough not to run into the next panel's title."""
    return "\n".join(part for line in text.split("\n") for part in textwrap.wrap(line, width, break_on_hyphens=False))


def band(ax, runs: list[Run], key: str, label: str, color=None) -> None:
    """Mean over runs of `key` against step, with a +-1 std band (steps common to all runs); one run: no band."""
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
    """A dashed line where each phase after the first starts, and every phase's name in a band above the axes,
    clear of the curves (a phase that starts left of the x-range is named at its left end). Call it after the curves
    are drawn and the title is set: it lifts the title above the band."""
    phases = run.phases()
    for step, _ in phases[1:]:
        ax.axvline(step, color="gray", ls="--", lw=0.8)
    left = ax.get_xlim()[0]
    for step, name in phases:
        ax.annotate(name, xy=(max(step, left), 1.0), xycoords=ax.get_xaxis_transform(), xytext=(2, 2),
                    textcoords="offset points", ha="left", va="bottom", fontsize=PHASE_FONT, color="gray",
                    annotation_clip=False)
    if phases:
        ax.set_title(ax.get_title(), pad=TITLE_ABOVE_PHASES)
