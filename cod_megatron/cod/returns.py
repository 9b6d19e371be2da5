"""Returns over a lifecycle: which later rewards each solve and update episode is credited with (docs/cod.md 4.2, 4.5).

Shape legend: L lifecycles (rollouts, all packs together), S tasks per pack.
``r_x [L, S]`` solve rewards, ``r_z [L, S-1]`` update format rewards; update episode j is written after task j and
produces the hint for task j+1, so it can influence tasks j+1..S-1 but never task j or earlier.
"""

from __future__ import annotations

from typing import Literal

import torch

Credit = Literal["reward_to_go", "outcome", "own"]
ReturnsStyle = Literal["mean", "discounted", "sliding_window_mean"]


def _check(r_x: torch.Tensor, r_z: torch.Tensor, credit: str, returns: str, gamma: float, window: int) -> None:
    if credit not in ("reward_to_go", "outcome", "own"):
        raise ValueError(f"lifecycle_returns: unknown credit mode {credit!r}")
    if returns not in ("mean", "discounted", "sliding_window_mean"):
        raise ValueError(f"lifecycle_returns: unknown returns style {returns!r}")
    if r_x.dim() != 2 or r_x.shape[1] < 1:
        raise ValueError(f"lifecycle_returns: r_x must be [L, S] with S >= 1, got shape {tuple(r_x.shape)}")
    want = (r_x.shape[0], r_x.shape[1] - 1)
    if tuple(r_z.shape) != want:
        raise ValueError(f"lifecycle_returns: r_z must be [L, S-1] = {list(want)}, got {list(r_z.shape)}")
    if not (torch.isfinite(r_x).all() and torch.isfinite(r_z).all()):
        raise ValueError("lifecycle_returns: rewards contain NaN or inf")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"lifecycle_returns: gamma must be in (0, 1], got {gamma}")
    if window < 1:
        raise ValueError(f"lifecycle_returns: window must be >= 1, got {window}")


def _reward_to_go(
    r_x: torch.Tensor, r_z: torch.Tensor, returns: ReturnsStyle, gamma: float, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    s = r_x.shape[1]
    solve = torch.empty_like(r_x)
    update = torch.empty_like(r_z)
    for j in range(s):
        if returns == "mean":
            # R_x[j] = mean(r_x[j..S-1]); R_z[j] = (r_z[j] + sum r_x[j+1..S-1]) / (S-j)   (4.2)
            solve[:, j] = r_x[:, j:].mean(1)
            if j < s - 1:
                update[:, j] = (r_z[:, j] + r_x[:, j + 1 :].sum(1)) / (s - j)
        elif returns == "discounted":
            # a discounted sum: R_x[j] = sum_{l>=j} g^(l-j) r_x[l]; R_z[j] = r_z[j] + sum_{l>=j+1} g^(l-j) r_x[l]
            disc = gamma ** torch.arange(s - j, dtype=r_x.dtype, device=r_x.device)
            solve[:, j] = (r_x[:, j:] * disc).sum(1)
            if j < s - 1:
                update[:, j] = r_z[:, j] + (r_x[:, j + 1 :] * disc[1:]).sum(1)
        elif returns == "sliding_window_mean":
            # mean over positions j..min(j+W-1, S-1), with r_z in place of r_x[j] for the update episode
            end = min(j + window - 1, s - 1)
            solve[:, j] = r_x[:, j : end + 1].mean(1)
            if j < s - 1:
                update[:, j] = (r_z[:, j] + r_x[:, j + 1 : end + 1].sum(1)) / (end - j + 1)
        else:
            raise ValueError(f"lifecycle_returns: unknown returns style {returns!r}")
    return solve, update


def lifecycle_returns(
    r_x: torch.Tensor,
    r_z: torch.Tensor,
    *,
    credit: Credit = "reward_to_go",
    returns: ReturnsStyle = "mean",
    gamma: float = 1.0,
    window: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(solve_returns [L, S], update_returns [L, S-1])`` from ``r_x [L, S]`` and ``r_z [L, S-1]``.

    ``credit="reward_to_go"`` (CoD) uses the ``returns`` style: ``mean`` of rewards-to-go (4.2, the default),
    ``discounted`` sum with ``gamma`` or ``sliding_window_mean`` over ``window`` positions (4.5).
    Ablations ignore ``returns``: ``outcome`` gives every episode, update episodes included, the lifecycle's mean
    task reward ``mean_j r_x[i, j]`` (format rewards do not enter); ``own`` gives each episode only its own reward.
    """
    _check(r_x, r_z, credit, returns, gamma, window)
    if credit == "reward_to_go":
        return _reward_to_go(r_x, r_z, returns, gamma, window)
    if credit == "outcome":
        outcome = r_x.mean(1, keepdim=True)
        return outcome.expand_as(r_x).clone(), outcome.expand_as(r_z).clone()
    if credit == "own":
        return r_x.clone(), r_z.clone()
    raise ValueError(f"lifecycle_returns: unknown credit mode {credit!r}")
