"""What the scripted Terminal policies know: how to read a task from the system prompt a model sees, the plan of
operations per task type, and the candidate command patterns per operation and OS.

The candidates model an agent unsure of this simulator's syntax: some work, some are unavailable on an OS
(``tar``/``rsync``/PowerShell on Windows, ``pscp`` anywhere) and some run without error but miss the goal (``zip``
without ``-r``, extracting without a destination). Which ones work is exactly what a hint can carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OS_LABELS = {"windows": "Windows", "mac": "macOS", "linux": "Linux", "remote": "Remote Linux"}
"""Scope of a pattern: the local OS, or the remote host (always Linux)."""

_ZIP_PACK = [
    ("zip_r", "cd {base} && zip -r {archive} {name}"),
    ("zip", "cd {base} && zip {archive} {name}"),
    ("gzip_r", "cd {base} && gzip -r {name}"),
]
"""The zip / gzip pack commands: the same on every OS (the simulator runs them alike)."""
_UNZIP = [
    ("unzip_d", "unzip -o {archive} -d {dest}"),
    ("cd_unzip", "cd {dest} && unzip -o {archive}"),
    ("unzip", "unzip -o {archive}"),
]
"""The unzip commands: the same on every OS."""
_UNIX_FILE_OPS: dict[str, list[tuple[str, str]]] = {
    "rename": [("mv", "mv {dir}/{old} {dir}/{new}")],
    "move": [("mv", "mv {src} {dst}")],
    "copy": [("cp", "cp {src} {dst}")],
    "chmod": [("chmod", "chmod {mode} {path}")],
    "delete": [("rm", "rm -f {path}")],
    "mkdir": [("mkdir_p", "mkdir -p {path}"), ("mkdir", "mkdir {path}")],
    "pack": [("tar", "cd {base} && tar -c{z}f {archive} {name}"), *_ZIP_PACK],
    "extract_zip": _UNZIP,
    "extract_tar": [
        ("tar_c", "tar -x{z}f {archive} -C {dest}"),
        ("cd_tar", "cd {dest} && tar -x{z}f {archive}"),
        ("tar", "tar -x{z}f {archive}"),
    ],
}
_WINDOWS_FILE_OPS: dict[str, list[tuple[str, str]]] = {
    "rename": [("ren", "ren {dir}\\{old} {new}"), ("mv", "mv {dir}\\{old} {dir}\\{new}")],
    "move": [("move", "move {src} {dst}")],
    "copy": [("copy", "copy {src} {dst}")],
    "delete": [("del", "del {path}")],
    "mkdir": [("mkdir", "mkdir {path}"), ("mkdir_p", "mkdir -p {path}")],
    "pack": [
        ("tar", "cd {base} && tar -a -cf {archive} {name}"),
        ("compress", "powershell Compress-Archive -Path {base}\\{name} -DestinationPath {base}\\{archive}"),
        *_ZIP_PACK,
    ],
    "extract_zip": [*_UNZIP, ("expand", "powershell Expand-Archive -Path {archive} -DestinationPath {dest}")],
}
_TRANSFERS: dict[str, list[tuple[str, str]]] = {
    "upload": [
        ("scp", "scp {src} {user}@{host}:{rdir}/"),
        ("rsync", "rsync -avz {src} {user}@{host}:{rdir}/"),
        ("pscp", "pscp {src} {user}@{host}:{rdir}/"),
    ],
    "download": [
        ("scp", "scp {user}@{host}:{rfile} {ldir}"),
        ("rsync", "rsync -avz {user}@{host}:{rfile} {ldir}"),
        ("pscp", "pscp {user}@{host}:{rfile} {ldir}"),
    ],
}
REMOTE_WRAPPER = 'ssh {user}@{host} "{inner}"'


def candidates(scope: str, op: str) -> list[tuple[str, str]]:
    """(variant, pattern) for an operation in a scope (``windows``/``mac``/``linux`` local, or ``remote``)."""
    if op in _TRANSFERS:
        return _TRANSFERS[op]
    table = _WINDOWS_FILE_OPS if scope == "windows" else _UNIX_FILE_OPS
    return table.get("pack" if op in ("pack_zip", "pack_tar") else op, [])


def command_word(pattern: str) -> str:
    """The program a pattern runs (after an optional ``cd X &&``)."""
    words = pattern.split("&&")[-1].split()
    return words[0] if words else ""


@dataclass(frozen=True)
class Op:
    """One step of a plan: where it runs, what it does, the values its patterns are filled with."""

    scope: str
    op: str
    params: tuple[tuple[str, str], ...]

    def key(self, variant: str) -> str:
        """``scope.op.variant``: the label a policy writes next to its command."""
        return f"{self.scope}.{self.op}.{variant}"

    def command(self, pattern: str, user: str, host: str) -> str:
        """The command line of a pattern (remote operations are wrapped in ``ssh user@host "..."``)."""
        values = dict(self.params, user=user, host=host)
        inner = pattern.format(**values)
        return REMOTE_WRAPPER.format(user=user, host=host, inner=inner) if self.scope == "remote" else inner


@dataclass(frozen=True)
class Parsed:
    """A task as read from the system prompt."""

    os_type: str
    host: str
    user: str
    ops: tuple[Op, ...]


_ENV_RE = re.compile(r"- Local machine: \S+ \(type: (\w+),.*\n- Remote server: (\S+) .*\n- Remote username: (\S+)")
_TASK_RE = re.compile(r"## Task\n(.+)\n")
_R = r"\S+@[\d.]+:"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("upload_chmod", re.compile(
        rf"Upload '(?P<src>[^']+)' to {_R}(?P<rdir>\S+)/ and set its permissions to (?P<mode>\d+)")),
    ("upload_delete_source", re.compile(
        rf"Upload '(?P<src>[^']+)' to {_R}(?P<rdir>\S+)/ and then delete the local copy")),
    ("upload", re.compile(rf"Upload '(?P<src>[^']+)' to {_R}(?P<rfile>\S+)")),
    ("download_extract", re.compile(
        rf"Download '(?P<archive>[^']+)' from {_R}(?P<rdir>\S+)/ and extract its contents to '(?P<ldir>[^']+)'")),
    ("download_rename", re.compile(
        rf"Download '(?P<old>[^']+)' from {_R}(?P<rdir>\S+)/ and rename it to '(?P<new>[^']+)' in '(?P<ldir>[^']+)'")),
    ("download", re.compile(rf"Download '{_R}(?P<rfile>[^']+)' to '(?P<lfile>[^']+)'")),
    ("rename", re.compile(rf"Rename '(?P<old>[^']+)' to '(?P<new>[^']+)' in (?P<remote>remote {_R})?(?P<dir>.+)")),
    ("move", re.compile(r"Move '(?P<src>[^']+)' to '(?P<dst>[^']+)'(?P<remote> on remote server)?")),
    ("copy", re.compile(r"Copy '(?P<src>[^']+)' to '(?P<dst>[^']+)'(?P<remote> on remote server)?")),
    ("chmod", re.compile(rf"Change permissions of '(?P<remote>{_R})?(?P<path>[^']+)' to (?P<mode>\d+)")),
    ("delete", re.compile(rf"Delete the file '(?P<remote>{_R})?(?P<path>[^']+)'")),
    ("pack", re.compile(
        r"Pack the directory '(?P<src>[^']+)' into '(?P<archive>[^']+)'(?P<remote> on the remote server)?")),
    ("pack_upload_extract", re.compile(
        rf"Pack '(?P<src>[^']+)' into a (?P<fmt>\S+) archive, upload to {_R}(?P<rdir>\S+)/, and extract it there")),
    ("pack_upload", re.compile(
        rf"Pack '(?P<src>[^']+)' into a (?P<fmt>\S+) archive and upload it to {_R}(?P<rdir>\S+)/")),
    ("mkdir", re.compile(r"Create the directory structure '(?P<path>[^']+)'(?P<remote> on the remote server)?")),
    ("mkdir_upload", re.compile(
        r"Create the directory '(?P<rdir>[^']+)' on the remote server, then upload '(?P<src>[^']+)' there")),
    ("backup_replace", re.compile(
        r"On the remote server, rename '(?P<rfile>[^']+)' to '(?P<bak>[^']+)' as a backup, then upload the new "
        r"version from '(?P<src>[^']+)'")),
]  # fmt: skip
EXTENSIONS = {"tar": ".tar", "tar.gz": ".tar.gz", "zip": ".zip"}


def _split(path: str, windows: bool) -> tuple[str, str]:
    """(directory, name) of a displayed path."""
    head, _, tail = path.rstrip("/").rpartition("\\" if windows else "/")
    return head or "/", tail


def _archive_op(scope: str, archive: str, dest: str) -> Op:
    kind = "extract_zip" if archive.endswith(".zip") else "extract_tar"
    z = "z" if archive.endswith(".gz") else ""
    return Op(scope, kind, (("archive", archive), ("dest", dest), ("z", z)))


def _pack_op(scope: str, src: str, archive: str, windows: bool) -> Op:
    base, name = _split(src, windows)
    return Op(
        scope, "pack", (("base", base), ("name", name), ("archive", archive), ("z", "z" * archive.endswith(".gz")))
    )


def plan(kind: str, g: dict[str, str], os_type: str) -> list[Op]:
    """The operations of a task type, in order."""
    win = os_type == "windows"
    sep = "\\" if win else "/"
    local, where = os_type, ("remote" if g.get("remote") else os_type)

    def upload(src: str, rdir: str) -> Op:
        return Op(local, "upload", (("src", src), ("rdir", rdir)))

    if kind == "upload":
        return [upload(g["src"], _split(g["rfile"], False)[0])]
    if kind == "download":
        return [Op(local, "download", (("rfile", g["rfile"]), ("ldir", _split(g["lfile"], win)[0])))]
    if kind == "rename":
        return [Op(where, "rename", (("dir", g["dir"]), ("old", g["old"]), ("new", g["new"])))]
    if kind in ("move", "copy"):
        dst = g["dst"].rstrip("/") if where == "remote" else g["dst"]
        return [Op(where, kind, (("src", g["src"]), ("dst", dst)))]
    if kind in ("chmod", "delete"):
        return [Op(where, kind, (("path", g["path"]), ("mode", g.get("mode") or "")))]
    if kind == "pack":
        return [_pack_op(where, g["src"], g["archive"], win and where != "remote")]
    if kind == "mkdir":
        return [Op(where, "mkdir", (("path", g["path"]),))]
    if kind in ("pack_upload", "pack_upload_extract"):
        base, name = _split(g["src"], win)
        archive = name + EXTENSIONS.get(g["fmt"], ".zip")
        ops = [_pack_op(local, g["src"], archive, win), upload(f"{base}{sep}{archive}", g["rdir"])]
        if kind == "pack_upload_extract":
            ops.append(_archive_op("remote", f"{g['rdir']}/{archive}", g["rdir"]))
        return ops
    if kind == "download_extract":
        fetch = Op(local, "download", (("rfile", f"{g['rdir']}/{g['archive']}"), ("ldir", g["ldir"])))
        return [fetch, _archive_op(local, f"{g['ldir']}{sep}{g['archive']}", g["ldir"])]
    if kind == "download_rename":
        fetch = Op(local, "download", (("rfile", f"{g['rdir']}/{g['old']}"), ("ldir", g["ldir"])))
        return [fetch, Op(local, "rename", (("dir", g["ldir"]), ("old", g["old"]), ("new", g["new"])))]
    if kind == "mkdir_upload":
        return [Op("remote", "mkdir", (("path", g["rdir"]),)), upload(g["src"], g["rdir"])]
    if kind == "upload_chmod":
        _, name = _split(g["src"], win)
        chmod = Op("remote", "chmod", (("path", f"{g['rdir']}/{name}"), ("mode", g["mode"])))
        return [upload(g["src"], g["rdir"]), chmod]
    if kind == "upload_delete_source":
        return [upload(g["src"], g["rdir"]), Op(local, "delete", (("path", g["src"]), ("mode", "")))]
    if kind == "backup_replace":
        rdir, name = _split(g["rfile"], False)
        rename = Op("remote", "rename", (("dir", rdir), ("old", name), ("new", g["bak"])))
        return [rename, upload(g["src"], rdir)]
    return []


def parse_task(system_prompt: str) -> Parsed | None:
    """The machines and the plan of the task in a solve system prompt, or None if it is not one."""
    env, task = _ENV_RE.search(system_prompt), _TASK_RE.search(system_prompt)
    if env is None or task is None:
        return None
    os_type, host, user = env.groups()
    for kind, regex in _PATTERNS:
        match = regex.fullmatch(task.group(1))
        if match:
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            return Parsed(os_type, host, user, tuple(plan(kind, groups, os_type)))
    return None


def verification(op: Op, user: str, host: str) -> tuple[str, str] | None:
    """(command, text its output must contain) that shows whether an archive operation really worked (their
    candidates can fail silently); None for the other operations."""
    p = dict(op.params)
    windows = op.scope == "windows"
    sep = "\\" if windows else "/"
    if op.op in ("pack_zip", "pack_tar"):
        archive = f"{p['base']}{sep}{p['archive']}"
        inner = f"unzip -l {archive}" if p["archive"].endswith(".zip") else f"tar -t{p['z']}f {archive}"
        expected = f"{p['name']}/"
    elif op.op in ("extract_zip", "extract_tar"):
        name = _split(p["archive"], windows)[1]
        base = name.split(".")[0]
        inner, expected = f"ls {p['dest']}", f"<DIR>          {base}" if windows else f"{base}/"
    else:
        return None
    if op.scope == "remote":
        return REMOTE_WRAPPER.format(user=user, host=host, inner=inner), expected
    return inner, expected
