"""The command registry of the simulated shell (docs/cod.md 9.3), the helpers its handlers share, and the listing and
navigation commands, per-OS messages included. File-changing commands live in :mod:`cod_envs.terminal.file_commands`,
archives in :mod:`cod_envs.terminal.archives` and remote access in :mod:`cod_envs.terminal.remote`.

Each handler takes the shell, the name it was invoked by (``copy`` and ``cp`` differ in output) and its words, and
returns ``(output, ok)``; ``ok`` drives ``&&``. Handlers only touch the two virtual machines of the shell.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cod_envs.terminal.machine import Machine
from cod_envs.terminal.vfs import Dir, File, FsError, Node, Path

if TYPE_CHECKING:
    from cod_envs.terminal.shell import Shell

Result = tuple[str, bool]
"""(output, success)."""
Handler = Callable[["Shell", str, list[str]], Result]


@dataclass(frozen=True)
class Command:
    """A handler and where it exists: ``unix_only`` commands are missing on a local Windows shell, ``local_only``
    ones refuse to run on the remote host."""

    fn: Handler
    unix_only: bool = False
    local_only: bool = False


COMMANDS: dict[str, Command] = {}
ALIASES = {"dir": "ls", "type": "cat", "copy": "cp", "move": "mv", "del": "rm", "ren": "mv", "rename": "mv"}
"""Resolved on every OS (cod.md 9.3)."""
FS_MESSAGES = {
    "missing": "No such file or directory",
    "notdir": "Not a directory",
    "isdir": "Is a directory",
    "exists": "File exists",
    "full": "No space left on device",
    "toolong": "File name too long",
}
MAX_LISTING = 50
MAX_CAT_CHARS = 2000
_WIN_SWITCH = re.compile(r"/[A-Za-z?]")


def command(name: str, unix_only: bool = False, local_only: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler under ``name``."""

    def register(fn: Handler) -> Handler:
        COMMANDS[name] = Command(fn, unix_only, local_only)
        return fn

    return register


def split_args(sh: Shell, args: list[str]) -> tuple[set[str], list[str]]:
    """(option letters and ``--long`` names, operands); ``/x`` switches are options on a Windows shell."""
    flags: set[str] = set()
    operands: list[str] = []
    for a in args:
        if a.startswith("--") and len(a) > 2:
            flags.add(a)
        elif a.startswith("-") and len(a) > 1:
            flags.update(a[1:])
        elif sh.windows and _WIN_SWITCH.fullmatch(a):
            flags.add(a.lower())
        else:
            operands.append(a)
    return flags, operands


def basename(path: Path) -> str:
    """The last name of a path (``/`` for the root)."""
    return path[-1] if path else "/"


def place(m: Machine, path: Path, node: Node) -> None:
    """Put a node at a path, merging directories into an existing directory (``cp -r``, ``scp -r``, ``mv``)."""
    existing = m.fs.get(path)
    if isinstance(node, Dir) and isinstance(existing, Dir):
        for name, child in node.children.items():
            place(m, (*path, name), child)
        return
    if isinstance(existing, Dir):
        raise FsError("isdir", path)
    m.fs.put(path, node)


def into(m: Machine, src: Path, dst: Path) -> Path:
    """The destination of a copy or move: inside ``dst`` when it is an existing directory."""
    return (*dst, basename(src)) if m.fs.is_dir(dst) else dst


# ---- listing and navigation -----------------------------------------------------------------------------------
def _mode_string(node: Node) -> str:
    bits = int(node.mode, 8)
    text = "d" if isinstance(node, Dir) else "-"
    for shift in (6, 3, 0):
        part = (bits >> shift) & 7
        text += ("r" if part & 4 else "-") + ("w" if part & 2 else "-") + ("x" if part & 1 else "-")
    return text


def _long(name: str, node: Node) -> str:
    size = 4096 if isinstance(node, Dir) else node.size()
    return f"{_mode_string(node)}  1 {node.owner} {node.owner} {size:>8} Jan 15 10:30 {name}"


