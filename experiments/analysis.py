"""Numbers read off runs: mean +- std over seeds, accuracy at the end of each phase, recovery after a shift,
time to a target accuracy. Every function takes `experiments.runs.Run`s."""
from __future__ import annotations

import math

import numpy as np

from experiments.runs import Run


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; nan for one value) and count of the finite values."""
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan"), 0
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"), len(values)


def fmt(mean: float, std: float, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def finished(run: Run) -> bool:
    """Its summary.json says finished, and its metrics.jsonl agrees (a run whose files disagree is inconsistent)."""
    return run.status == "finished"


def diverged(run: Run) -> bool:
    return run.status == "diverged"


def final(run: Run, key: str) -> float | None:
    """`key` at the run's final evaluation; None unless the run finished."""
    return (run.summary.get("final") or {}).get(key) if finished(run) else None


def _record_at(run: Run, step: int) -> dict:
    for record in run.metrics:
        if record["step"] == step:
            return record
    return {}


def elapsed_at(run: Run, step: int) -> float | None:
    """Wall seconds since the run started, at `step` (from the record logged there)."""
    if step == 0:
        return 0.0
    return _record_at(run, step).get("time/elapsed_s")


def time_to_target(run: Run, key: str, target: float, start: int = 0,
                   end: int | None = None) -> tuple[int | None, float | None]:
    """Steps and wall seconds after `start` until `key` first reaches `target`, looking no further than step `end`
    (the end of a phase; default the end of the run). (None, None) if it never does."""
    steps, values = run.series(key)
    hit = [s for s, v in zip(steps, values) if s > start and (end is None or s <= end) and v >= target]
    if not hit:
        return None, None
    t0, t1 = elapsed_at(run, start), elapsed_at(run, int(hit[0]))
    return int(hit[0]) - start, (t1 - t0) if t0 is not None and t1 is not None else None


def phase_bounds(run: Run) -> list[tuple[str, int, int]]:
    """(name, first step, last step) of each phase."""
    phases = run.summary["phases"]
    ends = [p["start_step"] for p in phases[1:]] + [run.summary["total_steps"]]
    return [(p["name"], p["start_step"], end) for p, end in zip(phases, ends)]


def phase_end_values(run: Run, key: str = "test/current/top1") -> list[float | None]:
    """`key` at the last step of each phase (the evaluation right before each shift, and the final one)."""
    steps, values = run.series(key)
    lookup = dict(zip(steps.tolist(), values.tolist()))
    return [lookup.get(end) for _, _, end in phase_bounds(run)]


def recovery(run: Run, key: str = "test/current/top1", fraction: float = 0.9) -> list[tuple[int | None, float | None]]:
    """For each shift: steps and wall seconds from the shift until `key` (on the new phase's data) is back to
    `fraction` of its value just before the shift (on the old phase's data), within that phase; (None, None) for a
    phase that ends first."""
    out = []
    bounds = phase_bounds(run)
    ends = phase_end_values(run, key)
    for (_, start, end), before in zip(bounds[1:], ends[:-1]):
        out.append((None, None) if before is None else time_to_target(run, key, fraction * before, start, end))
    return out


def mean_over_evaluations(run: Run, key: str) -> float:
    """The mean of `key` over all the run's evaluations: rewards both the level and how fast it is reached."""
    _, values = run.series(key)
    return float(values.mean()) if len(values) else float("nan")


def steps_to_targets(run: Run, key: str, targets: list[float]) -> float:
    """Steps from each phase's start until `key` reaches that phase's target within the phase, summed over the
    phases; inf if a phase ends first, or the run did not finish."""
    if not finished(run):
        return math.inf
    total = 0
    for (_, start, end), target in zip(phase_bounds(run), targets):
        steps, _ = time_to_target(run, key, target, start, end)
        if steps is None:
            return math.inf
        total += steps
    return total


REDUCERS = ("final", "mean", "best")


def score(run: Run, metric: str, reduce: str) -> float:
    """A run's selection score: its final, mean or best `metric`; -inf for a run that diverged or did not finish,
    so that it never wins."""
    if reduce not in REDUCERS:
        raise ValueError(f"reduce must be one of {REDUCERS}, got {reduce!r}")
    if not finished(run):
        return -math.inf
    if reduce == "mean":
        return mean_over_evaluations(run, metric)
    _, values = run.series(metric)
    if not len(values):
        raise ValueError(f"{run.path}: no values of {metric!r}; metrics it has: {run.keys('val')[:10]}")
    return float(values[-1] if reduce == "final" else values.max())
