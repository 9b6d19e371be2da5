"""The simulated shell (docs/cod.md 9.3): one command line in, its output out, on the virtual machines only.

A line is checked (length, command substitution, pipes, redirects), variables are expanded (``%VAR%`` on a local
Windows shell; ``~``, ``$HOME``, ``$USER``, ``$PWD``, remote ``$IP`` elsewhere), then it is split on ``&&``, ``;``
and newlines outside quotes; after ``&&`` execution stops once a command failed. Each command is tokenized (POSIX
quoting, or cmd-style double quotes on Windows), its aliases resolved and handed to a handler in ``COMMANDS``.
Model text is only ever parsed: nothing is executed on, read from or written to the host.
"""

from __future__ import annotations

import re

import cod_envs.terminal.archives  # noqa: F401 (registers tar, zip, unzip, gzip, gunzip)
import cod_envs.terminal.file_commands  # noqa: F401 (registers mkdir, touch, chmod, cp, mv, rm)
import cod_envs.terminal.remote  # noqa: F401 (registers ssh, exit, scp, rsync)
from cod_envs.terminal.commands import ALIASES, COMMANDS, Result
from cod_envs.terminal.machine import Machine

MAX_LINE = 4096
MAX_SEGMENTS = 16
MAX_TOKENS = 64
MAX_OUTPUT = 4000
"""Characters of one step's output; the rest is cut (observations stay bounded)."""

PIPE_ERROR = "Error: pipes (|) are not supported in this environment."
REDIRECT_ERROR = "Error: redirects (>, >>, <) are not supported in this environment."
SUBSTITUTION_ERROR = "Error: command substitution ($(...) and backticks) is not supported in this environment."
"""(project) Not in the reference, which would pass such text on as literal arguments."""
SYNTAX_ERROR = "bash: syntax error: unexpected end of file"
LOCAL_ONLY = "bash: {cmd} must be run from local machine. Use 'exit' to disconnect first."

_UNIX_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_WIN_VAR = re.compile(r"%(\w+)%")


def _quote_mask(line: str, unix: bool) -> list[str | None]:
    """Per character, the quote it is inside (``'``, ``"``) or None; a backslash escapes outside single quotes."""
    mask: list[str | None] = []
    quote: str | None = None
    escaped = False
    for ch in line:
        if escaped:
            mask.append(quote or "\\")
            escaped = False
            continue
        if unix and ch == "\\" and quote != "'":
            escaped = True
            mask.append(quote or "\\")
            continue
        if quote is None and (ch == '"' or (unix and ch == "'")):
            quote = ch
            mask.append(ch)
            continue
        if ch == quote:
            quote = None
            mask.append(ch)
            continue
        mask.append(quote)
    return mask


def _unquoted(line: str, mask: list[str | None], chars: str) -> bool:
    return any(ch in chars and q is None for ch, q in zip(line, mask, strict=True))


def expand(line: str, machine: Machine) -> str:
    """Substitute the shell's variables (outside single quotes on Unix); unknown names stay as typed."""
    values = machine.variables()
    if machine.windows:
        upper = {k.upper(): v for k, v in values.items()}
        return _WIN_VAR.sub(lambda m: upper.get(m.group(1).upper(), m.group(0)), line)
    mask = _quote_mask(line, True)

    def sub(m: re.Match[str]) -> str:
        if mask[m.start()] == "'":
            return m.group(0)
        return values.get(m.group(1) or m.group(2), m.group(0))

    return _UNIX_VAR.sub(sub, line)


def split_chain(line: str, unix: bool) -> list[tuple[str, str | None]]:
    """``[(command, operator after it)]``, split on ``&&``, ``;`` and newlines outside quotes."""
    mask = _quote_mask(line, unix)
    out: list[tuple[str, str | None]] = []
    start = i = 0
    while i < len(line):
        ch, q = line[i], mask[i]
        if q is None and ch in ";\n":
            out.append((line[start:i], ";"))
            start = i + 1
        elif q is None and ch == "&" and line[i + 1 : i + 2] == "&":
            out.append((line[start:i], "&&"))
            start = i + 2
            i += 1
        i += 1
    out.append((line[start:], None))
    return out


