"""File-changing commands of the simulated shell (docs/cod.md 9.3): ``mkdir``, ``touch``, ``chmod``, ``cp`` / ``copy``,
``mv`` / ``move`` / ``ren``, ``rm`` / ``del``, per-OS messages included; the handler contract is in
:mod:`cod_envs.terminal.commands`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cod_envs.terminal.commands import FS_MESSAGES, Result, command, into, place, split_args
from cod_envs.terminal.vfs import Dir, File, FsError, clone_tree

if TYPE_CHECKING:
    from cod_envs.terminal.shell import Shell


# ---- creating, copying, moving, removing ----------------------------------------------------------------------
@command("mkdir")
def cmd_mkdir(sh: Shell, name: str, args: list[str]) -> Result:
    """``mkdir [-p] dir...``; cmd's ``mkdir`` always creates missing parents (and takes ``-p`` as a name)."""
    m = sh.machine
    if sh.windows:
        flags, paths = set(), args
    else:
        flags, paths = split_args(sh, args)
    if not paths:
        return ("The syntax of the command is incorrect." if sh.windows else "mkdir: missing operand"), False
    out: list[str] = []
    for text in paths:
        path = m.resolve(text)
        try:
            if sh.windows:
                if m.fs.get(path) is not None:
                    raise FsError("exists", path)
                m.fs.makedirs(path, m.user)
            elif "p" in flags or "--parents" in flags:
                m.fs.makedirs(path, m.user)
            else:
                m.fs.mkdir(path, m.user)
        except FsError as e:
            if sh.windows:
                out.append(
                    f"A subdirectory or file {text} already exists."
                    if e.kind == "exists"
                    else "The system cannot find the path specified."
                )
            else:
                out.append(f"mkdir: cannot create directory '{text}': {FS_MESSAGES.get(e.kind, e.kind)}")
    return "\n".join(out), not out


@command("touch", unix_only=True)
def cmd_touch(sh: Shell, name: str, args: list[str]) -> Result:
    """Create empty files (existing ones are left alone)."""
    m = sh.machine
    _, paths = split_args(sh, args)
    if not paths:
        return "touch: missing file operand", False
    for text in paths:
        path = m.resolve(text)
        if m.fs.get(path) is None:
            try:
                m.fs.put(path, File(owner=m.user))
            except FsError as e:
                return f"touch: cannot touch '{text}': {FS_MESSAGES.get(e.kind, e.kind)}", False
    return "", True


@command("chmod", unix_only=True)
def cmd_chmod(sh: Shell, name: str, args: list[str]) -> Result:
    """``chmod [-R] MODE path...`` with a 3-digit octal mode (a leading 0 is accepted)."""
    m = sh.machine
    recursive = any(a in ("-R", "--recursive") for a in args)
    words = [a for a in args if a not in ("-R", "--recursive")]
    if len(words) < 2:
        return ("chmod: missing operand" if not words else f"chmod: missing operand after '{words[0]}'"), False
    mode, paths = words[0], words[1:]
    if not re.fullmatch(r"0?[0-7]{3}", mode):
        return f"chmod: invalid mode: '{mode}'", False
    mode = mode[-3:]
    out: list[str] = []
    for text in paths:
        node = m.fs.get(m.resolve(text))
        if node is None:
            out.append(f"chmod: cannot access '{text}': No such file or directory")
            continue
        stack = [node]
        while stack:
            current = stack.pop()
            current.mode = mode
            if recursive and isinstance(current, Dir):
                stack.extend(current.children.values())
    return "\n".join(out), not out


