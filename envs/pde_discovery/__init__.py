"""PDE Discovery (cod_spec.md 9.7): hidden sparse reaction term; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from typing import Any

from cod_envs.pde_discovery.env import STATE_KEY, PDEDiscovery
from cod_envs.pde_discovery.policies import hint_blind, oracle, random_policy

ENV = PDEDiscovery
POLICIES = {"oracle": oracle, "hint-blind": hint_blind, "random": random_policy}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "easy") -> list[dict[str, Any]]:
    """``data.make_rows``, imported on call so that ``python -m cod_envs.pde_discovery.data`` runs cleanly."""
    from cod_envs.pde_discovery.data import make_rows as _make_rows

    return _make_rows(n, seed, split, setting)


__all__ = ["ENV", "POLICIES", "STATE_KEY", "PDEDiscovery", "hint_blind", "make_rows", "oracle", "random_policy"]
