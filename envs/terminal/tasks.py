"""Terminal tasks (docs/cod.md 9.3): 9 single and 8 composite types drawn from ``random.Random(row seed)``, their
initial files with distractors, and their goal checks (graded by :mod:`cod_envs.terminal.checks`).

Draw order follows the reference's ``generate_task``: local OS, remote host and user, composite coin, template.
With a ``layout`` (the ``per_pack`` setting) the OS, host and user are still drawn, so the rest of the task is the
same as in the default setting, and then replaced by the pack's.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from cod_envs.terminal.machine import home_of, unix_display, windows_display
from cod_envs.terminal.vfs import Path

OS_TYPES = ("windows", "mac", "linux")
SINGLE_TYPES = ("upload", "download", "rename", "move", "chmod", "delete", "copy", "pack", "mkdir")
COMPOSITE_TYPES = (
    "pack_upload",
    "download_extract",
    "mkdir_upload",
    "upload_chmod",
    "upload_delete_source",
    "pack_upload_extract",
    "download_rename",
    "backup_replace",
)
TASK_TYPES = SINGLE_TYPES + COMPOSITE_TYPES
FILENAMES = (
    "report.txt", "data.csv", "image.png", "config.json", "notes.md", "script.sh", "log.txt", "readme.txt",
    "database.db", "output.log", "results.csv", "document.pdf", "settings.ini", "main.py", "index.html", "style.css",
    "app.js", "server.py", "deploy.sh", "backup.sql", "photo.jpg", "diagram.svg", "metrics.json", "requirements.txt",
    "Makefile",
)  # fmt: skip
DIRNAMES = (
    "projects", "documents", "downloads", "backups", "config", "data", "logs", "workspace", "reports", "media",
    "scripts", "output", "staging", "archive", "temp", "src", "build", "dist", "assets", "uploads",
)  # fmt: skip
REMOTE_USERS = ("admin", "deploy", "user", "webmaster", "devops", "ops", "ubuntu")
PERMISSION_MODES = ("644", "755", "600", "700", "664", "640", "444", "750")
ARCHIVE_FORMATS = ("tar", "tar.gz", "zip")
EXTENSIONS = {"tar": ".tar", "tar.gz": ".tar.gz", "zip": ".zip"}
COMPOSITE_RATIO = 0.5


@dataclass(frozen=True)
class Check:
    """One goal check on one machine: file_exists, file_not_exists, dir_exists, permission_equals, archive_contains."""

    kind: str
    machine: str
    path: Path
    content: str | None = None
    mode: str | None = None
    entries: tuple[tuple[str, str], ...] = ()


@dataclass
class Task:
    """A generated task: who and where, what to do, the initial files and the goal checks."""

    seed: int
    os_type: str
    task_type: str
    host: str
    user: str
    description: str = ""
    checks: list[Check] = field(default_factory=list)
    local: list[dict[str, Any]] = field(default_factory=list)
    remote: list[dict[str, Any]] = field(default_factory=list)

    @property
    def category(self) -> str:
        """``single`` or ``composite``."""
        return "single" if self.task_type in SINGLE_TYPES else "composite"


def content_of(name: str, seed: int) -> str:
    """The reference's file content."""
    return f"[Content of {name} | seed={seed} | size=1024]"


def stable_hash(text: str) -> int:
    """A process-independent string hash (the reference's salted ``hash`` made stable, as the spec asks)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def pack_layout(pack_seed: int) -> tuple[str, str, str]:
    """The ``per_pack`` setting's shared (OS, remote host, remote user), from the pack seed alone."""
    rng = random.Random(f"terminal-layout/{pack_seed}")
    return rng.choice(OS_TYPES), f"192.168.1.{rng.randint(10, 99)}", rng.choice(REMOTE_USERS)


