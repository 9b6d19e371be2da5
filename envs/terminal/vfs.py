"""The in-memory filesystem of one simulated machine (docs/cod.md 9.3): nothing here can reach the host.

A tree of :class:`Dir` and :class:`File` nodes addressed by tuples of names (``("home", "user", "a.txt")``); each
node carries a 3-digit mode and an owner, and a file may be an archive (``tar``, ``tar.gz``, ``zip``, ``gzip``)
whose entries (relative path -> content) are recorded on it. Node count, depth, name length and archive size are
capped, so no command line can make the simulation do unbounded work or hold unbounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Path = tuple[str, ...]
"""A canonical path: names from the root, no ``.``/``..``/empty parts."""

MAX_NODES = 4096
"""Files plus directories of one machine; creating more fails with ``No space left on device``."""
MAX_DEPTH = 48
MAX_NAME = 255
MAX_ARCHIVE_CHARS = 1 << 16
"""Total characters of an archive's entries (a simulated size limit that bounds archives of archives)."""
MAX_ENTRIES = 512


class FsError(Exception):
    """A failed filesystem operation; ``kind`` is one of missing, notdir, isdir, exists, notempty, full, toolong."""

    def __init__(self, kind: str, path: Path = ()):
        super().__init__(kind)
        self.kind, self.path = kind, path


@dataclass
class File:
    """A regular file; ``archive`` is set (with ``entries``) when it is a simulated archive."""

    content: str = ""
    mode: str = "644"
    owner: str = "user"
    archive: str | None = None
    entries: dict[str, str] | None = None

    def size(self) -> int:
        """Bytes shown by ``ls -l`` (an archive's size is the sum of its entries)."""
        return sum(len(v) for v in self.entries.values()) if self.entries is not None else len(self.content)

    def clone(self, owner: str | None = None) -> File:
        """An independent copy (entries copied), optionally owned by someone else (scp)."""
        entries = dict(self.entries) if self.entries is not None else None
        return File(self.content, self.mode, owner or self.owner, self.archive, entries)


@dataclass
class Dir:
    """A directory: name -> child."""

    children: dict[str, File | Dir] = field(default_factory=dict)
    mode: str = "755"
    owner: str = "user"


Node = File | Dir


def count_nodes(node: Node) -> int:
    """Nodes in a subtree (bounded by MAX_NODES because every tree is)."""
    if isinstance(node, File):
        return 1
    return 1 + sum(count_nodes(c) for c in node.children.values())


def height(node: Node) -> int:
    """Levels in a subtree (1 for a file or an empty directory); iterative, so it is safe on any tree."""
    best, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        best = max(best, level)
        if isinstance(current, Dir):
            stack.extend((child, level + 1) for child in current.children.values())
    return best


def clone_tree(node: Node, owner: str | None = None) -> Node:
    """A deep copy of a subtree."""
    if isinstance(node, File):
        return node.clone(owner)
    return Dir({k: clone_tree(v, owner) for k, v in node.children.items()}, node.mode, owner or node.owner)


def walk_files(node: Node, prefix: str = "") -> list[tuple[str, File]]:
    """``(relative path, file)`` for every file under a node, sorted (a file alone gives ``prefix``)."""
    if isinstance(node, File):
        return [(prefix, node)]
    out: list[tuple[str, File]] = []
    for name in sorted(node.children):
        out += walk_files(node.children[name], f"{prefix}/{name}" if prefix else name)
    return out


def _check_name(name: str, path: Path) -> None:
    if len(name) > MAX_NAME:
        raise FsError("toolong", path)


class VFS:
    """One machine's filesystem; all mutations go through here so the node cap holds."""

    def __init__(self) -> None:
        self.root = Dir()
        self.nodes = 1

    def get(self, path: Path) -> Node | None:
        """The node at a path, or None."""
        node: Node = self.root
        for name in path:
            if not isinstance(node, Dir) or name not in node.children:
                return None
            node = node.children[name]
        return node

    def is_dir(self, path: Path) -> bool:
        """Whether a directory exists at the path."""
        return isinstance(self.get(path), Dir)

    def is_file(self, path: Path) -> bool:
        """Whether a regular file (or archive) exists at the path."""
        return isinstance(self.get(path), File)

    def parent(self, path: Path) -> Dir:
        """The directory that holds ``path`` (raises missing / notdir)."""
        node = self.get(path[:-1])
        if node is None:
            raise FsError("missing", path[:-1])
        if not isinstance(node, Dir):
            raise FsError("notdir", path[:-1])
        return node

    def _reserve(self, n: int) -> None:
        if self.nodes + n > MAX_NODES:
            raise FsError("full")
        self.nodes += n

    def makedirs(self, path: Path, owner: str = "user") -> None:
        """``mkdir -p``: create every missing directory (a file in the way raises notdir)."""
        if len(path) > MAX_DEPTH:
            raise FsError("toolong", path)
        node = self.root
        for i, name in enumerate(path):
            child = node.children.get(name)
            if child is None:
                _check_name(name, path[: i + 1])
                self._reserve(1)
                child = node.children[name] = Dir(owner=owner)
            if not isinstance(child, Dir):
                raise FsError("notdir", path[: i + 1])
            node = child

    def mkdir(self, path: Path, owner: str = "user") -> None:
        """Create one directory whose parent exists (raises exists / missing / notdir)."""
        if not path:
            raise FsError("exists", path)
        if len(path) > MAX_DEPTH:
            raise FsError("toolong", path)
        parent = self.parent(path)
        if path[-1] in parent.children:
            raise FsError("exists", path)
        _check_name(path[-1], path)
        self._reserve(1)
        parent.children[path[-1]] = Dir(owner=owner)

    def put(self, path: Path, node: Node) -> None:
        """Place a node at a path whose parent exists, replacing a file there (never a directory).

        Every node of the placed subtree must end up within MAX_DEPTH, so no tree is ever deeper than MAX_DEPTH and
        the recursive helpers above (``count_nodes``, ``clone_tree``, ``walk_files``) stay far from the recursion
        limit however often trees are moved under each other.
        """
        if not path:
            raise FsError("isdir", path)
        if len(path) + height(node) - 1 > MAX_DEPTH:  # the subtree's depth too: mv/cp/scp place whole trees
            raise FsError("toolong", path)
        parent = self.parent(path)
        old = parent.children.get(path[-1])
        if isinstance(old, Dir):
            raise FsError("isdir", path)
        _check_name(path[-1], path)
        self._reserve(count_nodes(node) - (1 if old is not None else 0))
        parent.children[path[-1]] = node

    def remove(self, path: Path, recursive: bool = False) -> None:
        """Delete a file, or a directory when ``recursive`` (the root itself is emptied, never deleted)."""
        node = self.get(path)
        if node is None:
            raise FsError("missing", path)
        if isinstance(node, Dir) and not recursive:
            raise FsError("isdir", path)
        if not path:
            self.root, self.nodes = Dir(), 1
            return
        self.parent(path).children.pop(path[-1])
        self.nodes -= count_nodes(node)
