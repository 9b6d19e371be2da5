"""Per-episode reward scalars from environment outcomes (docs/cod.md section 3).

Units: rewards are dimensionless floats; lengths are response tokens; steps are environment turns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def _ramp(tokens: int, len_zero_penalty: int, len_full_penalty: int) -> float:
    return min(max((tokens - len_zero_penalty) / (len_full_penalty - len_zero_penalty), 0.0), 1.0)


def solve_reward(
    outcome: float,
    turn_response_tokens: Sequence[int],
    turns_used: int,
    max_step_num: int,
    *,
    step_penalty_coef: float = 0.1,
    len_zero_penalty: int = 1_000_000,
    len_full_penalty: int = 2_000_000,
) -> float:
    """Solve reward r_x: the outcome minus the length/step penalty, applied only when the outcome is positive (3.1).

    ``turn_response_tokens`` holds the response tokens of each turn; ``max_step_num`` is the domain's turn budget.
    With the 8B defaults the token ramp is always 0 and the penalty is ``coef * turns_used / max_step_num``.
    The penalised reward is floored at 0 so a slow success never scores below a failure.
    """
    if not math.isfinite(outcome):
        raise ValueError(f"solve_reward: outcome must be finite, got {outcome}")
    if max_step_num < 1:
        raise ValueError(f"solve_reward: max_step_num must be >= 1, got {max_step_num}")
    if turns_used < 0:
        raise ValueError(f"solve_reward: turns_used must be >= 0, got {turns_used}")
    if len_full_penalty <= len_zero_penalty:
        raise ValueError(
            f"solve_reward: len_full_penalty ({len_full_penalty}) must exceed len_zero_penalty ({len_zero_penalty})"
        )
    if step_penalty_coef < 0:
        raise ValueError(f"solve_reward: step_penalty_coef must be >= 0, got {step_penalty_coef}")
    if outcome <= 0:
        return float(outcome)
    ramps = [_ramp(n, len_zero_penalty, len_full_penalty) for n in turn_response_tokens]
    resp_penalty = sum(ramps) / len(ramps) if ramps else 0.0
    penalty = step_penalty_coef * (resp_penalty + turns_used / max_step_num)
    return max(0.0, float(outcome) - penalty)


def update_reward(parsed: bool, hint_penalty: float = 0.1) -> float:
    """Update reward r_z: a small format reward, 0 if the hint parsed and ``-hint_penalty`` otherwise (3.3)."""
    if hint_penalty < 0:
        raise ValueError(f"update_reward: hint_penalty must be >= 0, got {hint_penalty}")
    return 0.0 if parsed else -float(hint_penalty)


@dataclass(frozen=True, kw_only=True)
class RewardRule:
    """How an episode's environment outcome becomes its reward r_x / r_z (cod.md 3.1, 3.3).

    Built once per run from the recipe and the domain's registry entry (``rollout.rewards.reward_rule``); the
    lifecycle runner applies it, so every caller (training, in-loop and checkpoint evaluation) scores alike.
    """

    step_penalty_coef: float = 0.0
    """The solve length-penalty coefficient: 0.1 on FrozenLake-Obscure and Alchemy-Random, 0 elsewhere."""
    len_zero_penalty: int = 1_000_000
    len_full_penalty: int = 2_000_000
    hint_penalty: float = 0.1

    def solve(self, outcome: float, turn_response_tokens: Sequence[int], turns_used: int, turn_budget: int) -> float:
        """r_x of a solve episode that used ``turns_used`` of ``turn_budget`` turns."""
        return solve_reward(
            outcome,
            turn_response_tokens,
            turns_used,
            turn_budget,
            step_penalty_coef=self.step_penalty_coef,
            len_zero_penalty=self.len_zero_penalty,
            len_full_penalty=self.len_full_penalty,
        )

    def update(self, parsed: bool) -> float:
        """r_z of an update episode."""
        return update_reward(parsed, self.hint_penalty)


def total_reward(r_x: torch.Tensor, decay: float = 1.0) -> torch.Tensor:
    """Pack-level total reward ``sum_j decay^(S-1-j) * r_x[..., j]`` over the last dim ``[..., S]`` (3.4).

    Used for logging and the non-causal fallback only; ``decay < 1`` weighs later tasks more.
    """
    if r_x.dim() < 1 or r_x.shape[-1] < 1:
        raise ValueError(f"total_reward: r_x needs a non-empty last dim [..., S], got shape {tuple(r_x.shape)}")
    if not torch.isfinite(r_x).all():
        raise ValueError("total_reward: r_x contains NaN or inf")
    s = r_x.shape[-1]
    weights = decay ** torch.arange(s - 1, -1, -1, dtype=torch.float64)
    return (r_x.double() * weights).sum(-1).to(r_x.dtype)


def judge_format_keep_mask(judge_format_error: torch.Tensor | Sequence[bool]) -> torch.Tensor:
    """Keep mask ``[L]`` (bool): lifecycles flagged ``judge_format_error`` are dropped before advantages (3.4)."""
    flags = torch.as_tensor(judge_format_error)
    if flags.dim() != 1:
        raise ValueError(f"judge_format_keep_mask: expected a 1-D flag per lifecycle [L], got {tuple(flags.shape)}")
    if flags.dtype != torch.bool:
        raise ValueError(f"judge_format_keep_mask: flags must be bool, got {flags.dtype}")
    return ~flags
