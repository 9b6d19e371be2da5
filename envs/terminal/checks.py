"""A Terminal task made concrete (docs/cod.md 9.3): its two machines with their initial files, and the goal checks
that grade them afterwards (all must pass for reward 1)."""

from __future__ import annotations

from typing import Any

from cod_envs.terminal.machine import LOCAL_USER, Machine, home_of
from cod_envs.terminal.tasks import Check, Task
from cod_envs.terminal.vfs import Dir, File


def _populate(m: Machine, specs: list[dict[str, Any]]) -> None:
    m.fs.makedirs(m.home, m.user)
    for spec in specs:
        path = spec["path"]
        if spec.get("dir"):
            m.fs.makedirs(path, m.user)
            continue
        m.fs.makedirs(path[:-1], m.user)
        entries = spec.get("entries")
        node = File(spec["content"], spec.get("mode", "644"), m.user, spec.get("archive"), dict(entries or {}) or None)
        m.fs.put(path, node)


def build_machines(task: Task) -> tuple[Machine, Machine]:
    """(local, remote) with their initial files; both shells start in their home."""
    local = Machine(task.os_type, "localhost", LOCAL_USER, home_of(task.os_type))
    remote = Machine("linux", task.host, task.user, ("home", task.user))
    _populate(local, task.local)
    _populate(remote, task.remote)
    return local, remote


def check_passes(check: Check, local: Machine, remote: Machine) -> bool:
    """One goal check (cod.md 9.3's semantics; archive format is not compared, extra entries are allowed)."""
    node = (remote if check.machine == "remote" else local).fs.get(check.path)
    if check.kind == "file_exists":
        return isinstance(node, File) and (check.content is None or node.content == check.content)
    if check.kind == "file_not_exists":
        return node is None
    if check.kind == "dir_exists":
        return isinstance(node, Dir)
    if check.kind == "permission_equals":
        return node is not None and node.mode == check.mode
    if check.kind == "archive_contains":
        if not isinstance(node, File) or node.archive is None:
            return False
        have = node.entries or {}
        return all(have.get(rel) == content for rel, content in check.entries)
    raise ValueError(f"unknown check {check.kind!r}")


def all_pass(task: Task, local: Machine, remote: Machine) -> bool:
    """Whether every goal check of the task passes."""
    return all(check_passes(c, local, remote) for c in task.checks)