class _Gen:
    """The per-task draws, in the reference's order, with display helpers for descriptions."""

    def __init__(self, rng: random.Random, task: Task):
        self.rng, self.t = rng, task
        self.home = home_of(task.os_type)
        self.remote_home: Path = ("home", task.user)

    def local_dir(self) -> Path:
        return (*self.home, self.rng.choice(DIRNAMES))

    def remote_dir(self) -> Path:
        options = [
            ("home", self.t.user, self.rng.choice(DIRNAMES)),
            ("var", "www", "html"),
            ("opt", self.rng.choice(DIRNAMES)),
            ("home", self.t.user),
        ]
        return self.rng.choice(options)

    def two_dirs(self, remote: bool) -> tuple[Path, Path]:
        pick = self.remote_dir if remote else self.local_dir
        a, b = pick(), pick()
        for _ in range(100):
            if b != a:
                break
            b = pick()
        return a, b

    def other_name(self, name: str) -> str:
        return self.rng.choice([n for n in FILENAMES if n != name])

    def ldisp(self, path: Path) -> str:
        return windows_display(path) if self.t.os_type == "windows" else unix_display(path)

    def rdisp(self, path: Path) -> str:
        return f"{self.t.user}@{self.t.host}:{unix_display(path)}"

    def where(self, remote: bool) -> list[dict[str, Any]]:
        return self.t.remote if remote else self.t.local

    def file(self, remote: bool, path: Path, content: str, **extra: Any) -> None:
        self.where(remote).append({"path": path, "content": content, **extra})

    def directory(self, remote: bool, path: Path) -> None:
        self.where(remote).append({"path": path, "dir": True})

    def distractors(self, remote: bool, base: Path, count: int = 3) -> None:
        """Up to ``count`` irrelevant files from the name pool next to the task's files."""
        specs = self.where(remote)
        used = {s["path"] for s in specs}
        for _ in range(count):
            name = self.rng.choice(FILENAMES)
            if (*base, name) not in used:
                seed = self.t.seed + stable_hash(name) % 10_000
                specs.append({"path": (*base, name), "content": content_of(name, seed)})
                used.add((*base, name))

    def check(self, kind: str, remote: bool, path: Path, **kw: Any) -> None:
        self.t.checks.append(Check(kind, "remote" if remote else "local", path, **kw))


def _transfer(g: _Gen, kind: str) -> None:
    name, local_dir, remote_dir = g.rng.choice(FILENAMES), g.local_dir(), g.remote_dir()
    content = content_of(name, g.t.seed)
    if kind == "upload":
        g.file(False, (*local_dir, name), content)
        g.distractors(False, local_dir)
        g.directory(True, remote_dir)
        g.t.description = f"Upload '{g.ldisp((*local_dir, name))}' to {g.rdisp((*remote_dir, name))}"
        g.check("file_exists", True, (*remote_dir, name), content=content)
    else:
        g.directory(False, local_dir)
        g.distractors(False, local_dir)
        g.file(True, (*remote_dir, name), content)
        g.distractors(True, remote_dir)
        g.t.description = f"Download '{g.rdisp((*remote_dir, name))}' to '{g.ldisp((*local_dir, name))}'"
        g.check("file_exists", False, (*local_dir, name), content=content)


def _on(g: _Gen, remote: bool) -> str:
    return " on remote server" if remote else ""


