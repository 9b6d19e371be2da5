"""Optimal Control (cod_spec.md 9.5): hidden double-integrator dynamics; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from typing import Any

from cod_envs.optimal_control.env import OptimalControl, hidden_dynamics, simulate
from cod_envs.optimal_control.expr import Expression, ExpressionError, parse_expression
from cod_envs.optimal_control.policies import hint_blind, oracle, random_policy

ENV = OptimalControl
POLICIES = {"oracle": oracle, "hint-blind": hint_blind, "random": random_policy}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "hard") -> list[dict[str, Any]]:
    """``data.make_rows``, imported on call so that ``python -m cod_envs.optimal_control.data`` runs cleanly."""
    from cod_envs.optimal_control.data import make_rows as _make_rows

    return _make_rows(n, seed, split, setting)


__all__ = [
    "ENV",
    "POLICIES",
    "Expression",
    "ExpressionError",
    "OptimalControl",
    "hidden_dynamics",
    "hint_blind",
    "make_rows",
    "oracle",
    "parse_expression",
    "random_policy",
    "simulate",
]
