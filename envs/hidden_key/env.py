"""HiddenKey (cod.md 9.8): a word-level toy where only the hint can carry the pack's key from task to task.

Small enough for a from-scratch transformer on 2 CPU cores, and a check of the credit wiring: only reward-to-go
credit gives the update episode a reason to write the key. Prompts are plain word strings (one word = one token),
the hint is ``bare`` (the whole update response), and every malformed response is a defined outcome, never an error.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from cod_envs.base import MAX_ACTION_CHARS, Environment, PackState, StepResult, TaskContext
from cod_envs.words import NONE, SPECIAL, UNK, response_words

EPISODE: tuple[str, ...] = ("solve", "update")
FIELDS: tuple[str, ...] = ("hint", "distractor", "answer", "reward", "feedback", "previous", "new", ":")
VALUES: tuple[str, ...] = ("none", "0", "1", "correct", "wrong", "format", "error", "the", "key", "was")
BASE_VOCAB: tuple[str, ...] = SPECIAL + EPISODE + FIELDS + VALUES
"""The 24 fixed words, in the order that fixes their token ids; keys and distractors follow (see :func:`vocab`)."""
INITIAL_HINT = NONE
_FEEDBACK_MAX_WORDS = 6
"""The longest feedback: ``format error the key was kX`` is 6 words; see :meth:`HiddenKey._render`."""


def key_words(num_keys: int) -> tuple[str, ...]:
    """``k0 ... k{K-1}``."""
    return tuple(f"k{i}" for i in range(num_keys))


def distractor_words(distractor_vocab: int) -> tuple[str, ...]:
    """``d0 ... d{D-1}``."""
    return tuple(f"d{i}" for i in range(distractor_vocab))


def vocab(num_keys: int = 4, num_distractors_vocab: int = 16) -> tuple[str, ...]:
    """The full word list (size 24 + K + D) in token-id order: base words, keys, distractors."""
    return BASE_VOCAB + key_words(num_keys) + distractor_words(num_distractors_vocab)


VOCAB: tuple[str, ...] = vocab()
"""The default vocabulary (K = 4, D = 16: 44 words)."""


def encode(text: str, words: tuple[str, ...] = VOCAB) -> list[int]:
    """Token ids of a word string; words outside the vocabulary map to ``<unk>`` (input cut to MAX_ACTION_CHARS)."""
    index = {w: i for i, w in enumerate(words)}
    unk = index[UNK]
    return [index.get(w, unk) for w in text[:MAX_ACTION_CHARS].split()]


def decode(ids: list[int], words: tuple[str, ...] = VOCAB) -> str:
    """Words joined by single spaces; ids outside the vocabulary decode to ``<unk>``."""
    return " ".join(words[i] if 0 <= i < len(words) else UNK for i in ids)


def _rng(*parts: object) -> random.Random:
    """A stream that depends only on ``parts`` (sha256, so stable across processes and PYTHONHASHSEED)."""
    digest = hashlib.sha256("/".join(str(p) for p in ("hidden_key", *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw_key(pack_seed: int, num_keys: int) -> str:
    """The pack's key: uniform over the K key symbols, from the pack seed only (shared by the G rollouts)."""
    return f"k{_rng('key', int(pack_seed), num_keys).randrange(num_keys)}"


def draw_distractors(row_seed: int, num_distractors: int, distractor_vocab: int) -> tuple[str, ...]:
    """A task's distractors: uniform with replacement from the D distractor words, from the row seed only."""
    rng = _rng("distractors", int(row_seed), distractor_vocab)
    return tuple(f"d{rng.randrange(distractor_vocab)}" for _ in range(num_distractors))


@dataclass(frozen=True, kw_only=True)
class HiddenKeyOptions:
    """The domain's options (cod.md 9.8 table); ``hint_max_tokens=None`` means 2 with reveal_key, else K - 1."""

    num_keys: int = 4
    num_distractors: int = 1
    distractor_vocab: int = 16
    reveal_key: bool = True
    answer_max_tokens: int = 1
    hint_max_tokens: int | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "num_keys",
        "num_distractors",
        "distractor_vocab",
        "reveal_key",
        "answer_max_tokens",
        "hint_max_tokens",
    )

    def __post_init__(self) -> None:
        """Options are configuration, so bad values fail loudly here (model output never does)."""
        checks = {
            "num_keys >= 2": self.num_keys >= 2,
            "num_distractors >= 0": self.num_distractors >= 0,
            "distractor_vocab >= 1": self.distractor_vocab >= 1,
            "answer_max_tokens >= 1": self.answer_max_tokens >= 1,
            "hint_max_tokens >= 1": self.hint_max_tokens is None or self.hint_max_tokens >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"HiddenKeyOptions: need {', '.join(bad)}; got {self}")

    @property
    def hint_cap(self) -> int:
        """The resolved cap on the update response."""
        if self.hint_max_tokens is not None:
            return self.hint_max_tokens
        return 2 if self.reveal_key else self.num_keys - 1

    @classmethod
    def resolve(cls, row: dict[str, Any], defaults: HiddenKeyOptions) -> HiddenKeyOptions:
        """Row values win over the constructor's defaults; unknown row keys (``seed``, ...) are ignored."""
        given = {k: row[k] for k in cls.FIELDS if k in row and row[k] is not None}
        kw = {k: getattr(defaults, k) for k in cls.FIELDS} | given
        return cls(
            num_keys=int(kw["num_keys"]),
            num_distractors=int(kw["num_distractors"]),
            distractor_vocab=int(kw["distractor_vocab"]),
            reveal_key=bool(kw["reveal_key"]),
            answer_max_tokens=int(kw["answer_max_tokens"]),
            hint_max_tokens=None if kw["hint_max_tokens"] is None else int(kw["hint_max_tokens"]),
        )


