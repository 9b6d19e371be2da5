"""Domain names -> their registry entries. Each domain package exports ``ENV`` (the Environment class),
``make_rows(n, seed, split, setting)`` and ``POLICIES`` (name -> factory ``(seed) -> TextPolicy``), and may export the
hooks of :mod:`cod_envs.hooks` (``WORD_VOCABULARY``, ``WARM_START``); the entry adds what the CoD core needs to know
about the domain but the environment does not compute (the step penalty)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cod_envs.base import Environment, TextPolicy
from cod_envs.hooks import WarmStart


@dataclass(frozen=True)
class Entry:
    """Where a domain lives and its reward settings (cod.md 3.1 / 7.2)."""

    package: str
    step_penalty_coef: float = 0.0
    """Solve length-penalty coefficient: ``coef * turns_used / turn budget`` off a positive outcome (the budget is
    the environment's ``max_turns``: FrozenLake ``agent_max_steps``, Alchemy rounds). Recipes may override it."""


DOMAINS: dict[str, Entry] = {
    "alchemy_random": Entry("cod_envs.alchemy_random", step_penalty_coef=0.1),
    "code_lock": Entry("cod_envs.code_lock"),
    "hidden_key": Entry("cod_envs.hidden_key"),
    "hidden_key_chat": Entry("cod_envs.hidden_key.chat"),
    "frozenlake_obscure": Entry("cod_envs.frozenlake_obscure", step_penalty_coef=0.1),
    "grid_navigation": Entry("cod_envs.grid_navigation"),
    "optimal_control": Entry("cod_envs.optimal_control"),
    "terminal": Entry("cod_envs.terminal"),
    "pde_discovery": Entry("cod_envs.pde_discovery"),
    "learn2ask": Entry("cod_envs.learn2ask"),
}


@dataclass(frozen=True)
class Domain:
    """What evaluation and training need from a domain."""

    name: str
    env: type[Environment]
    make_rows: Callable[..., list[dict[str, Any]]]
    policies: dict[str, Callable[[int], TextPolicy]]
    step_penalty_coef: float = 0.0
    word_vocabulary: tuple[str, ...] | None = None
    """A domain played by a word-level model brings its vocabulary (one word, one token id); None: a chat model."""
    warm_start: WarmStart | None = None
    """The supervised warm start the domain offers before RL; None: none."""


def load(name: str) -> Domain:
    """Import the domain ``name`` (lazily: domains stay independent of each other)."""
    if name not in DOMAINS:
        raise KeyError(f"unknown environment {name!r}; known: {', '.join(sorted(DOMAINS))}")
    entry = DOMAINS[name]
    mod = importlib.import_module(entry.package)
    return Domain(
        name=name,
        env=mod.ENV,
        make_rows=mod.make_rows,
        policies=dict(mod.POLICIES),
        step_penalty_coef=entry.step_penalty_coef,
        word_vocabulary=getattr(mod, "WORD_VOCABULARY", None),
        warm_start=getattr(mod, "WARM_START", None),
    )


def step_penalty_coef(env_cls: type[Environment]) -> float:
    """The registered coefficient of ``env_cls``'s domain; 0 for environments outside the registry (test domains)."""
    entry = DOMAINS.get(getattr(env_cls, "name", ""))
    return entry.step_penalty_coef if entry is not None else 0.0
