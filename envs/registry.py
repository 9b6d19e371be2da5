"""Domain names -> their packages. Each domain package exports ``ENV`` (the Environment class),
``make_rows(n, seed, split, setting)`` and ``POLICIES`` (name -> factory ``(seed) -> TextPolicy``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cod_envs.base import Environment, TextPolicy

DOMAINS: dict[str, str] = {
    "alchemy_random": "cod_envs.alchemy_random",
    "hidden_key": "cod_envs.hidden_key",
    "frozenlake_obscure": "cod_envs.frozenlake_obscure",
    "grid_navigation": "cod_envs.grid_navigation",
    "optimal_control": "cod_envs.optimal_control",
    "terminal": "cod_envs.terminal",
    "pde_discovery": "cod_envs.pde_discovery",
    "learn2ask": "cod_envs.learn2ask",
}


@dataclass(frozen=True)
class Domain:
    """What evaluation and training need from a domain."""

    name: str
    env: type[Environment]
    make_rows: Callable[..., list[dict[str, Any]]]
    policies: dict[str, Callable[[int], TextPolicy]]


def load(name: str) -> Domain:
    """Import the domain ``name`` (lazily: domains stay independent of each other)."""
    if name not in DOMAINS:
        raise KeyError(f"unknown environment {name!r}; known: {', '.join(sorted(DOMAINS))}")
    mod = importlib.import_module(DOMAINS[name])
    return Domain(name=name, env=mod.ENV, make_rows=mod.make_rows, policies=dict(mod.POLICIES))
