"""HiddenKey (spec 9.8): the word-level toy domain; exports what ``cod_envs.registry`` loads.

``make_rows`` is imported lazily so that ``python -m cod_envs.hidden_key.data`` runs its module only once.
"""

from __future__ import annotations

from typing import Any

from cod_envs.hidden_key.env import (
    BASE_VOCAB,
    VOCAB,
    HiddenKey,
    HiddenKeyOptions,
    decode,
    draw_distractors,
    draw_key,
    encode,
    vocab,
)
from cod_envs.hidden_key.policies import POLICIES, hint_blind, oracle, random_policy

ENV = HiddenKey

__all__ = [
    "BASE_VOCAB",
    "ENV",
    "POLICIES",
    "VOCAB",
    "HiddenKey",
    "HiddenKeyOptions",
    "decode",
    "draw_distractors",
    "draw_key",
    "encode",
    "hint_blind",
    "make_rows",
    "oracle",
    "random_policy",
    "vocab",
]


def make_rows(n: int, seed: int, split: str, setting: str = "easy", **options: Any) -> list[dict[str, Any]]:
    """See :func:`cod_envs.hidden_key.data.make_rows`."""
    from cod_envs.hidden_key.data import make_rows as _make_rows

    return _make_rows(n, seed, split, setting, **options)
