"""PDE Discovery (docs/cod.md 9.7): hidden sparse reaction term; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from cod_envs.lazy_rows import lazy_make_rows
from cod_envs.pde_discovery.env import STATE_KEY, PDEDiscovery
from cod_envs.pde_discovery.policies import POLICIES, hint_blind, oracle, random_policy

ENV = PDEDiscovery
make_rows = lazy_make_rows(__name__, "easy")

__all__ = ["ENV", "POLICIES", "STATE_KEY", "PDEDiscovery", "hint_blind", "make_rows", "oracle", "random_policy"]
