"""FrozenLake-Obscure (docs/cod.md 9.1): the training domain; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from cod_envs.frozenlake_obscure.env import SETTINGS, FrozenLakeObscure, action_mapping, generate_map
from cod_envs.frozenlake_obscure.policies import POLICIES, hint_blind, oracle, random_policy
from cod_envs.lazy_rows import lazy_make_rows

ENV = FrozenLakeObscure
make_rows = lazy_make_rows(__name__, "easy")

__all__ = [
    "ENV",
    "POLICIES",
    "SETTINGS",
    "FrozenLakeObscure",
    "action_mapping",
    "generate_map",
    "hint_blind",
    "make_rows",
    "oracle",
    "random_policy",
]