def tokenize(text: str, unix: bool, home: str) -> list[str] | None:
    """Words of one command (None: an unclosed quote on Unix). Unix: POSIX quotes and escapes, ``~`` at a word's
    start; Windows: double quotes group words, nothing escapes."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if ch == quote:
                quote = None
            elif unix and quote == '"' and ch == "\\" and text[i + 1 : i + 2] in ('"', "\\", "$"):
                i += 1
                cur.append(text[i])
            else:
                cur.append(ch)
        elif ch.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        elif ch == '"' or (unix and ch == "'"):
            quote, in_word = ch, True
        elif unix and ch == "\\":
            i += 1
            if i < len(text):
                cur.append(text[i])
            in_word = True
        elif unix and ch == "~" and not in_word and text[i + 1 : i + 2] in ("", "/", " ", "\t"):
            cur.append(home)
            in_word = True
        else:
            cur.append(ch)
            in_word = True
        i += 1
    if quote is not None and unix:
        return None
    if in_word:
        words.append("".join(cur))
    return words


class Shell:
    """The local machine's shell, switched to the remote host by ``ssh`` (until ``exit``)."""

    def __init__(self, local: Machine, remote: Machine):
        self.local, self.remote = local, remote
        self.connected = False
        self.depth = 0
        """Nesting of ``ssh host 'command'`` (one level)."""

    @property
    def machine(self) -> Machine:
        """The machine commands act on now."""
        return self.remote if self.connected else self.local

    @property
    def windows(self) -> bool:
        """Whether the active shell is Windows cmd (local Windows, not connected)."""
        return self.machine.windows

    def prompt(self) -> str:
        """The active shell's prompt string."""
        return self.machine.prompt()

    def not_found(self, name: str) -> str:
        """The OS's answer to an unknown or unavailable command."""
        if self.windows:
            return f"'{name}' is not recognized as an internal or external command,\noperable program or batch file."
        return f"bash: {name}: command not found"

    def run(self, line: str) -> str:
        """Execute one command line; the output is capped at ``MAX_OUTPUT`` characters."""
        out, _ = self.run_line(line)
        if len(out) > MAX_OUTPUT:
            out = out[:MAX_OUTPUT] + "\n... (output truncated)"
        return out

    def run_line(self, line: str) -> Result:
        """(output, success of the last command run)."""
        if len(line) > MAX_LINE:
            return f"Error: command line too long (more than {MAX_LINE} characters).", False
        unix = not self.windows
        mask = _quote_mask(line, unix)
        if "`" in line or any(line[i : i + 2] == "$(" and mask[i] != "'" for i in range(len(line))):
            return SUBSTITUTION_ERROR, False
        line = expand(line, self.machine)
        mask = _quote_mask(line, unix)
        if _unquoted(line, mask, "|"):
            return PIPE_ERROR, False
        if _unquoted(line, mask, "<>"):
            return REDIRECT_ERROR, False
        segments = split_chain(line, unix)
        if len(segments) > MAX_SEGMENTS:
            return f"Error: too many chained commands (at most {MAX_SEGMENTS}).", False
        outputs: list[str] = []
        ok, previous = True, None
        for text, operator in segments:
            if previous == "&&" and not ok:
                break
            previous = operator
            if not text.strip():
                continue
            out, ok = self.run_command(text)
            if out:
                outputs.append(out)
        return "\n".join(outputs), ok

    def run_command(self, text: str) -> Result:
        """One simple command: tokenize, resolve the alias, check availability, dispatch."""
        machine = self.machine
        words = tokenize(text, not machine.windows, machine.display(machine.home))
        if words is None:
            return SYNTAX_ERROR, False
        if not words:
            return "", True
        if len(words) > MAX_TOKENS:
            return f"Error: too many arguments (at most {MAX_TOKENS}).", False
        name = words[0]
        invoked = name.lower()
        spec = COMMANDS.get(ALIASES.get(invoked, invoked))
        if spec is None or (spec.unix_only and self.windows):
            return self.not_found(name), False
        if spec.local_only and self.connected:
            return LOCAL_ONLY.format(cmd=invoked), False
        return spec.fn(self, invoked, words[1:])
