"""CodeLock: the word-level credit domain (issue 19); exports what ``cod_envs.registry`` loads.

``make_rows`` is imported lazily so that ``python -m cod_envs.code_lock.data`` runs its module only once.
"""

from __future__ import annotations

from cod_envs.code_lock.env import VOCAB, CodeLock, CodeLockOptions, draw_code, slot_of, slot_words, vocab
from cod_envs.code_lock.policies import POLICIES, hint_blind, oracle, random_policy
from cod_envs.code_lock.warm_start import WARM_START
from cod_envs.lazy_rows import lazy_make_rows

ENV = CodeLock
WORD_VOCABULARY = VOCAB
"""Played by a word-level model: one word, one token id."""

__all__ = [
    "ENV",
    "POLICIES",
    "VOCAB",
    "WARM_START",
    "WORD_VOCABULARY",
    "CodeLock",
    "CodeLockOptions",
    "draw_code",
    "hint_blind",
    "make_rows",
    "oracle",
    "random_policy",
    "slot_of",
    "slot_words",
    "vocab",
]


make_rows = lazy_make_rows(__name__, "easy")
