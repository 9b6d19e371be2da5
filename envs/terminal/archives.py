"""Simulated archives (docs/cod.md 9.3): ``tar`` (c/x/t, z, f, C, long forms), ``zip -r``, ``unzip [-l] [-d]``,
``gzip``, ``gunzip``. An archive is a file whose entries (``<archived dir>/<file>`` -> content) are recorded on it;
entries are listed and extracted from that record, and their total size is capped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cod_envs.terminal.commands import FS_MESSAGES, MAX_LISTING, Result, basename, command, split_args
from cod_envs.terminal.machine import Machine, normalize
from cod_envs.terminal.vfs import MAX_ARCHIVE_CHARS, MAX_ENTRIES, Dir, File, FsError, Path, walk_files

if TYPE_CHECKING:
    from cod_envs.terminal.shell import Shell

TAR_TYPES = ("tar", "tar.gz")
TOO_LARGE = "{cmd}: archive too large for this environment (at most {n} characters of content)"


def collect(m: Machine, base: Path, operands: list[str], recursive: bool) -> tuple[dict[str, str], str | None]:
    """Entries for an archive of the operands (a directory contributes ``<dir name>/<relative path>``)."""
    entries: dict[str, str] = {}
    for text in operands:
        cwd, m.cwd = m.cwd, base
        path = m.resolve(text)
        m.cwd = cwd
        node = m.fs.get(path)
        if node is None:
            return entries, text
        if isinstance(node, Dir) and not recursive:
            continue
        for rel, f in walk_files(node, basename(path)):
            entries[rel] = f.content
    return entries, None


def store(m: Machine, path: Path, archive: str, entries: dict[str, str]) -> str | None:
    """Write an archive file; None, or the reason it could not be written."""
    if len(entries) > MAX_ENTRIES or sum(len(v) for v in entries.values()) > MAX_ARCHIVE_CHARS:
        return "too large"
    try:
        if m.fs.is_dir(path):
            raise FsError("isdir", path)
        m.fs.put(path, File(content="", owner=m.user, archive=archive, entries=dict(entries)))
    except FsError as e:
        return FS_MESSAGES.get(e.kind, e.kind)
    return None


def extract(m: Machine, dest: Path, entries: dict[str, str]) -> str | None:
    """Write every entry under ``dest`` (entry paths cannot climb out of it); None or the failure reason."""
    try:
        for rel, content in entries.items():
            parts = normalize(rel.split("/"))
            if not parts:
                continue
            m.fs.makedirs((*dest, *parts[:-1]), m.user)
            target = (*dest, *parts)
            if m.fs.is_dir(target):
                raise FsError("isdir", target)
            m.fs.put(target, File(content=content, owner=m.user))
    except FsError as e:
        return FS_MESSAGES.get(e.kind, e.kind)
    return None


def _tar_options(args: list[str]) -> tuple[dict[str, str | bool], list[str], str | None]:
    """(options: mode, gz, verbose, file, dir), operands, error text."""
    opts: dict[str, str | bool] = {}
    operands: list[str] = []
    modes = {"c": "create", "x": "extract", "t": "list"}
    longs = {"create": "create", "extract": "extract", "get": "extract", "list": "list"}
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
            if key in longs:
                opts["mode"] = longs[key]
            elif key in ("gzip", "gunzip", "ungzip"):
                opts["gz"] = True
            elif key in ("file", "directory"):
                if not eq and i < len(args):
                    value, i = args[i], i + 1
                opts["file" if key == "file" else "dir"] = value
            elif key == "verbose":
                opts["verbose"] = True
            continue
        bundled = i == 1 and a.isalpha() and set(a) <= set("cxtzvfC")
        if not (a.startswith("-") and len(a) > 1) and not bundled:
            operands.append(a)
            continue
        letters = a.lstrip("-")
        for k, ch in enumerate(letters):
            if ch in modes:
                opts["mode"] = modes[ch]
            elif ch == "z":
                opts["gz"] = True
            elif ch == "v":
                opts["verbose"] = True
            elif ch in "fC":
                value = letters[k + 1 :]
                if not value and i < len(args):
                    value, i = args[i], i + 1
                opts["file" if ch == "f" else "dir"] = value
                break
            elif ch not in "pj":
                return opts, operands, f"tar: invalid option -- '{ch}'\nTry 'tar --help' for more information."
    return opts, operands, None


@command("tar", unix_only=True)
def cmd_tar(sh: Shell, name: str, args: list[str]) -> Result:
    """``tar -czf A.tar.gz dir``, ``tar -xzf A.tar.gz [-C dir]``, ``tar -tf A.tar`` (and long forms)."""
    m = sh.machine
    opts, operands, error = _tar_options(args)
    if error:
        return error, False
    mode = opts.get("mode")
    if mode is None:
        return "tar: You must specify one of the '-Acdtrux', '--delete' or '--test-label' options", False
    archive = opts.get("file")
    if not isinstance(archive, str) or not archive:
        return f"tar: Refusing to {'write' if mode == 'create' else 'read'} archive contents from terminal", False
    base = m.resolve(str(opts["dir"])) if opts.get("dir") else m.cwd
    if not m.fs.is_dir(base):
        return f"tar: {opts.get('dir')}: Cannot open: No such file or directory", False
    path = m.resolve(archive)
    if mode == "create":
        if not operands:
            return "tar: Cowardly refusing to create an empty archive", False
        entries, missing = collect(m, base, operands, recursive=True)
        if missing is not None:
            return f"tar: {missing}: Cannot stat: No such file or directory", False
        reason = store(m, path, "tar.gz" if opts.get("gz") else "tar", entries)
        if reason == "too large":
            return TOO_LARGE.format(cmd="tar", n=MAX_ARCHIVE_CHARS), False
        if reason:
            return f"tar: {archive}: Cannot open: {reason}", False
        return ("\n".join(list(entries)[:MAX_LISTING]) if opts.get("verbose") else ""), True
    node = m.fs.get(path)
    if not isinstance(node, File):
        return (
            f"tar: {archive}: Cannot open: No such file or directory\ntar: Error is not recoverable: exiting now",
            False,
        )
    if node.archive not in TAR_TYPES:
        return (
            "tar: This does not look like a tar archive\ntar: Exiting with failure status due to previous errors",
            False,
        )
    entries = node.entries or {}
    if mode == "list":
        return "\n".join(sorted(entries)[:MAX_LISTING]), True
    reason = extract(m, base, entries)
    if reason:
        return f"tar: Cannot open: {reason}", False
    return ("\n".join(list(entries)[:MAX_LISTING]) if opts.get("verbose") else ""), True


@command("zip")
def cmd_zip(sh: Shell, name: str, args: list[str]) -> Result:
    """``zip [-r] A.zip path...`` (``.zip`` is appended to a name without extension; an existing zip is updated)."""
    m = sh.machine
    flags, operands = split_args(sh, args)
    if not operands:
        return "zip error: Nothing to do! (missing archive name)", False
    archive = operands[0] if "." in operands[0].replace("\\", "/").rsplit("/", 1)[-1] else operands[0] + ".zip"
    if len(operands) < 2:
        return f"zip error: Nothing to do! ({archive})", False
    recursive = bool({"r", "R", "--recurse-paths"} & flags)
    path = m.resolve(archive)
    old = m.fs.get(path)
    entries = dict(old.entries or {}) if isinstance(old, File) and old.archive == "zip" else {}
    lines: list[str] = []
    for text in operands[1:]:
        node = m.fs.get(m.resolve(text))
        if node is None:
            lines.append(f"\tzip warning: name not matched: {text}")
            continue
        if isinstance(node, Dir) and not recursive:
            lines.append(f"  adding: {basename(m.resolve(text))}/ (stored 0%)")
            continue
        added, _ = collect(m, m.cwd, [text], recursive)
        entries.update(added)
        lines += [f"  adding: {rel} (deflated 40%)" for rel in list(added)[:MAX_LISTING]]
    if not entries and not any(line.startswith("  adding") for line in lines):
        return "\n".join([*lines, f"zip error: Nothing to do! ({archive})"]), False
    reason = store(m, path, "zip", entries)
    if reason == "too large":
        return TOO_LARGE.format(cmd="zip", n=MAX_ARCHIVE_CHARS), False
    if reason:
        return f"zip I/O error: {reason}\nzip error: Could not create output file ({archive})", False
    return "\n".join(lines), True


@command("unzip")
def cmd_unzip(sh: Shell, name: str, args: list[str]) -> Result:
    """``unzip [-o] [-l] A.zip [-d dir]`` (the ``-d`` directory is created)."""
    m = sh.machine
    dest_text: str | None = None
    listing = False
    operands: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a.startswith("-d"):
            dest_text = a[2:] or (args[i] if i < len(args) else "")
            i += 0 if a[2:] else 1
        elif a.startswith("-") and len(a) > 1:
            listing = listing or "l" in a
        else:
            operands.append(a)
    if not operands:
        return "UnZip 6.00: usage: unzip [-Z] [-opts[modifiers]] file[.zip] [list] [-x xlist] [-d exdir]", False
    archive = operands[0]
    node = m.fs.get(m.resolve(archive))
    if node is None and not archive.endswith(".zip"):
        node = m.fs.get(m.resolve(archive + ".zip"))
    if not isinstance(node, File):
        return f"unzip:  cannot find or open {archive}, {archive}.zip or {archive}.ZIP.", False
    if node.archive != "zip":
        return (
            "  End-of-central-directory signature not found.  Either this file is not\n"
            f"  a zipfile, or it constitutes one disk of a multi-part archive.\nunzip:  cannot find zipfile directory "
            f"in {archive}"
        ), False
    entries = node.entries or {}
    if listing:
        rows = [f"{len(v):>9}  01-15-2024 10:30   {k}" for k, v in sorted(entries.items())[:MAX_LISTING]]
        return "\n".join([f"Archive:  {archive}", "  Length      Date    Time    Name", *rows]), True
    dest = m.resolve(dest_text) if dest_text else m.cwd
    try:
        m.fs.makedirs(dest, m.user)
    except FsError as e:
        return f"checkdir error:  cannot create {dest_text}: {FS_MESSAGES.get(e.kind, e.kind)}", False
    reason = extract(m, dest, entries)
    if reason:
        return f"unzip: cannot extract: {reason}", False
    lines = [f"  inflating: {m.display((*dest, *rel.split('/')))}" for rel in list(entries)[:MAX_LISTING]]
    return "\n".join([f"Archive:  {archive}", *lines]), True


@command("gzip", unix_only=True)
def cmd_gzip(sh: Shell, name: str, args: list[str]) -> Result:
    """``gzip [-k] [-r] file...``: ``file.gz`` replaces the file (a tar becomes a tar.gz; ``-r`` compresses every file
    of a directory in place, as real gzip does); ``-d`` decompresses."""
    flags, operands = split_args(sh, args)
    if "d" in flags or "--decompress" in flags:
        return cmd_gunzip(sh, "gunzip", args)
    m = sh.machine
    if not operands:
        return "gzip: compressed data not written to a terminal. Use -f to force compression.", False
    recursive = bool({"r", "--recursive"} & flags)
    for text in operands:
        path = m.resolve(text)
        node = m.fs.get(path)
        if node is None:
            return f"gzip: {text}: No such file or directory", False
        if isinstance(node, Dir):
            if not recursive:
                return f"gzip: {text} is a directory -- ignored", False
            files = [(*path, *rel.split("/")) for rel, _ in walk_files(node) if not rel.endswith(".gz")]
            out, ok = cmd_gzip(sh, name, ["-k"] * ("k" in flags) + [m.display(f) for f in files[:MAX_ENTRIES]])
            if not ok:
                return out, False
            continue
        if path[-1].endswith(".gz"):
            return f"gzip: {text} already has .gz suffix -- unchanged", False
        if node.archive == "tar":
            entries, kind = dict(node.entries or {}), "tar.gz"
        else:
            entries, kind = {path[-1]: node.content}, "gzip"
        reason = store(m, (*path[:-1], path[-1] + ".gz"), kind, entries)
        if reason:
            return f"gzip: {text}.gz: {reason}", False
        if "k" not in flags and "--keep" not in flags:
            m.fs.remove(path)
    return "", True


@command("gunzip", unix_only=True)
def cmd_gunzip(sh: Shell, name: str, args: list[str]) -> Result:
    """``gunzip file.gz...``: restore the file (a tar.gz becomes a tar)."""
    m = sh.machine
    flags, operands = split_args(sh, args)
    if not operands:
        return "gzip: compressed data not read from a terminal. Use -f to force decompression.", False
    for text in operands:
        path = m.resolve(text)
        node = m.fs.get(path)
        if node is None and not text.endswith(".gz"):
            path = m.resolve(text + ".gz")
            node = m.fs.get(path)
        if not isinstance(node, File):
            return f"gzip: {text}: No such file or directory", False
        if not path[-1].endswith(".gz") or len(path[-1]) == 3:
            return f"gzip: {text}: unknown suffix -- ignored", False
        if node.archive not in ("gzip", "tar.gz"):
            return f"gzip: {text}: not in gzip format", False
        out = (*path[:-1], path[-1][:-3])
        try:
            if node.archive == "tar.gz":
                m.fs.put(out, File(owner=m.user, archive="tar", entries=dict(node.entries or {})))
            else:
                m.fs.put(out, File(content=next(iter((node.entries or {"": ""}).values())), owner=m.user))
        except FsError as e:
            return f"gzip: {text}: {FS_MESSAGES.get(e.kind, e.kind)}", False
        if "k" not in flags and "--keep" not in flags:
            m.fs.remove(path)
    return "", True