def _dir_listing(m: Machine, path: Path, names: list[str], node: Dir) -> str:
    lines = [" Volume in drive C has no label.", f" Directory of {m.display(path)}", ""]
    files = dirs = total = 0
    for name in names:
        child = node.children[name]
        if isinstance(child, Dir):
            dirs += 1
            lines.append(f"01/15/2024  10:30 AM    <DIR>          {name}")
        else:
            files += 1
            total += child.size()
            lines.append(f"01/15/2024  10:30 AM    {child.size():>14} {name}")
    lines.append(f"               {files} File(s) {total:>14} bytes")
    lines.append(f"               {dirs} Dir(s)   500,000,000 bytes free")
    return "\n".join(lines)


@command("ls")
def cmd_ls(sh: Shell, name: str, args: list[str]) -> Result:
    """``ls [-l] [-a] [path...]`` (``dir`` on Windows prints the cmd layout)."""
    m = sh.machine
    flags, paths = split_args(sh, args)
    out: list[str] = []
    ok = True
    for text in paths or ["."]:
        path = m.resolve(text)
        node = m.fs.get(path)
        if node is None:
            out.append("File Not Found" if sh.windows else f"ls: cannot access '{text}': No such file or directory")
            ok = False
        elif isinstance(node, File):
            out.append(_long(basename(path), node) if "l" in flags else basename(path))
        else:
            names = sorted(n for n in node.children if "a" in flags or not n.startswith("."))
            more = len(names) - MAX_LISTING
            names = names[:MAX_LISTING]
            if sh.windows and "l" not in flags:
                out.append(_dir_listing(m, path, names, node))
            elif "l" in flags:
                out.append("\n".join(_long(n, node.children[n]) for n in names))
            else:
                out.append("  ".join(n + ("/" if isinstance(node.children[n], Dir) else "") for n in names))
            if more > 0:
                out.append(f"... ({more} more entries)")
    return "\n".join(o for o in out if o), ok


@command("cd")
def cmd_cd(sh: Shell, name: str, args: list[str]) -> Result:
    """``cd [dir]``: no operand goes home (Windows prints the working directory)."""
    m = sh.machine
    _, paths = split_args(sh, args)
    if not paths:
        if sh.windows:
            return m.display(m.cwd), True
        m.cwd = m.home
        return "", True
    if len(paths) > 1 and not sh.windows:
        return "bash: cd: too many arguments", False
    target = m.resolve(" ".join(paths) if sh.windows else paths[0])
    node = m.fs.get(target)
    if node is None:
        return (
            "The system cannot find the path specified."
            if sh.windows
            else f"bash: cd: {paths[0]}: No such file or directory"
        ), False
    if isinstance(node, File):
        return ("The directory name is invalid." if sh.windows else f"bash: cd: {paths[0]}: Not a directory"), False
    m.cwd = target
    return "", True


@command("pwd")
def cmd_pwd(sh: Shell, name: str, args: list[str]) -> Result:
    """Print the working directory."""
    return sh.machine.display(sh.machine.cwd), True


@command("whoami")
def cmd_whoami(sh: Shell, name: str, args: list[str]) -> Result:
    """Print the user name."""
    return sh.machine.user, True


@command("echo")
def cmd_echo(sh: Shell, name: str, args: list[str]) -> Result:
    """Print the words (there are no redirects, so nothing is written)."""
    return " ".join(args), True


@command("cat")
def cmd_cat(sh: Shell, name: str, args: list[str]) -> Result:
    """``cat file...`` / ``type file``; archives print a one-line summary."""
    m = sh.machine
    _, paths = split_args(sh, args)
    if not paths:
        return ("The syntax of the command is incorrect." if sh.windows else "cat: missing operand"), False
    out: list[str] = []
    ok = True
    for text in paths:
        node = m.fs.get(m.resolve(text))
        if node is None:
            out.append(
                "The system cannot find the file specified."
                if sh.windows
                else f"cat: {text}: No such file or directory"
            )
            ok = False
        elif isinstance(node, Dir):
            out.append("Access is denied." if sh.windows else f"cat: {text}: Is a directory")
            ok = False
        elif node.archive is not None:
            out.append(f"[Binary file: {node.archive} archive with {len(node.entries or {})} entries]")
        else:
            out.append(node.content[:MAX_CAT_CHARS])
    return "\n".join(out), ok
