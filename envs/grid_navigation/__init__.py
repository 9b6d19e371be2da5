"""Grid Navigation (cod_spec.md 9.6): exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from typing import Any

from cod_envs.grid_navigation.env import SETTINGS, GridNavigation, cost_landscape, start_and_target
from cod_envs.grid_navigation.policies import hint_blind, oracle, random_policy

ENV = GridNavigation
POLICIES = {"oracle": oracle, "hint-blind": hint_blind, "random": random_policy}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "train") -> list[dict[str, Any]]:
    """``data.make_rows``, imported on call so that ``python -m cod_envs.grid_navigation.data`` runs cleanly."""
    from cod_envs.grid_navigation.data import make_rows as _make_rows

    return _make_rows(n, seed, split, setting)


__all__ = [
    "ENV",
    "POLICIES",
    "SETTINGS",
    "GridNavigation",
    "cost_landscape",
    "hint_blind",
    "make_rows",
    "oracle",
    "random_policy",
    "start_and_target",
]
