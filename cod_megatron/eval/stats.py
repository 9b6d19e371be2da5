"""Per-position statistics of lifecycle rewards: means, 95 % intervals, the CoD gap.

Intervals are Student-t intervals of a mean over n values (n - 1 degrees of freedom), cut to the range of the
values themselves: a mean of rewards cannot leave the rewards' range, so neither does its interval (a normal
interval around 0.98 from 64 rewards in [0, 1] would otherwise reach past 1). An interval of no width says why
(:func:`no_width_reason`): one value, or all values equal (e.g. a policy that always scores 1 at a position).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# t_{0.975, df} for df = 1..30 (any statistics table); the normal 1.96 beyond (at most 2 % narrower at df = 30).
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
Z975 = 1.959963984540054


def t975(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom (normal beyond 30)."""
    if df < 1:
        raise ValueError(f"t975: needs df >= 1, got {df}")
    return T975[df - 1] if df <= len(T975) else Z975


@dataclass(frozen=True)
class PositionStats:
    """Mean reward and its 95 % t interval at each pack position; ``notes[j]`` says why an interval has no width."""

    mean: list[float]
    ci95: list[tuple[float, float]]
    n: int
    notes: list[str | None] | None = None


def no_width_reason(values: list[float]) -> str | None:
    """Why the interval of ``values`` has no width, or None when it has one."""
    if len(values) < 2:
        return f"{len(values)} value: no spread to estimate"
    if min(values) == max(values):
        return f"all {len(values)} values are {values[0]:g}"
    return None


def mean_ci95(values: list[float]) -> tuple[float, tuple[float, float]]:
    """The mean of ``values`` and its 95 % t interval, cut to the values' range."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, (mean, mean)
    half = t975(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, (max(mean - half, min(values)), min(mean + half, max(values)))


def position_stats(rewards: list[list[float]]) -> PositionStats:
    """``rewards[k][j]``: lifecycle k's reward at position j (all lifecycles of one pack size)."""
    if not rewards or len({len(r) for r in rewards}) != 1:
        raise ValueError("need at least one lifecycle, all of the same pack size")
    cols = [[r[j] for r in rewards] for j in range(len(rewards[0]))]
    pairs = [mean_ci95(c) for c in cols]
    notes = [no_width_reason(c) for c in cols]
    return PositionStats(mean=[m for m, _ in pairs], ci95=[ci for _, ci in pairs], n=len(rewards), notes=notes)


def lifecycle_gaps(rewards: list[list[float]]) -> list[float]:
    """Each lifecycle's CoD gap: its mean reward over positions >= 1 minus its reward at position 0."""
    if not rewards or len(rewards[0]) < 2:
        raise ValueError("the gap needs packs of at least two tasks")
    return [sum(r[1:]) / (len(r) - 1) - r[0] for r in rewards]


def gap_stats(rewards: list[list[float]]) -> tuple[float, tuple[float, float]]:
    """The mean CoD gap over lifecycles with its 95 % interval."""
    return mean_ci95(lifecycle_gaps(rewards))
