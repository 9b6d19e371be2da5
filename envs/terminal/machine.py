"""One simulated machine (docs/cod.md 9.3): its OS flavour, user, home, working directory and filesystem.

Paths typed by the model are resolved here into canonical tuples, Windows style (``C:\\Users\\user``, ``\\x``,
forward slashes accepted) on a local Windows machine and Unix style elsewhere; ``..`` never climbs above the root,
so ``../../`` paths stay inside the virtual tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cod_envs.terminal.vfs import VFS, Path

OS_NAMES = {"windows": "Windows", "mac": "macOS", "linux": "Linux"}
"""OS type -> the name the system prompt shows."""
LOCAL_USER = "user"


def home_of(os_type: str) -> Path:
    """The local home: ``C:\\Users\\user``, ``/Users/user`` or ``/home/user``."""
    return {"windows": ("C", "Users", LOCAL_USER), "mac": ("Users", LOCAL_USER)}.get(os_type, ("home", LOCAL_USER))


def unix_display(path: Path) -> str:
    """``/a/b`` (``/`` for the root)."""
    return "/" + "/".join(path)


def windows_display(path: Path) -> str:
    """``C:\\a\\b``; the first part is the drive letter."""
    if not path:
        return "C:\\"
    return f"{path[0]}:\\" + "\\".join(path[1:])


def normalize(parts: list[str], floor: int = 0) -> Path:
    """Apply ``.`` and ``..`` (never below ``floor`` parts: a Windows drive stays) and drop empty parts."""
    out: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if len(out) > floor:
                out.pop()
            continue
        out.append(part)
    return tuple(out)


@dataclass
class Machine:
    """A local machine (any OS) or the remote Linux host; ``windows`` is True only for a local Windows shell."""

    os_type: str
    host: str
    user: str
    home: Path
    fs: VFS = field(default_factory=VFS)
    cwd: Path = ()

    def __post_init__(self) -> None:
        self.cwd = self.cwd or self.home

    @property
    def windows(self) -> bool:
        """Whether this is a Windows (cmd) shell."""
        return self.os_type == "windows"

    def resolve(self, text: str) -> Path:
        """A typed path -> canonical path, relative to the working directory unless absolute."""
        if self.windows:
            text = text.replace("/", "\\")
            if len(text) >= 2 and text[1] == ":" and text[0].isalpha():
                return (text[0].upper(), *normalize(text[2:].split("\\")))
            if text.startswith("\\"):
                return (self.cwd[:1] or ("C",)) + normalize(text.split("\\"))
            drive = self.cwd[:1] or ("C",)
            return drive + normalize([*self.cwd[1:], *text.split("\\")])
        if text.startswith("/"):
            return normalize(text.split("/"))
        return normalize([*self.cwd, *text.split("/")])

    def display(self, path: Path) -> str:
        """A canonical path as this shell prints it."""
        return windows_display(path) if self.windows else unix_display(path)

    def short_cwd(self) -> str:
        """The working directory with ``~`` for home (Unix prompts)."""
        if self.cwd[: len(self.home)] == self.home:
            rest = self.cwd[len(self.home) :]
            return "~" + ("/" + "/".join(rest) if rest else "")
        return unix_display(self.cwd)

    def prompt(self) -> str:
        """``C:\\Users\\user>``, ``user@MacBook ~ % ``, ``user@localhost:~$ `` or ``<user>@<ip>:~$ ``."""
        if self.windows:
            return f"{windows_display(self.cwd)}>"
        if self.os_type == "mac":
            return f"{self.user}@MacBook {self.short_cwd()} % "
        return f"{self.user}@{self.host}:{self.short_cwd()}$ "

    def variables(self) -> dict[str, str]:
        """Shell variables: ``%USERPROFILE%``-style on Windows, ``$HOME``-style elsewhere (remote adds ``$IP``)."""
        if self.windows:
            return {"USERPROFILE": self.display(self.home), "USERNAME": self.user, "CD": self.display(self.cwd)}
        out = {"HOME": self.display(self.home), "USER": self.user, "PWD": self.display(self.cwd)}
        if self.host != "localhost":
            out["IP"] = self.host
        return out