def _single(g: _Gen, kind: str) -> None:
    if kind in ("upload", "download"):
        _transfer(g, kind)
        return
    rng, seed = g.rng, g.t.seed
    remote = rng.choice([True, False])
    if kind == "rename":
        old = rng.choice(FILENAMES)
        new = g.other_name(old)
        content = content_of(old, seed)
        d = g.remote_dir() if remote else g.local_dir()
        g.file(remote, (*d, old), content)
        g.distractors(remote, d)
        where = f"remote {g.rdisp(d)}" if remote else g.ldisp(d)
        g.t.description = f"Rename '{old}' to '{new}' in {where}"
        g.check("file_not_exists", remote, (*d, old))
        g.check("file_exists", remote, (*d, new), content=content)
    elif kind in ("move", "copy"):
        name = rng.choice(FILENAMES)
        content = content_of(name, seed)
        src, dst = g.two_dirs(remote)
        g.file(remote, (*src, name), content)
        g.directory(remote, dst)
        g.distractors(remote, src)
        disp = unix_display if remote else g.ldisp
        target = disp(dst) + ("/" if remote else "") if kind == "move" else disp((*dst, name))
        g.t.description = f"{kind.capitalize()} '{disp((*src, name))}' to '{target}'{_on(g, remote)}"
        if kind == "move":
            g.check("file_not_exists", remote, (*src, name))
        else:
            g.check("file_exists", remote, (*src, name), content=content)
        g.check("file_exists", remote, (*dst, name), content=content)
    elif kind in ("chmod", "delete"):
        remote = remote or (kind == "chmod" and g.t.os_type == "windows")
        name = rng.choice(FILENAMES)
        content = content_of(name, seed)
        old_mode = rng.choice(PERMISSION_MODES) if kind == "chmod" else "644"
        new_mode = rng.choice([m for m in PERMISSION_MODES if m != old_mode]) if kind == "chmod" else ""
        d = g.remote_dir() if remote else g.local_dir()
        g.file(remote, (*d, name), content, mode=old_mode)
        g.distractors(remote, d)
        shown = g.rdisp((*d, name)) if remote else g.ldisp((*d, name))
        if kind == "chmod":
            g.t.description = f"Change permissions of '{shown}' to {new_mode}"
            g.check("permission_equals", remote, (*d, name), mode=new_mode)
        else:
            g.t.description = f"Delete the file '{shown}'"
            g.check("file_not_exists", remote, (*d, name))
    elif kind == "pack":
        fmt = rng.choice(ARCHIVE_FORMATS)
        if not remote and g.t.os_type == "windows":
            fmt = "zip"
        dir_name = rng.choice(DIRNAMES)
        files = rng.sample(FILENAMES, rng.randint(2, 4))
        base = g.remote_dir() if remote else g.local_dir()
        entries = _fill(g, remote, (*base, dir_name), dir_name, files)
        g.distractors(remote, base, 2)
        archive = dir_name + EXTENSIONS[fmt]
        if remote:
            g.t.description = (
                f"Pack the directory '{unix_display((*base, dir_name))}' into '{archive}' on the remote server"
            )
        else:
            g.t.description = f"Pack the directory '{g.ldisp((*base, dir_name))}' into '{archive}'"
        g.check("archive_contains", remote, (*base, archive), entries=entries)
    else:  # mkdir
        parts = tuple(rng.sample(DIRNAMES, rng.randint(2, 4)))
        target = (*(g.remote_home if remote else g.home), *parts)
        shown = unix_display(target) if remote else g.ldisp(target)
        g.t.description = f"Create the directory structure '{shown}'{' on the remote server' if remote else ''}"
        g.check("dir_exists", remote, target)


def _fill(g: _Gen, remote: bool, directory: Path, dir_name: str, files: list[str]) -> tuple[tuple[str, str], ...]:
    """Files of a directory to pack; returns the archive entries ``<dir>/<file>`` they must become."""
    entries = []
    for f in files:
        content = content_of(f, g.t.seed)
        g.file(remote, (*directory, f), content)
        entries.append((f"{dir_name}/{f}", content))
    return tuple(entries)


def _composite(g: _Gen, kind: str) -> None:
    if kind in ("pack_upload", "download_extract", "pack_upload_extract"):
        _archive_composite(g, kind)
    elif kind == "mkdir_upload":
        _mkdir_upload(g)
    elif kind == "download_rename":
        _download_rename(g)
    else:
        _upload_then(g, kind)


def _archive_composite(g: _Gen, kind: str) -> None:
    """pack_upload, download_extract, pack_upload_extract: an archive crosses to the other side."""
    rng, seed = g.rng, g.t.seed
    fmt = rng.choice(ARCHIVE_FORMATS)
    fmt = "zip" if g.t.os_type == "windows" else fmt
    dir_name = rng.choice(DIRNAMES)
    files = rng.sample(FILENAMES, rng.randint(2, 4))
    local_dir, remote_dir = g.local_dir(), g.remote_dir()
    archive = dir_name + EXTENSIONS[fmt]
    if kind == "download_extract":
        entries = tuple((f"{dir_name}/{f}", content_of(f, seed)) for f in files)
        g.file(True, (*remote_dir, archive), "", archive=fmt, entries=dict(entries))
        g.directory(False, local_dir)
        g.t.description = (
            f"Download '{archive}' from {g.rdisp(remote_dir)}/ and extract its contents to '{g.ldisp(local_dir)}'"
        )
        for rel, content in entries:
            g.check("file_exists", False, (*local_dir, *rel.split("/")), content=content)
        return
    entries = _fill(g, False, (*local_dir, dir_name), dir_name, files)
    g.directory(True, remote_dir)
    src = g.ldisp((*local_dir, dir_name))
    if kind == "pack_upload":
        g.t.description = f"Pack '{src}' into a {fmt} archive and upload it to {g.rdisp(remote_dir)}/"
        g.check("archive_contains", True, (*remote_dir, archive), entries=entries)
    else:
        g.t.description = f"Pack '{src}' into a {fmt} archive, upload to {g.rdisp(remote_dir)}/, and extract it there"
        for rel, content in entries:
            g.check("file_exists", True, (*remote_dir, *rel.split("/")), content=content)