def _copy_or_move(sh: Shell, name: str, args: list[str], move: bool) -> Result:
    m = sh.machine
    label = "mv" if move else "cp"
    flags, paths = split_args(sh, args)
    if len(paths) < 2:
        if sh.windows:
            return "The syntax of the command is incorrect.", False
        return (
            f"{label}: missing file operand"
            if not paths
            else f"{label}: missing destination file operand after '{paths[0]}'"
        ), False
    *sources, target = paths
    dst = m.resolve(target)
    if name in ("ren", "rename") and "\\" not in target and "/" not in target:
        dst = (*m.resolve(sources[0])[:-1], target)
    if len(sources) > 1 and not m.fs.is_dir(dst):
        return f"{label}: target '{target}' is not a directory", False
    done = 0
    errors: list[str] = []
    for text in sources:
        src = m.resolve(text)
        node = m.fs.get(src)
        if node is None:
            errors.append(
                "The system cannot find the file specified."
                if sh.windows
                else f"{label}: cannot stat '{text}': No such file or directory"
            )
            continue
        if isinstance(node, Dir) and not move and not ({"r", "R", "a", "--recursive"} & flags):
            errors.append(f"cp: -r not specified; omitting directory '{text}'")
            continue
        if target.endswith(("/", "\\")) and not m.fs.is_dir(dst):
            errors.append(
                "The system cannot find the path specified."
                if sh.windows
                else f"{label}: cannot {'move' if move else 'copy'} '{text}' to '{target}': Not a directory"
            )
            continue
        final = into(m, src, dst)
        if final == src:
            continue
        if final[: len(src)] == src:
            errors.append(f"{label}: cannot {'move' if move else 'copy'} '{text}' to a subdirectory of itself")
            continue
        try:
            if not m.fs.is_dir(final[:-1]):
                raise FsError("missing", final)
            if isinstance(node, File) and m.fs.is_dir(final):
                raise FsError("isdir", final)
            if move:
                m.fs.remove(src, recursive=True)
                try:
                    place(m, final, node)
                except FsError:
                    place(m, src, node)  # a move that cannot be placed leaves its source where it was
                    raise
            else:
                place(m, final, clone_tree(node))
            done += 1
        except FsError as e:
            if sh.windows:
                errors.append("The system cannot find the path specified.")
            else:
                errors.append(
                    f"{label}: cannot {'move' if move else 'copy'} '{text}' to '{target}': "
                    f"{FS_MESSAGES.get(e.kind, e.kind)}"
                )
    if sh.windows and name in ("copy", "move") and not errors:
        return f"        {done} file(s) {'moved' if move else 'copied'}.", True
    return "\n".join(errors), not errors


@command("cp")
def cmd_cp(sh: Shell, name: str, args: list[str]) -> Result:
    """``cp [-r] src... dst`` / ``copy``."""
    return _copy_or_move(sh, name, args, move=False)


@command("mv")
def cmd_mv(sh: Shell, name: str, args: list[str]) -> Result:
    """``mv src... dst`` / ``move``; ``ren``/``rename`` with a bare new name stay in the source's directory."""
    return _copy_or_move(sh, name, args, move=True)


@command("rm")
def cmd_rm(sh: Shell, name: str, args: list[str]) -> Result:
    """``rm [-r] [-f] path...`` / ``del``; ``rm -r /`` is refused as in GNU rm."""
    m = sh.machine
    flags, paths = split_args(sh, args)
    recursive = bool({"r", "R", "--recursive", "/s"} & flags)
    force = bool({"f", "--force", "/q", "/f"} & flags)
    if not paths:
        return ("The syntax of the command is incorrect." if sh.windows else "rm: missing operand"), False
    out: list[str] = []
    for text in paths:
        path = m.resolve(text)
        node = m.fs.get(path)
        if node is None:
            if not force or sh.windows:
                out.append(
                    f"Could Not Find {m.display(path)}"
                    if sh.windows
                    else f"rm: cannot remove '{text}': No such file or directory"
                )
            continue
        if not path and "--no-preserve-root" not in flags:
            out.append(
                "rm: it is dangerous to operate recursively on '/'\n"
                "rm: use --no-preserve-root to override this failsafe"
            )
            continue
        if isinstance(node, Dir) and not recursive:
            out.append("Access is denied." if sh.windows else f"rm: cannot remove '{text}': Is a directory")
            continue
        m.fs.remove(path, recursive=True)
    return "\n".join(out), not out
