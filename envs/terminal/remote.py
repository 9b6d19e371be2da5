"""Remote access commands of the simulated shell (docs/cod.md 9.3): ``ssh`` (log in, or run one command), ``exit``,
``scp`` and ``rsync`` between the local machine and the one remote host, with ssh's host and user checks."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cod_envs.terminal.commands import FS_MESSAGES, MAX_LISTING, Result, basename, command, into, place
from cod_envs.terminal.machine import LOCAL_USER, Machine, normalize
from cod_envs.terminal.vfs import Dir, FsError, Path, clone_tree, walk_files

if TYPE_CHECKING:
    from cod_envs.terminal.shell import Shell

_IP = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_REMOTE_ARG = re.compile(r"(?:([^@:/\\\s]+)@)?([^@:/\\\s]+):(.*)", re.S)


def _login(sh: Shell, user: str, host: str) -> str | None:
    """None when ``user@host`` reaches the remote host, else ssh's error."""
    if host != sh.remote.host:
        if _IP.fullmatch(host) or host == "localhost":
            return f"ssh: connect to host {host} port 22: Connection refused"
        return f"ssh: Could not resolve hostname {host}: Name or service not known"
    if user != sh.remote.user:
        return "Permission denied (publickey,password)."
    return None


@command("ssh")
def cmd_ssh(sh: Shell, name: str, args: list[str]) -> Result:
    """``ssh [-p port] [-i key] [-l user] user@host [command]``: log in, or run one command there."""
    if sh.connected and sh.depth == 0:
        return "bash: already connected to remote host. Use 'exit' first.", False
    if sh.depth > 0:
        return "ssh: nested remote commands are not supported in this environment.", False
    user, target, i = LOCAL_USER, None, 0
    while i < len(args) and target is None:
        a = args[i]
        if a in ("-p", "-i", "-o", "-l", "-F", "-J") and i + 1 < len(args):
            if a == "-l":
                user = args[i + 1]
            i += 2
            continue
        if not a.startswith("-"):
            target = a
        i += 1
    if target is None:
        return "usage: ssh [-p port] [-i identity_file] [-l login_name] [user@]hostname [command]", False
    if "@" in target:
        user, target = target.rsplit("@", 1)
    error = _login(sh, user, target)
    if error is not None:
        return error, False
    sh.remote.cwd = sh.remote.home
    rest = args[i:]
    if not rest:
        sh.connected = True
        return f"Welcome to Ubuntu 22.04 LTS ({sh.remote.host})\nLast login: Mon Jan 15 10:30:00 2024", True
    sh.connected, sh.depth = True, 1
    try:
        return sh.run_line(" ".join(rest))
    finally:
        sh.connected, sh.depth = False, 0


@command("exit")
def cmd_exit(sh: Shell, name: str, args: list[str]) -> Result:
    """Leave the remote host (on the local machine nothing happens)."""
    if sh.connected and sh.depth == 0:
        sh.connected = False
        return f"Connection to {sh.remote.host} closed.", True
    return "", True


def remote_path(sh: Shell, text: str) -> Path:
    """A remote path of scp/rsync: empty, ``~`` and relative paths are relative to the remote home."""
    m = sh.remote
    if text in ("", "~") or text.startswith("~/"):
        text = text[2:]
    return m.resolve(text) if text.startswith("/") else normalize([*m.home, *text.split("/")])


def _endpoint(sh: Shell, text: str) -> tuple[Machine, Path, str | None]:
    """(machine, path, login error) of one scp/rsync operand."""
    match = _REMOTE_ARG.fullmatch(text)
    if match and (match.group(1) is not None or _IP.fullmatch(match.group(2))):
        return sh.remote, remote_path(sh, match.group(3)), _login(sh, match.group(1) or LOCAL_USER, match.group(2))
    return sh.local, sh.local.resolve(text), None


def transfer(sh: Shell, label: str, operands: list[str], recursive: bool) -> tuple[list[str], str | None]:
    """Copy between the machines: (names copied, error text or None)."""
    *sources, target = operands
    dst_machine, dst, error = _endpoint(sh, target)
    ends = [_endpoint(sh, s) for s in sources]
    errors = [e for _, _, e in ends if e is not None]
    if error or errors:
        return [], (error or errors[0]) + "\nlost connection"
    if any(src_m is dst_machine for src_m, _, _ in ends):
        return [], f"{label}: copies must go between the local machine and the remote host (use cp locally)"
    copied: list[str] = []
    for text, (src_m, src, _) in zip(sources, ends, strict=True):
        node = src_m.fs.get(src)
        if node is None:
            return copied, f"{label}: {text.split(':', 1)[-1] or text}: No such file or directory"
        if isinstance(node, Dir) and not recursive:
            return copied, f"{label}: {text}: not a regular file"
        if target.endswith(("/", "\\")) and not dst_machine.fs.is_dir(dst):
            return copied, f"{label}: {target}: No such file or directory"
        contents = isinstance(node, Dir) and text.endswith("/") and label == "rsync"
        final = dst if contents else into(dst_machine, src, dst)
        if not dst_machine.fs.is_dir(final[:-1]) and not (contents and dst_machine.fs.is_dir(final)):
            return copied, f"{label}: {target}: No such file or directory"
        try:
            place(dst_machine, final, clone_tree(node, dst_machine.user))
        except FsError as e:
            return copied, f"{label}: {target}: {FS_MESSAGES.get(e.kind, e.kind)}"
        copied += [rel or basename(src) for rel, _ in walk_files(node, basename(src))][:MAX_LISTING]
    return copied, None


@command("scp", local_only=True)
def cmd_scp(sh: Shell, name: str, args: list[str]) -> Result:
    """``scp [-r] [-P port] src... dst`` with ``user@host:path`` on one side."""
    operands: list[str] = []
    recursive, i = False, 0
    while i < len(args):
        a = args[i]
        if a in ("-P", "-i", "-o", "-F") and i + 1 < len(args):
            i += 2
            continue
        if a.startswith("-") and len(a) > 1:
            recursive = recursive or "r" in a or "R" in a
        else:
            operands.append(a)
        i += 1
    if len(operands) < 2:
        return "usage: scp [-346ABCOpqRrTv] [-P port] [-i identity_file] source ... target", False
    copied, error = transfer(sh, "scp", operands, recursive)
    lines = [f"{n.rsplit('/', 1)[-1]:<32} 100%  1024     1.0MB/s   00:00" for n in copied]
    if error:
        lines.append(error)
    return "\n".join(lines), error is None


@command("rsync", unix_only=True, local_only=True)
def cmd_rsync(sh: Shell, name: str, args: list[str]) -> Result:
    """``rsync [-avz] [-e ssh] src... dst``: an scp that always recurses (``dir/`` copies the contents)."""
    operands: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "-e" and i + 1 < len(args):
            i += 2
            continue
        if not args[i].startswith("-"):
            operands.append(args[i])
        i += 1
    if len(operands) < 2:
        return "usage: rsync [OPTION]... SRC [SRC]... [USER@]HOST:DEST", False
    copied, error = transfer(sh, "rsync", operands, True)
    if error:
        return error, False
    listing = "\n".join(copied)
    return f"sending incremental file list\n{listing}\n\nsent 1,024 bytes  received 42 bytes  2,132.00 bytes/sec", True
