"""FrozenLake-Obscure (cod_spec.md 9.1): the training domain; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from typing import Any

from cod_envs.frozenlake_obscure.env import SETTINGS, FrozenLakeObscure, action_mapping, generate_map
from cod_envs.frozenlake_obscure.policies import hint_blind, oracle, random_policy

ENV = FrozenLakeObscure
POLICIES = {"oracle": oracle, "hint-blind": hint_blind, "random": random_policy}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "easy") -> list[dict[str, Any]]:
    """``data.make_rows``, imported on call so that ``python -m cod_envs.frozenlake_obscure.data`` runs cleanly."""
    from cod_envs.frozenlake_obscure.data import make_rows as _make_rows

    return _make_rows(n, seed, split, setting)


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