class HiddenKey(Environment):
    """One solve task of a HiddenKey pack: answer the pack's key; the hint is the only way to know it."""

    name: ClassVar[str] = "hidden_key"
    hint_format: ClassVar[Literal["delimited", "bare"]] = "bare"
    update_shows_reward: ClassVar[bool] = True

    def __init__(
        self,
        ctx: TaskContext,
        state: PackState,
        *,
        num_keys: int = 4,
        num_distractors: int = 1,
        distractor_vocab: int = 16,
        reveal_key: bool = True,
        answer_max_tokens: int = 1,
        hint_max_tokens: int | None = None,
    ):
        super().__init__(ctx, state)
        defaults = HiddenKeyOptions(
            num_keys=num_keys,
            num_distractors=num_distractors,
            distractor_vocab=distractor_vocab,
            reveal_key=reveal_key,
            answer_max_tokens=answer_max_tokens,
            hint_max_tokens=hint_max_tokens,
        )
        self.options = HiddenKeyOptions.resolve(ctx.row, defaults)
        o = self.options
        self.words = vocab(o.num_keys, o.distractor_vocab)
        self._vocab = frozenset(self.words)
        self._keys = frozenset(key_words(o.num_keys))
        self.key = draw_key(ctx.pack_seed, o.num_keys)
        self.distractors = draw_distractors(int(ctx.row.get("seed", 0)), o.num_distractors, o.distractor_vocab)
        self._feedback = ""

    @property
    def max_turns(self) -> int:
        """One turn: a single answer token."""
        return 1

    def system_prompt(self) -> str:
        """Empty: HiddenKey has no chat form; :meth:`raw_solve_prompt` is the whole prompt."""
        return ""

    def first_observation(self) -> str:
        """The raw solve prompt with the initial hint (only for callers that ignore ``raw_solve_prompt``)."""
        return self.raw_solve_prompt(INITIAL_HINT)

    def _render(self, text: str, cap: int) -> str:
        """Text as at most ``cap`` in-vocabulary words (OOV -> ``<unk>``), ``none`` when empty.

        Hints from :meth:`parse_bare_hint` already fit ``hint_max_tokens`` and feedback is ours; the cap only makes
        a caller-supplied string cost bounded work and keeps every prompt inside the vocabulary.
        """
        words = [w if w in self._vocab else UNK for w in text[:MAX_ACTION_CHARS].split(None, cap)[:cap]]
        return " ".join(words) if words else NONE

    def raw_solve_prompt(self, hint: str) -> str:
        """``<bos> solve hint : {hint} distractor : {d ...} answer :``."""
        words = [
            "<bos>",
            "solve",
            "hint",
            ":",
            self._render(hint, self.options.hint_cap),
            "distractor",
            ":",
            *self.distractors,
        ]
        return " ".join([*words, "answer", ":"])

    def answer_words(self, action_text: str) -> list[str]:
        """The solve response's answer tokens (cut at the first ``<eos>`` and at ``answer_max_tokens``)."""
        return response_words(action_text, self.options.answer_max_tokens, self._vocab)

    def step(self, action_text: str) -> StepResult:
        """Score the answer: 1 for the key, 0 for another key, 0 and a format error for anything else."""
        self.turns += 1
        answer = self.answer_words(action_text)
        valid = len(answer) == 1 and answer[0] in self._keys
        correct = valid and answer[0] == self.key
        verdict = "correct" if correct else "wrong" if valid else "format error"
        self._feedback = f"{verdict} the key was {self.key}" if self.options.reveal_key else verdict
        return StepResult(
            observation="",
            reward=1.0 if correct else 0.0,
            done=True,
            feedback=self._feedback,
            turns_used=1,
            format_error=not valid,
        )

    def final_feedback(self) -> str:
        """The last step's feedback (empty before any step)."""
        return self._feedback

    def raw_update_prompt(self, previous_hint: str, response: str, reward: float, feedback: str) -> str:
        """``<bos> update previous hint : {hint} answer : {answer or none} reward : {0|1} feedback : {fb} new hint :``.

        ``{answer}`` is the solve response's words as the model emitted them (cut like the answer), ``none`` if empty.
        """
        answer = self.answer_words(response)
        words = [
            "<bos>",
            "update",
            "previous",
            "hint",
            ":",
            self._render(previous_hint, self.options.hint_cap),
            "answer",
            ":",
        ]
        words += [" ".join(answer) if answer else NONE, "reward", ":", "1" if reward >= 0.5 else "0", "feedback", ":"]
        words += [self._render(feedback, _FEEDBACK_MAX_WORDS), "new", "hint", ":"]
        return " ".join(words)

    def parse_bare_hint(self, response: str) -> str | None:
        """The whole update response (cut at ``<eos>`` / ``hint_max_tokens``) is the hint; None if empty or special."""
        words = response_words(response, self.options.hint_cap, self._vocab)
        if not words or any(w in SPECIAL for w in words):
            return None
        return " ".join(words)

    def max_response_tokens(self, kind: Literal["solve", "update"]) -> int:
        """``answer_max_tokens`` for a solve response, ``hint_max_tokens`` for an update response (cod.md 9.8)."""
        return self.options.answer_max_tokens if kind == "solve" else self.options.hint_cap

    @classmethod
    def initial_hint(cls) -> str:
        """``none``: the bare hint before the first task."""
        return INITIAL_HINT
