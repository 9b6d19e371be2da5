"""The run's reward rule: the recipe's penalties over the domain's registry defaults (cod.md 3.1, 3.3, 7.2)."""

from __future__ import annotations

from cod_envs.registry import Domain
from cod_megatron.cod.rewards import RewardRule
from cod_megatron.config import AlgorithmConfig


def reward_rule(alg: AlgorithmConfig, domain: Domain) -> RewardRule:
    """``algorithm.step_penalty_coef`` when the recipe sets it, else the domain's coefficient."""
    coef = domain.step_penalty_coef if alg.step_penalty_coef is None else alg.step_penalty_coef
    return RewardRule(
        step_penalty_coef=coef,
        len_zero_penalty=alg.len_zero_penalty,
        len_full_penalty=alg.len_full_penalty,
        hint_penalty=alg.hint_penalty,
    )
