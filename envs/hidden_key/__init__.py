"""HiddenKey (cod.md 9.8): the word-level toy domain; exports what ``cod_envs.registry`` loads.

``make_rows`` is imported lazily so that ``python -m cod_envs.hidden_key.data`` runs its module only once.
"""

from __future__ import annotations

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
from cod_envs.hidden_key.warm_start import WARM_START
from cod_envs.lazy_rows import lazy_make_rows

ENV = HiddenKey
WORD_VOCABULARY = VOCAB
"""Played by a word-level model: one word, one token id (cod.md 9.8)."""

__all__ = [
    "BASE_VOCAB",
    "ENV",
    "POLICIES",
    "VOCAB",
    "WARM_START",
    "WORD_VOCABULARY",
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


make_rows = lazy_make_rows(__name__, "easy")
