"""Text a domain returns must encode as UTF-8: model output can hold lone UTF-16 surrogates (a text-path engine's
decode, an adversarial response), and a domain that echoes it (a shell's ``command not found``, a chat note kept
as the next hint, the update trajectory) would make the next prompt fail to encode."""

from __future__ import annotations


def valid_utf8(text: str) -> str:
    """``text`` unchanged when it encodes as UTF-8; else with surrogate pairs joined into their character and every
    lone surrogate replaced by U+FFFD (the replacement character)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