def _mkdir_upload(g: _Gen) -> None:
    rng = g.rng
    name = rng.choice(FILENAMES)
    content = content_of(name, g.t.seed)
    local_dir = g.local_dir()
    remote_dir = (*g.remote_home, *rng.sample(DIRNAMES, rng.randint(2, 3)))
    g.file(False, (*local_dir, name), content)
    g.distractors(False, local_dir)
    g.t.description = (
        f"Create the directory '{unix_display(remote_dir)}' on the remote server, then upload "
        f"'{g.ldisp((*local_dir, name))}' there"
    )
    g.check("dir_exists", True, remote_dir)
    g.check("file_exists", True, (*remote_dir, name), content=content)


def _download_rename(g: _Gen) -> None:
    old = g.rng.choice(FILENAMES)
    new = g.other_name(old)
    content = content_of(old, g.t.seed)
    local_dir, remote_dir = g.local_dir(), g.remote_dir()
    g.file(True, (*remote_dir, old), content)
    g.directory(False, local_dir)
    g.t.description = f"Download '{old}' from {g.rdisp(remote_dir)}/ and rename it to '{new}' in '{g.ldisp(local_dir)}'"
    g.check("file_exists", False, (*local_dir, new), content=content)
    g.check("file_not_exists", False, (*local_dir, old))


def _upload_then(g: _Gen, kind: str) -> None:
    """backup_replace, upload_chmod, upload_delete_source: one local file uploaded, plus a second action."""
    rng, seed = g.rng, g.t.seed
    name = rng.choice(FILENAMES)
    content = content_of(name, seed)
    local_dir, remote_dir = g.local_dir(), g.remote_dir()
    shown = g.ldisp((*local_dir, name))
    if kind == "backup_replace":
        new_content = content_of(name, seed + 99_999)
        g.file(False, (*local_dir, name), new_content)
        g.file(True, (*remote_dir, name), content)
        g.t.description = (
            f"On the remote server, rename '{unix_display((*remote_dir, name))}' to '{name}.bak' as a backup, then "
            f"upload the new version from '{shown}'"
        )
        g.check("file_exists", True, (*remote_dir, name + ".bak"), content=content)
        g.check("file_exists", True, (*remote_dir, name), content=new_content)
        return
    g.file(False, (*local_dir, name), content)
    g.directory(True, remote_dir)
    g.check("file_exists", True, (*remote_dir, name), content=content)
    if kind == "upload_chmod":
        mode = rng.choice(["755", "700", "600", "444"])
        g.t.description = f"Upload '{shown}' to {g.rdisp(remote_dir)}/ and set its permissions to {mode}"
        g.check("permission_equals", True, (*remote_dir, name), mode=mode)
    else:  # upload_delete_source
        g.distractors(False, local_dir)
        g.t.description = f"Upload '{shown}' to {g.rdisp(remote_dir)}/ and then delete the local copy"
        g.check("file_not_exists", False, (*local_dir, name))


def generate_task(
    seed: int,
    composite_ratio: float = COMPOSITE_RATIO,
    forced_type: str | None = None,
    layout: tuple[str, str, str] | None = None,
) -> Task:
    """The task of a row seed (``forced_type`` picks the type; ``layout`` overrides OS, host and user)."""
    rng = random.Random(seed)
    os_type, host, user = rng.choice(OS_TYPES), f"192.168.1.{rng.randint(10, 99)}", rng.choice(REMOTE_USERS)
    if layout is not None:
        os_type, host, user = layout
    if forced_type in TASK_TYPES:
        kind = forced_type
    elif rng.random() < composite_ratio:
        kind = rng.choice(COMPOSITE_TYPES)
    else:
        kind = rng.choice(SINGLE_TYPES)
    task = Task(seed=seed, os_type=os_type, task_type=kind, host=host, user=user)
    g = _Gen(rng, task)
    (_single if kind in SINGLE_TYPES else _composite)(g, kind)
    return task
