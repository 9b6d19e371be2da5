"""Across-seed statistics for the run summaries: a mean with its 95 % Student-t interval.

One seed's held-out interval says how well 64 evaluation packs pin *that* run down, nothing about the next seed;
the interval of the mean over seeds is the one a variant comparison needs. The t quantiles are the library's
(``cod_megatron.eval.stats.t975``), so within-run and across-seed intervals use one table.
"""

from __future__ import annotations

import statistics

from cod_megatron.eval.stats import t975


def mean_ci95(xs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean of ``xs``; a single value has no interval (low = high = it)."""
    m = statistics.mean(xs)
    if len(xs) < 2:
        return m, m, m
    half = t975(len(xs) - 1) * statistics.stdev(xs) / len(xs) ** 0.5
    return m, m - half, m + half


def fmt_ci(xs: list[float], signed: bool = False) -> str:
    """``mean [low, high]`` with two decimals."""
    m, lo, hi = mean_ci95(xs)
    f = "{:+.2f}" if signed else "{:.2f}"
    return f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"


def diff_ci95(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """(mean(xs) - mean(ys), low, high): Welch's t interval, its degrees of freedom rounded down (conservative)."""
    vx, vy = statistics.variance(xs) / len(xs), statistics.variance(ys) / len(ys)
    d = statistics.mean(xs) - statistics.mean(ys)
    if vx + vy == 0:
        return d, d, d
    df = (vx + vy) ** 2 / (vx**2 / (len(xs) - 1) + vy**2 / (len(ys) - 1))
    t = t975(max(int(df), 1))
    half = t * (vx + vy) ** 0.5
    return d, d - half, d + half
