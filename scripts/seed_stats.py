"""Across-seed statistics for the run summaries: a mean with its 95 % Student-t interval.

One seed's held-out interval says how well 64 evaluation packs pin *that* run down, nothing about the next seed;
the interval of the mean over seeds is the one a variant comparison needs. No SciPy in the project, so the
two-sided 97.5 % quantiles of Student's t for small degrees of freedom are tabulated (any statistics table).
"""

from __future__ import annotations

import statistics

# t_{0.975, df} for df = 1..30; the normal 1.96 beyond (at most 2 % wider than that at df = 30).
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def mean_ci95(xs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean of ``xs``; a single value has no interval (low = high = it)."""
    m = statistics.mean(xs)
    if len(xs) < 2:
        return m, m, m
    df = len(xs) - 1
    half = (T975[df - 1] if df <= len(T975) else 1.96) * statistics.stdev(xs) / len(xs) ** 0.5
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
    t = T975[max(int(df), 1) - 1] if df < len(T975) + 1 else 1.96
    half = t * (vx + vy) ** 0.5
    return d, d - half, d + half
