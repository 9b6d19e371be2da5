"""Scripted CodeLock policies: they read only the prompt text a model would see (no privileged state).

They fix the curves a trained model is measured against: the oracle writes every revealed word into the hint and
reads it back (the CoD ceiling), hint-blind plays the same guesses without a hint (chance at every position), random
is an untrained model's format-error-heavy floor. One instance's answers depend only on its seed and its prompts.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from cod_envs.base import MAX_ACTION_CHARS, Message, TextPolicy
from cod_envs.code_lock.env import CODE, slot_of, slot_words, vocab
from cod_envs.scripted import policy_table, uniform_words
from cod_envs.words import EOS, NONE


def _words(messages: list[Message], index: int = 0) -> list[str]:
    """The words of message ``index`` (the plain-text prompt is the first), bounded."""
    return messages[index]["content"][:MAX_ACTION_CHARS].split() if messages else []


def _field(words: list[str], name: str, end: str) -> list[str]:
    """The words between ``name :`` and the next ``end`` word (empty when absent)."""
    for i in range(len(words) - 1):
        if words[i] == name and words[i + 1] == ":":
            rest = words[i + 2 :]
            return rest[: rest.index(end)] if end in rest else rest
    return []


def _by_slot(words: list[str], code_length: int) -> dict[int, str]:
    """Slot -> code word for the code words among ``words`` (a later word wins its slot)."""
    return {slot_of(w): w for w in words if 0 <= slot_of(w) < code_length}


def _guess(rng: random.Random, messages: list[Message], code_length: int, code_words: int, hint: dict[int, str]):
    """A solve answer: the code from ``hint`` (random words where it has none), or a reveal guess that avoids the
    words already guessed wrong in this episode."""
    task = _field(_words(messages), "task", "answer")
    if task == [CODE]:
        return " ".join(hint.get(s) or rng.choice(slot_words(s, code_words)) for s in range(code_length))
    slot = int(task[0][1:]) if task and task[0][1:].isdigit() else 0
    tried = {m["content"].split()[0] for m in messages if m["role"] == "assistant" and m["content"].split()}
    options = [w for w in slot_words(min(slot, code_length - 1), code_words) if w not in tried]
    return rng.choice(options or list(slot_words(min(slot, code_length - 1), code_words)))


def _is_update(messages: list[Message]) -> bool:
    words = _words(messages)
    return len(words) > 1 and words[1] == "update"


def oracle(seed: int = 0, *, code_length: int = 2, code_words: int = 4) -> TextPolicy:
    """Update: the previous hint's code words plus the word the feedback names, in slot order. Solve: the hint's
    words for the code; a reveal task's guesses uniformly among the slot's words not yet tried."""
    rng = random.Random(seed)

    def policy(messages: list[Message]) -> str:
        words = _words(messages)
        if _is_update(messages):
            kept = _by_slot(_field(words, "hint", "answer"), code_length)
            feedback = _field(words, "feedback", "new")
            named = feedback[feedback.index("was") + 1 :] if "was" in feedback else []
            kept |= _by_slot(named, code_length)
            return " ".join([*(kept[s] for s in sorted(kept)), EOS] if kept else [NONE, EOS])
        hint = _by_slot(_field(words, "hint", "task"), code_length)
        return _guess(rng, messages, code_length, code_words, hint)

    return policy


def hint_blind(seed: int = 0, *, code_length: int = 2, code_words: int = 4) -> TextPolicy:
    """The oracle's guessing without the hint: random code words; always writes the hint ``none``."""
    rng = random.Random(seed)

    def policy(messages: list[Message]) -> str:
        if _is_update(messages):
            return f"{NONE} {EOS}"
        return _guess(rng, messages, code_length, code_words, {})

    return policy


def random_policy(seed: int = 0, *, code_length: int = 2, code_words: int = 4, length: int = 4) -> TextPolicy:
    """An untrained model's stand-in: ``length`` words drawn uniformly from the whole vocabulary, specials included."""
    return uniform_words(vocab(code_length, code_words), seed, length)


POLICIES: dict[str, Callable[..., TextPolicy]] = policy_table(oracle, hint_blind, random_policy)
"""Name -> factory ``(seed) -> TextPolicy`` with the default options (F = 2, W = 4)."""
