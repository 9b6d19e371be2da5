"""TerminalSimulator (cod_spec.md 9.3): a cross-domain evaluation domain; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from typing import Any

from cod_envs.terminal.env import SETTINGS, TerminalSimulator
from cod_envs.terminal.policies import hint_blind, oracle, random_policy
from cod_envs.terminal.tasks import TASK_TYPES, generate_task, pack_layout

ENV = TerminalSimulator
POLICIES = {"oracle": oracle, "hint-blind": hint_blind, "random": random_policy}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "default") -> list[dict[str, Any]]:
    """``data.make_rows``, imported on call so that ``python -m cod_envs.terminal.data`` runs cleanly."""
    from cod_envs.terminal.data import make_rows as _make_rows

    return _make_rows(n, seed, split, setting)


__all__ = [
    "ENV",
    "POLICIES",
    "SETTINGS",
    "TASK_TYPES",
    "TerminalSimulator",
    "generate_task",
    "hint_blind",
    "make_rows",
    "oracle",
    "pack_layout",
    "random_policy",
]
