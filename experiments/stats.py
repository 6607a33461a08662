"""Paired comparisons over seeds: the mean difference with a 95% t-interval, wins out of seeds, and the verdict word a
table may print (only where the interval excludes 0).

Methods run at the same seeds share the model's initialisation and the data order, so the difference at each seed
is one observation of the methods' effect; the t-interval over those differences is what the tables report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# Two-sided 95% critical values of Student's t (the 0.975 quantile) for 1-30 degrees of freedom.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z_975 = 1.959964


def t_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (the table, then the Cornish-Fisher expansion
    about the normal quantile, within 1e-3 beyond 30)."""
    if df < 1:
        raise ValueError(f"a t-interval needs at least 2 paired values (df={df})")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Paired:
    """method − baseline over the seeds both have: mean, 95% t-interval [low, high], wins (method ahead), n."""

    mean: float
    low: float
    high: float
    wins: int
    n: int

    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def text(self, digits: int = 2) -> str:
        if self.n == 0:
            return "–"
        if self.n == 1:
            return f"{self.mean:+.{digits}f} (1 seed, no interval)"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired(method: dict, baseline: dict, higher_is_better: bool = True) -> Paired:
    """The paired difference method − baseline over the seeds (the dicts' keys) where both have a finite value.
    A win is a seed where the method is better (higher, or lower with `higher_is_better=False`)."""
    seeds = sorted(s for s in method if s in baseline and _finite(method[s]) and _finite(baseline[s]))
    diffs = [method[s] - baseline[s] for s in seeds]
    n = len(diffs)
    wins = sum(d > 0 if higher_is_better else d < 0 for d in diffs)
    if n == 0:
        return Paired(math.nan, math.nan, math.nan, 0, 0)
    mean = sum(diffs) / n
    if n == 1:
        return Paired(mean, math.nan, math.nan, wins, 1)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_975(n - 1) * sd / math.sqrt(n)
    return Paired(mean, mean - half, mean + half, wins, n)


ONE_SEED = "one seed: no spread, no verdict"
NO_SEED = "no paired seed"


def verdict(diff: Paired, better: str, worse: str, higher_is_better: bool = True) -> str:
    """`better` or `worse` where the interval excludes 0, else "no detectable difference"; with one paired seed
    there is no interval to judge (ONE_SEED), with none nothing to compare (NO_SEED)."""
    if diff.n < 2:
        return ONE_SEED if diff.n == 1 else NO_SEED
    if not diff.excludes_zero():
        return "no detectable difference"
    return better if (diff.mean > 0) == higher_is_better else worse


def spread_text(seeds: int) -> str:
    """How a table's mean over `seeds` seeds is given: with its std, or (one seed) without any spread."""
    return "mean ± std over seeds" if seeds > 1 else "at one seed (one seed: no spread, and no interval or verdict)"


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def time_verdict(method: dict, baseline: dict, budget: float) -> tuple[Paired, str]:
    """Steps (or seconds) to a target, lower is better; a seed that never reaches it (∞ or None) counts as `budget`,
    the most it could have had. That censoring is conservative for any verdict: a miss counted at the budget makes
    the side that missed look faster than it was, so "faster" and "slower" still need an interval that excludes 0
    over all paired seeds."""
    capped = lambda d: {s: (budget if v is None or not math.isfinite(v) else v) for s, v in d.items()}
    diff = paired(capped(method), capped(baseline), higher_is_better=False)
    return diff, verdict(diff, "faster", "slower", higher_is_better=False)
