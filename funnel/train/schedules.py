"""Learning-rate schedules as pure functions of the step: factor(step, total_steps) multiplies each group's base lr.
Being stateless, a schedule resumes from a checkpoint with nothing but the step."""
from __future__ import annotations

import math
from dataclasses import dataclass


def _check_fractions(name: str, values) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if any(not 0 < v < 1 for v in values) or list(values) != sorted(values):
        raise ValueError(f"schedule.{name} must be increasing fractions of training in (0, 1), got {list(values)}")
    return values


def _warmup_steps(warmup: float, total_steps: int) -> int:
    """`warmup` < 1 is a fraction of training, >= 1 a number of steps."""
    return int(round(warmup * total_steps)) if warmup < 1 else int(warmup)


@dataclass(frozen=True)
class Constant:
    def __call__(self, step: int, total_steps: int) -> float:
        return 1.0


@dataclass(frozen=True)
class Staircase:
    """x `factor` at each fraction of training in `decay_at` (Table 1's two staircase decays, no ramp-up)."""

    decay_at: tuple[float, ...] = (0.5, 0.75)
    factor: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "decay_at", _check_fractions("decay_at", self.decay_at))

    def __call__(self, step: int, total_steps: int) -> float:
        return self.factor ** sum(step >= round(f * total_steps) for f in self.decay_at)


@dataclass(frozen=True)
class WarmupStaircase(Staircase):
    """Goyal et al.: linear ramp-up over `warmup` (fraction of training, or steps), then staircase decays."""

    warmup: float = 0.05
    decay_at: tuple[float, ...] = (0.3, 0.6, 0.8)

    def __call__(self, step: int, total_steps: int) -> float:
        warm = _warmup_steps(self.warmup, total_steps)
        ramp = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
        return ramp * super().__call__(step, total_steps)


@dataclass(frozen=True)
class Cosine:
    """Linear warm-up over `warmup`, then cosine decay from 1 to `final_factor` at the end of training."""

    warmup: float = 0.0
    final_factor: float = 0.0

    def __call__(self, step: int, total_steps: int) -> float:
        warm = _warmup_steps(self.warmup, total_steps)
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return self.final_factor + (1 - self.final_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
