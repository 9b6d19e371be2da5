"""Hides the third-party start-up noise the entry points know; imported by each entry point before megatron.

On a machine without Transformer Engine or Apex, importing megatron-core prints about ten lines that say nothing
about the run: "not installed, falling back" ``UserWarning``s, a ``SyntaxWarning`` from one of its docstrings (when
its bytecode is first compiled), an experimental-API notice, a deprecation its own ``TransformerConfig`` default
trips, and torch's "No CUDA runtime is found" log line.
Importing this module (``import cod_megatron.infra.quiet`` first in ``train``, ``eval``, ``convert``, the launcher
and ``python -m cod_megatron.sync``) filters exactly those messages, each by category, message and origin; any other
warning still shows. ``logging.level=DEBUG`` on the command line shows them again: it is read here from
``sys.argv``, because the entry points' own imports load megatron before their command line is parsed.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Sequence

KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # (category, message, origin module): regexes matched in full; a SyntaxWarning's origin is the file path
    (UserWarning, r"Transformer Engine and Apex are not installed\. Falling back to [\w ,]+\.?", r"megatron\.core\..*"),
    (UserWarning, r"Apex is not installed\. Falling back to Torch Norm", r"megatron\.core\..*"),
    (
        UserWarning,
        r"MimoModelConfig is experimental and still under active development\. "
        r"The API may change without notice in future releases\.",
        r"megatron\.core\.models\.mimo\..*",
    ),
    (  # megatron's own default (cuda_graph_modules="full") trips its own deprecation; it has no effect here
        UserWarning,
        r"full scope is deprecated\. Use empty cuda_graph_modules to capture the whole layer\.",
        r"megatron\.core\.transformer\.transformer_config",
    ),
    (SyntaxWarning, r"invalid escape sequence '\\-'", r".*[/\\]megatron[/\\]core[/\\]inference[/\\].*"),
)
"""megatron-core's import-time warnings on a CPU (or TE-less) machine, and the one its default config raises."""

KNOWN_LOG_LINES: dict[str, str] = {
    "torch.utils.cpp_extension": r"No CUDA runtime is found, using CUDA_HOME='[^']*'",
    "megatron.core.models.gpt.gpt_model": r"GPTModel IS DEPRECATED\. GPTModel is only accepting critical bug fixes.*",
}
"""``{logger name: message regex matched in full}``: torch's note when megatron imports its extension builder, and
megatron's notice, at every model build, that ``GPTModel`` will give way to ``HybridModel`` (the policy is built
through ``GPTModel``'s public API and spec; the migration is megatron-core's, not the run's)."""


class _DropKnown(logging.Filter):
    """Drops a logger's records whose message matches one known pattern in full."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return self.pattern.fullmatch(record.getMessage()) is None


def debug_requested(argv: Sequence[str]) -> bool:
    """The last ``logging.level=`` override on the command line asks for DEBUG."""
    levels = [a.partition("=")[2] for a in argv if a.startswith("logging.level=")]
    return bool(levels) and levels[-1] == "DEBUG"


def hide_known_noise(argv: Sequence[str] | None = None) -> bool:
    """Filter the known messages unless ``argv`` (default: this process's arguments) asks for DEBUG; idempotent.

    Returns whether the filters are in place."""
    if debug_requested(sys.argv[1:] if argv is None else argv):
        return False
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message + r"\Z", category=category, module=module + r"\Z")
    for name, pattern in KNOWN_LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_DropKnown(pattern))
    return True


hide_known_noise()
