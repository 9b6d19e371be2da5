"""TerminalSimulator (docs/cod.md 9.3): a cross-domain evaluation domain; exports what ``cod_envs.registry`` loads."""

from __future__ import annotations

from cod_envs.lazy_rows import lazy_make_rows
from cod_envs.terminal.env import SETTINGS, TerminalSimulator
from cod_envs.terminal.policies import POLICIES, hint_blind, oracle, random_policy
from cod_envs.terminal.tasks import TASK_TYPES, generate_task, pack_layout

ENV = TerminalSimulator
make_rows = lazy_make_rows(__name__, "default")

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
