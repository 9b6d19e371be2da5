"""Scripted HiddenKey policies (cod.md 9.8): they read only the prompt text a model would see.

They fix the curves a trained model is measured against: the oracle shows what a perfect hint writer and reader
earns by position, hint-blind the flat no-transfer control, random an untrained model's format-error-heavy floor.
Each factory is seeded; one instance's answers depend only on its seed and the prompts it has been given.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from cod_envs.base import MAX_ACTION_CHARS, Message, TextPolicy
from cod_envs.hidden_key.env import key_words, vocab
from cod_envs.scripted import policy_table, uniform_words
from cod_envs.words import EOS, NONE


def _prompt_words(messages: list[Message]) -> list[str]:
    """The words of the (single, plain-text) prompt: the last message's content, bounded."""
    return messages[-1]["content"][:MAX_ACTION_CHARS].split() if messages else []


def _last_pair(words: list[str], field: str, end: int | None = None) -> int:
    """Index of the last ``field :`` pair before ``end`` (-1 if absent)."""
    stop = len(words) if end is None else end
    for i in range(stop - 2, -1, -1):
        if words[i] == field and words[i + 1] == ":":
            return i
    return -1


def _solve_hint(words: list[str]) -> list[str]:
    """Hint words of ``<bos> solve hint : {hint} distractor : {d ...} answer :`` (distractors never say distractor)."""
    end = _last_pair(words, "distractor")
    return words[4:end] if end >= 4 else []


def _update_fields(words: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(previous hint, answer, feedback) of an update prompt; feedback words never contain ``feedback``."""
    fb = _last_pair(words, "feedback")
    if fb < 3:
        return [], [], []
    feedback = words[fb + 2 : len(words) - 3]  # drop "new hint :"
    reward_at = fb - 3
    ans = _last_pair(words, "answer", reward_at)
    if ans < 5:
        return [], [], feedback
    return words[5:ans], words[ans + 2 : reward_at], feedback


def _is_update(words: list[str]) -> bool:
    return len(words) > 1 and words[1] == "update"


def oracle(seed: int = 0, *, num_keys: int = 4, reveal_key: bool | None = None) -> TextPolicy:
    """The spec's oracle; it learns the key only from feedback and the hint (no privileged state).

    Reveal mode: update writes the key named in the feedback; solve answers the first key in the hint, else a
    uniformly random key. Right/wrong mode: the hint lists eliminated keys (after a wrong answer append it, after a
    correct one write the other K - 1 keys); solve answers uniformly among the keys not in the hint.
    ``reveal_key=None`` infers the mode from the update prompts' feedback (``... the key was kX`` or not) and
    remembers it; until an update prompt has been seen it acts as in reveal mode (identical with hint ``none``).
    """
    rng = random.Random(seed)
    keys = key_words(num_keys)
    mode: dict[str, bool | None] = {"reveal": reveal_key}

    def policy(messages: list[Message]) -> str:
        words = _prompt_words(messages)
        if _is_update(words):
            hint, answer, feedback = _update_fields(words)
            reveal = "was" in feedback if reveal_key is None else reveal_key
            mode["reveal"] = reveal
            if reveal:
                named = [w for w in feedback if w in keys]
                new = named[-1:] or [w for w in hint if w in keys][:1] or [NONE]
            else:
                eliminated = list(dict.fromkeys(w for w in hint if w in keys))
                said = [w for w in answer if w in keys]
                if feedback[:1] == ["correct"] and said:
                    new = [k for k in keys if k != said[0]]
                elif feedback[:1] == ["wrong"] and said:
                    new = eliminated + [said[0]] * (said[0] not in eliminated)
                else:
                    new = eliminated
                new = new or [NONE]
            return " ".join([*new, EOS])
        hint_keys = [w for w in _solve_hint(words) if w in keys]
        if mode["reveal"] is not False:
            return hint_keys[0] if hint_keys else rng.choice(keys)
        open_keys = [k for k in keys if k not in hint_keys] or list(keys)
        return rng.choice(open_keys)

    return policy


def hint_blind(seed: int = 0, *, num_keys: int = 4) -> TextPolicy:
    """Same solve strategy without the hint: a uniformly random key; always writes the hint ``none``."""
    rng = random.Random(seed)
    keys = key_words(num_keys)

    def policy(messages: list[Message]) -> str:
        return f"{NONE} {EOS}" if _is_update(_prompt_words(messages)) else rng.choice(keys)

    return policy


def random_policy(seed: int = 0, *, num_keys: int = 4, distractor_vocab: int = 16, length: int = 4) -> TextPolicy:
    """An untrained model's stand-in: ``length`` words drawn uniformly from the whole vocabulary, specials included.

    It earns about 1/|V| per solve and makes many format errors and hint parse failures, with no position effect.
    """
    return uniform_words(vocab(num_keys, distractor_vocab), seed, length)


POLICIES: dict[str, Callable[..., TextPolicy]] = policy_table(oracle, hint_blind, random_policy)
"""Name -> factory ``(seed) -> TextPolicy`` with the default options (K = 4; the oracle infers the mode)."""
