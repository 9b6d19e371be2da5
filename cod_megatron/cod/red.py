"""Adaptive RED: re-weight advantages by exp(A / T) when their token-weighted mean is negative (docs/cod.md 5.2).

Shape legend: any shape, ``advantages`` and ``weights`` alike; a weight is the number of response tokens carrying
that advantage (per-episode form: ``resp_len``; per-token form: 1 per token, 0 for padding). The two forms agree
because every token of a sample carries the same advantage (5.2).
"""

from __future__ import annotations

import torch

RED_MAX_ITERS = 20
RED_TOLERANCE = 0.05
"""Bisection stops once the bracket is narrower than this (temperature units)."""
ZERO_MEAN_RTOL = 1e-12
"""A token-weighted sum within this fraction of sum |A| n is zero: group-baselined advantages with equal lengths sum
to exactly 0, and float64 rounding (~1e-16) must not decide whether RED fires (it would at the ceiling T = 99.95)."""


def _weighted_sum(adv: torch.Tensor, weights: torch.Tensor, temperature: float) -> float:
    """f(T) = sum A * exp(A / T) * n: strictly decreasing in T, tends to N * mean_A as T -> inf."""
    return float((adv * torch.exp(adv / temperature) * weights).sum())


def red_temperature(
    adv: torch.Tensor,
    weights: torch.Tensor,
    t_min: float = 0.8,
    t_max: float = 100.0,
    max_iters: int = RED_MAX_ITERS,
    tol: float = RED_TOLERANCE,
) -> float:
    """Reference-style bisection for f(T) = 0 on ``[t_min, t_max]``; returns the last midpoint evaluated.

    With the defaults it always halves 11 times (99.2 / 2^11 < 0.05); T = 0.8484375 when f < 0 on the whole
    interval (root below the floor), as the reference does.
    """
    lo, hi = float(t_min), float(t_max)
    mid = 0.5 * (lo + hi)
    for _ in range(max_iters):
        mid = 0.5 * (lo + hi)
        if _weighted_sum(adv, weights, mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    return mid


def adaptive_red(
    advantages: torch.Tensor,
    weights: torch.Tensor,
    *,
    t_min: float = 0.8,
    t_max: float = 100.0,
) -> tuple[torch.Tensor, float | None, dict[str, float]]:
    """Adaptive RED over one set of samples: ``A <- A * exp(A / T)`` if the token-weighted mean of A is negative.

    T comes from :func:`red_temperature` so the re-weighted token-weighted sum is about zero (positive advantages
    amplified, negative damped). A non-negative mean, or one that is zero up to float rounding
    (:data:`ZERO_MEAN_RTOL`), leaves ``advantages`` untouched and T is ``None``.
    Returns ``(new_advantages, T, metrics)``; metrics log T (0 when not applied), the mean before and after and
    whether the floor was hit (f(t_min) < 0: no root in range, the mean stays negative) or the ceiling
    (f(t_max) > 0: possible when mean_A is a tiny negative number, since f(t_max) ~ N mean_A + sum n A^2 / t_max).
    """
    if advantages.shape != weights.shape:
        raise ValueError(
            f"adaptive_red: advantages {list(advantages.shape)} and weights {list(weights.shape)} must match"
        )
    if not (torch.isfinite(advantages).all() and torch.isfinite(weights).all()):
        raise ValueError("adaptive_red: advantages or weights contain NaN or inf")
    if (weights < 0).any():
        raise ValueError("adaptive_red: weights (token counts) must be >= 0")
    if not 0 < t_min < t_max:
        raise ValueError(f"adaptive_red: need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    adv, w = advantages.double(), weights.double()
    n_tokens = float(w.sum())
    if n_tokens <= 0:
        raise ValueError("adaptive_red: total weight (token count) must be positive")
    total = float((adv * w).sum())
    mean_before = total / n_tokens
    if total >= -ZERO_MEAN_RTOL * float((adv.abs() * w).sum()):  # non-negative, or zero up to rounding
        metrics = {
            "red/applied": 0.0,
            "red/temperature": 0.0,
            "red/mean_adv_before": mean_before,
            "red/mean_adv_after": mean_before,
            "red/floor_hit": 0.0,
            "red/ceiling_hit": 0.0,
        }
        return advantages, None, metrics
    temperature = red_temperature(adv, w, t_min, t_max)
    new = adv * torch.exp(adv / temperature)
    metrics = {
        "red/applied": 1.0,
        "red/temperature": temperature,
        "red/mean_adv_before": mean_before,
        "red/mean_adv_after": float((new * w).sum()) / n_tokens,
        "red/floor_hit": float(_weighted_sum(adv, w, t_min) < 0),
        "red/ceiling_hit": float(_weighted_sum(adv, w, t_max) > 0),
    }
    return new.to(advantages.dtype), temperature, metrics


def adaptive_red_by_group(
    advantages: torch.Tensor,
    weights: torch.Tensor,
    groups: list[str],
    *,
    t_min: float = 0.8,
    t_max: float = 100.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`adaptive_red` within each group (a mixture's domains): one temperature per group, fitted to its own
    samples only. Metrics are :func:`adaptive_red`'s per group, as ``<group>/red/...``; a group without tokens is
    left as it is."""
    if len(groups) != advantages.numel():
        raise ValueError(f"adaptive_red_by_group: {len(groups)} groups for {advantages.numel()} advantages")
    out, metrics = advantages.clone(), {}
    for g in dict.fromkeys(groups):
        mask = torch.tensor([x == g for x in groups])
        if float(weights[mask].sum()) <= 0:
            continue
        new, _, m = adaptive_red(advantages[mask], weights[mask], t_min=t_min, t_max=t_max)
        out[mask] = new
        metrics |= {f"{g}/{k}": v for k, v in m.items()}
    return out, metrics
