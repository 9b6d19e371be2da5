"""Optimal Control (docs/cod.md 9.5): hidden double-integrator dynamics; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from cod_envs.lazy_rows import lazy_make_rows
from cod_envs.optimal_control.env import OptimalControl, hidden_dynamics, simulate
from cod_envs.optimal_control.expr import Expression, ExpressionError, parse_expression
from cod_envs.optimal_control.policies import POLICIES, hint_blind, oracle, random_policy

ENV = OptimalControl
make_rows = lazy_make_rows(__name__, "hard")

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
