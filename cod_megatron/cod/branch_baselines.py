"""Branch baselines for update episodes (``algorithm.update_branches`` = B > 1; docs/update_branches.md).

At update position j of lifecycle i, B update episodes are written from the same prompt (same hint, trajectory,
reward and feedback); each branch then plays the next K = min(k, S-1-j) tasks from its own hint. The baseline of
an update episode is the mean over those B branches, so it compares hints written from one and the same state.

Shape legend: L lifecycles, B branches, K tasks each branch played (the same K for every lifecycle at one j).
"""

from __future__ import annotations

from typing import Literal

import torch

from cod_megatron.cod.baselines import STD_EPS


def branch_returns(
    r_z: torch.Tensor, r_x: torch.Tensor, *, returns: Literal["mean", "discounted"] = "mean", gamma: float = 1.0
) -> torch.Tensor:
    """``R [L, B]`` of each branch's update episode from its format reward ``r_z [L, B]`` and ``r_x [L, B, K]``.

    ``mean``: ``(r_z + sum_t r_x[t]) / (K + 1)``, the cod.md 4.2 update return cut at the horizon (equal to it when
    K = S-1-j); ``discounted``: ``r_z + sum_t gamma^(t+1) r_x[t]`` (4.5 cut at the horizon).
    """
    if r_z.dim() != 2 or r_x.dim() != 3 or tuple(r_x.shape[:2]) != tuple(r_z.shape) or r_x.shape[2] < 1:
        raise ValueError(
            f"branch_returns: want r_z [L, B] and r_x [L, B, K>=1], got {list(r_z.shape)}, {list(r_x.shape)}"
        )
    if not (torch.isfinite(r_z).all() and torch.isfinite(r_x).all()):
        raise ValueError("branch_returns: rewards contain NaN or inf")
    if returns == "mean":
        return (r_z + r_x.sum(2)) / (r_x.shape[2] + 1)
    if returns == "discounted":
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"branch_returns: gamma must be in (0, 1], got {gamma}")
        disc = gamma ** torch.arange(1, r_x.shape[2] + 1, dtype=r_x.dtype, device=r_x.device)
        return r_z + (r_x * disc).sum(2)
    raise ValueError(f"branch_returns: unknown returns style {returns!r} (branches take 'mean' or 'discounted')")


def branch_advantages(returns: torch.Tensor, *, std_normalization: Literal["none", "group"] = "none") -> torch.Tensor:
    """``A [L, B] = R - mean_b R`` (the plain mean over the B branches, GRPO's and Memory-R2's practice).

    ``group`` divides by the branches' unbiased std + ``STD_EPS``, as :func:`~cod_megatron.cod.baselines.
    group_advantages` does per (pack, type, position) group. B = 1 gives A = 0.
    """
    if returns.dim() != 2 or returns.shape[1] < 1:
        raise ValueError(f"branch_advantages: returns must be [L, B], got {list(returns.shape)}")
    if std_normalization not in ("none", "group"):
        raise ValueError(f"branch_advantages: unknown std_normalization {std_normalization!r}")
    both = returns.double()
    adv = both - both.mean(1, keepdim=True)
    if std_normalization == "group" and both.shape[1] > 1:
        adv = adv / (both.std(1, keepdim=True) + STD_EPS)
    return adv.to(returns.dtype)
