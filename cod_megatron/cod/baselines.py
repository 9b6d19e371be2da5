"""Group-relative baselines: advantage = return - mean over the G rollouts of the same pack (docs/cod.md 4.3).

Shape legend: L lifecycles, S tasks, P packs. A group is (pack id, episode kind, position j): every rollout
contributes one return per group, however many turns its episode has, so a group's mean runs over the
rollouts of that pack present in the batch (column j of ``solve_returns`` or ``update_returns``).
"""

from __future__ import annotations

from typing import Literal

import torch

StdNormalization = Literal["none", "group", "batch"]

STD_EPS = 1e-6
"""Added to the standard deviation before dividing (GRPO's epsilon), so a zero-spread group gives A = 0."""


def _group_mean_std(returns: torch.Tensor, inverse: torch.Tensor, counts: torch.Tensor) -> tuple:
    """Per-(pack, column) mean and unbiased std of ``returns [L, K]``, gathered back to ``[L, K]``."""
    n_packs, k = counts.numel(), returns.shape[1]
    sums = torch.zeros(n_packs, k, dtype=returns.dtype, device=returns.device).index_add_(0, inverse, returns)
    mean = sums / counts[:, None]
    dev2 = torch.zeros(n_packs, k, dtype=returns.dtype, device=returns.device).index_add_(
        0, inverse, (returns - mean[inverse]) ** 2
    )
    # unbiased, as torch.std; a single-rollout group has no spread, std := 1 (its advantage is 0 anyway)
    denom = (counts - 1).clamp(min=1)[:, None]
    std = torch.where(counts[:, None] > 1, (dev2 / denom).sqrt(), torch.ones_like(dev2))
    return mean[inverse], std[inverse]


def group_advantages(
    solve_returns: torch.Tensor,
    update_returns: torch.Tensor,
    pack_ids: torch.Tensor,
    *,
    std_normalization: StdNormalization = "none",
    min_group_size: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages ``(A_x [L, S], A_z [L, S-1])`` from returns and integer ``pack_ids [L]``.

    ``std_normalization``: ``none`` (CoD, 4.3); ``group`` divides by the group's unbiased std + ``STD_EPS``;
    ``batch`` divides by the unbiased std of every return in the batch (both kinds, all positions) + ``STD_EPS``.
    A pack with fewer than ``min_group_size`` rollouts raises: G = 1 has no baseline and would silently train on
    nothing. Pass ``min_group_size=1`` to accept it (cod.md 4.3: G = 1 gives A = 0, e.g. after filtering).
    """
    if solve_returns.dim() != 2 or solve_returns.shape[1] < 1:
        raise ValueError(f"group_advantages: solve_returns must be [L, S], got {tuple(solve_returns.shape)}")
    n, s = solve_returns.shape
    if tuple(update_returns.shape) != (n, s - 1):
        raise ValueError(
            f"group_advantages: update_returns must be [L, S-1] = {[n, s - 1]}, got {list(update_returns.shape)}"
        )
    if pack_ids.dim() != 1 or pack_ids.shape[0] != n:
        raise ValueError(f"group_advantages: pack_ids must be [L] = [{n}], got {list(pack_ids.shape)}")
    if pack_ids.dtype.is_floating_point or pack_ids.dtype == torch.bool or pack_ids.is_complex():
        raise ValueError(f"group_advantages: pack_ids must be an integer tensor, got {pack_ids.dtype}")
    if not (torch.isfinite(solve_returns).all() and torch.isfinite(update_returns).all()):
        raise ValueError("group_advantages: returns contain NaN or inf")
    if std_normalization not in ("none", "group", "batch"):
        raise ValueError(f"group_advantages: unknown std_normalization {std_normalization!r}")
    if n == 0:
        raise ValueError("group_advantages: empty batch (L = 0)")

    _, inverse, counts = torch.unique(pack_ids, return_inverse=True, return_counts=True)
    if int(counts.min()) < min_group_size:
        small = torch.unique(pack_ids)[counts < min_group_size].tolist()
        raise ValueError(
            f"group_advantages: packs {small} have fewer than {min_group_size} rollouts (G = "
            f"{counts[counts < min_group_size].tolist()}); a group needs G >= {min_group_size} for a baseline"
        )
    dtype = solve_returns.dtype
    both = torch.cat([solve_returns, update_returns], 1).double()
    mean, std = _group_mean_std(both, inverse, counts.double())
    adv = both - mean
    if std_normalization == "group":
        adv = adv / (std + STD_EPS)
    elif std_normalization == "batch":
        batch_std = both.std() if both.numel() > 1 else both.new_tensor(1.0)
        adv = adv / (batch_std + STD_EPS)
    adv = adv.to(dtype)
    return adv[:, :s], adv[:, s:]
