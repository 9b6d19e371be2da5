"""Grid Navigation (docs/cod.md 9.6): exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from cod_envs.grid_navigation.env import SETTINGS, GridNavigation, cost_landscape, start_and_target
from cod_envs.grid_navigation.policies import POLICIES, hint_blind, oracle, random_policy
from cod_envs.lazy_rows import lazy_make_rows

ENV = GridNavigation
make_rows = lazy_make_rows(__name__, "train")

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
