"""Alchemy-Random (docs/cod.md 9.2): hidden per-pack recipe graphs; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from cod_envs.alchemy_random.env import AlchemyRandom, parse_action
from cod_envs.alchemy_random.graph import SETTINGS, generate_graph
from cod_envs.alchemy_random.policies import POLICIES, hint_blind, oracle, random_policy
from cod_envs.lazy_rows import lazy_make_rows

ENV = AlchemyRandom
make_rows = lazy_make_rows(__name__, "easy")

__all__ = [
    "ENV",
    "POLICIES",
    "SETTINGS",
    "AlchemyRandom",
    "generate_graph",
    "hint_blind",
    "make_rows",
    "oracle",
    "parse_action",
    "random_policy",
]
