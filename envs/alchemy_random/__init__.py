"""Alchemy-Random (cod_spec.md 9.2): hidden per-pack recipe graphs; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from typing import Any

from cod_envs.alchemy_random.env import SETTINGS, AlchemyRandom, generate_graph, parse_action
from cod_envs.alchemy_random.policies import hint_blind, oracle, random_policy

ENV = AlchemyRandom
POLICIES = {"oracle": oracle, "hint-blind": hint_blind, "random": random_policy}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "easy") -> list[dict[str, Any]]:
    """``data.make_rows``, imported on call so that ``python -m cod_envs.alchemy_random.data`` runs cleanly."""
    from cod_envs.alchemy_random.data import make_rows as _make_rows

    return _make_rows(n, seed, split, setting)


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
