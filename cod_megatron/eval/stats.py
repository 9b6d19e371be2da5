"""Per-position statistics of lifecycle rewards: means, 95 % confidence intervals, the CoD gap."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class PositionStats:
    """Mean reward and its 95 % normal-approximation interval at each pack position."""

    mean: list[float]
    ci95: list[tuple[float, float]]
    n: int


def _mean_ci(values: list[float]) -> tuple[float, tuple[float, float]]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, (mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = Z95 * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)


def position_stats(rewards: list[list[float]]) -> PositionStats:
    """``rewards[k][j]``: lifecycle k's reward at position j (all lifecycles of one pack size)."""
    if not rewards or len({len(r) for r in rewards}) != 1:
        raise ValueError("need at least one lifecycle, all of the same pack size")
    cols = [[r[j] for r in rewards] for j in range(len(rewards[0]))]
    pairs = [_mean_ci(c) for c in cols]
    return PositionStats(mean=[m for m, _ in pairs], ci95=[ci for _, ci in pairs], n=len(rewards))


def gap_stats(rewards: list[list[float]]) -> tuple[float, tuple[float, float]]:
    """The CoD gap per lifecycle, mean over positions >= 1 minus position 0, with its 95 % interval."""
    if not rewards or len(rewards[0]) < 2:
        raise ValueError("the gap needs packs of at least two tasks")
    gaps = [sum(r[1:]) / (len(r) - 1) - r[0] for r in rewards]
    return _mean_ci(gaps)
