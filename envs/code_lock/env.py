"""CodeLock: a word-level CPU domain where an update episode's value shows only several tasks later.

A pack has a secret code of F words (slot i's word is one of ``W`` words ``{letter_i}0 .. {letter_i}{W-1}``), drawn
from the pack seed. Tasks 0..F-1 are *reveal* tasks: guess slot j's word in at most ``guesses`` turns ("wrong"
between turns); whatever happens, the final feedback names the word. They pay ``chance_reward`` for a right guess,
which is pure chance (the word is unknown until then) and can be influenced by no update episode. Tasks F.. are
*combination* tasks: answer the whole code in one turn; they pay 1 for each word that is right (``per_word``) or
F only when all are (``all``). The hint is the only carrier: update episode j must keep the words already written and
add word j, and that pays only at positions >= F. ``chance_reward`` is the noise knob (see docs/credit_domain.md).
Prompts are plain word strings (one word = one token); every malformed response is a defined outcome, never an error.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from cod_envs.base import MAX_ACTION_CHARS, Environment, PackState, StepResult, TaskContext
from cod_envs.words import NONE, SPECIAL, UNK, response_words

EPISODE: tuple[str, ...] = ("solve", "update")
FIELDS: tuple[str, ...] = ("hint", "task", "answer", "reward", "feedback", "previous", "new", ":")
VALUES: tuple[str, ...] = ("none", "0", "1", "correct", "wrong", "format", "error", "the", "word", "was", "code")
BASE_VOCAB: tuple[str, ...] = SPECIAL + EPISODE + FIELDS + VALUES
"""The 25 fixed words, in token-id order; slot names and code words follow (see :func:`vocab`)."""
CODE = "code"
INITIAL_HINT = NONE
SLOT_LETTERS = "abcdef"
"""Slot i's code words start with letter i, so a hint word names its slot whatever its order in the hint."""
_FEEDBACK_MAX_WORDS = 6
"""The longest feedback: ``format error the word was b2`` is 6 words."""
Scoring = Literal["per_word", "all"]


def slot_names(code_length: int) -> tuple[str, ...]:
    """``s0 ... s{F-1}``: how a reveal task names its slot."""
    return tuple(f"s{i}" for i in range(code_length))


def slot_words(slot: int, code_words: int) -> tuple[str, ...]:
    """Slot ``slot``'s candidate words: ``{letter}0 ... {letter}{W-1}``."""
    return tuple(f"{SLOT_LETTERS[slot]}{i}" for i in range(code_words))


def all_code_words(code_length: int, code_words: int) -> tuple[str, ...]:
    """Every slot's words, slot by slot."""
    return tuple(w for s in range(code_length) for w in slot_words(s, code_words))


def vocab(code_length: int = 2, code_words: int = 4) -> tuple[str, ...]:
    """The full word list (25 + F + F * W words) in token-id order: base words, slot names, code words."""
    return BASE_VOCAB + slot_names(code_length) + all_code_words(code_length, code_words)


VOCAB: tuple[str, ...] = vocab()
"""The default vocabulary (F = 2, W = 4: 35 words)."""


def slot_of(word: str) -> int:
    """The slot a code word belongs to (its letter), -1 for any other word."""
    return SLOT_LETTERS.find(word[0]) if len(word) >= 2 and word[1:].isdigit() else -1


def _rng(*parts: object) -> random.Random:
    """A stream that depends only on ``parts`` (sha256, so stable across processes and PYTHONHASHSEED)."""
    digest = hashlib.sha256("/".join(str(p) for p in ("code_lock", *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw_code(pack_seed: int, code_length: int, code_words: int) -> tuple[str, ...]:
    """The pack's code: one uniform word per slot, from the pack seed only (shared by the G rollouts)."""
    rng = _rng("code", int(pack_seed), code_length, code_words)
    return tuple(slot_words(s, code_words)[rng.randrange(code_words)] for s in range(code_length))


@dataclass(frozen=True, kw_only=True)
class CodeLockOptions:
    """The domain's options; ``chance_reward`` sets how much unrelated chance the lifecycle total carries."""

    code_length: int = 2
    code_words: int = 4
    guesses: int = 2
    chance_reward: float = 2.0
    scoring: Scoring = "per_word"

    FIELDS: ClassVar[tuple[str, ...]] = ("code_length", "code_words", "guesses", "chance_reward", "scoring")

    def __post_init__(self) -> None:
        """Options are configuration, so bad values fail loudly here (model output never does)."""
        checks = {
            f"1 <= code_length <= {len(SLOT_LETTERS)}": 1 <= self.code_length <= len(SLOT_LETTERS),
            "2 <= code_words <= 10": 2 <= self.code_words <= 10,
            "guesses >= 1": self.guesses >= 1,
            "chance_reward >= 0": self.chance_reward >= 0,
            "scoring in ('per_word', 'all')": self.scoring in ("per_word", "all"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"CodeLockOptions: need {', '.join(bad)}; got {self}")

    @classmethod
    def resolve(cls, row: dict[str, Any], defaults: CodeLockOptions) -> CodeLockOptions:
        """Row values win over the constructor's defaults; unknown row keys (``seed``, ...) are ignored."""
        given = {k: row[k] for k in cls.FIELDS if k in row and row[k] is not None}
        kw = {k: getattr(defaults, k) for k in cls.FIELDS} | given
        return cls(
            code_length=int(kw["code_length"]),
            code_words=int(kw["code_words"]),
            guesses=int(kw["guesses"]),
            chance_reward=float(kw["chance_reward"]),
            scoring=kw["scoring"],
        )


class CodeLock(Environment):
    """One task of a CodeLock pack: a reveal task (position < F) or a combination task (position >= F)."""

    name: ClassVar[str] = "code_lock"
    hint_format: ClassVar[Literal["delimited", "bare"]] = "bare"
    update_shows_reward: ClassVar[bool] = True

    def __init__(self, ctx: TaskContext, state: PackState, **defaults: Any):
        super().__init__(ctx, state)
        self.options = o = CodeLockOptions.resolve(ctx.row, CodeLockOptions(**defaults))
        self.words = vocab(o.code_length, o.code_words)
        self._vocab = frozenset(self.words)
        self._code_words = frozenset(all_code_words(o.code_length, o.code_words))
        self.code = draw_code(ctx.pack_seed, o.code_length, o.code_words)
        self.slot = ctx.task_idx if 0 <= ctx.task_idx < o.code_length else None
        """The slot this reveal task asks for; None for a combination task."""
        self._feedback = ""

    @property
    def is_reveal(self) -> bool:
        """Whether this task reveals a code word (positions 0..F-1)."""
        return self.slot is not None

    @property
    def max_turns(self) -> int:
        """``guesses`` turns for a reveal task, one for a combination task."""
        return self.options.guesses if self.is_reveal else 1

    def system_prompt(self) -> str:
        """Empty: CodeLock has no chat form; :meth:`raw_solve_prompt` is the whole prompt."""
        return ""

    def first_observation(self) -> str:
        """The raw solve prompt with the initial hint (only for callers that ignore ``raw_solve_prompt``)."""
        return self.raw_solve_prompt(INITIAL_HINT)

    def _render(self, text: str, cap: int) -> str:
        """Text as at most ``cap`` in-vocabulary words (OOV -> ``<unk>``), ``none`` when empty."""
        words = [w if w in self._vocab else UNK for w in text[:MAX_ACTION_CHARS].split(None, cap)[:cap]]
        return " ".join(words) if words else NONE

    def raw_solve_prompt(self, hint: str) -> str:
        """``<bos> solve hint : {hint} task : {s<j> | code} answer :``."""
        task = f"s{self.slot}" if self.is_reveal else CODE
        return f"<bos> solve hint : {self._render(hint, self.options.code_length)} task : {task} answer :"

    def answer_words(self, action_text: str) -> list[str]:
        """A response's answer tokens: one word for a reveal task, F for a combination task (cut at ``<eos>``)."""
        return response_words(action_text, self.max_response_tokens("solve"), self._vocab)

    def step(self, action_text: str) -> StepResult:
        """Score one turn: a reveal guess (retry on a wrong in-slot word) or the whole code."""
        if self.result is not None:  # the episode is over: the same result again
            return self.result
        self.turns += 1
        return self._reveal_step(action_text) if self.is_reveal else self._combination_step(action_text)

    def _reveal_step(self, action_text: str) -> StepResult:
        answer = self.answer_words(action_text)
        word = self.code[self.slot]
        valid = len(answer) == 1 and slot_of(answer[0]) == self.slot and answer[0] in self._code_words
        if valid and answer[0] == word:
            return self._end(self.options.chance_reward, f"correct the word was {word}")
        if valid and self.turns < self.options.guesses:
            return self.next_turn("wrong answer :", "wrong")
        verdict = "wrong" if valid else "format error"
        return self._end(0.0, f"{verdict} the word was {word}", format_error=not valid)

    def _combination_step(self, action_text: str) -> StepResult:
        answer = self.answer_words(action_text)
        if len(answer) != self.options.code_length or not set(answer) <= self._code_words:
            return self._end(0.0, "format error", format_error=True)
        right = sum(a == c for a, c in zip(answer, self.code, strict=True))
        if self.options.scoring == "per_word":
            reward = float(right)
        else:
            reward = float(self.options.code_length) if right == self.options.code_length else 0.0
        return self._end(reward, "correct" if right == self.options.code_length else "wrong")

    def _end(self, reward: float, feedback: str, format_error: bool = False) -> StepResult:
        self._feedback = feedback
        return self.finish(reward, feedback, format_error)

    def final_feedback(self) -> str:
        """The last step's feedback (empty before the episode ends)."""
        return self._feedback

    def raw_update_prompt(self, previous_hint: str, response: str, reward: float, feedback: str) -> str:
        """``<bos> update previous hint : {h} answer : {a} reward : {0|1} feedback : {fb} new hint :``.

        ``{a}`` is the last turn's answer words as the model emitted them (``none`` if empty); the reward shown is 1
        when the feedback says correct (so it reads the same whatever ``chance_reward`` is).
        """
        answer = self.answer_words(response)
        shown = "1" if feedback.startswith("correct") else "0"
        return (
            f"<bos> update previous hint : {self._render(previous_hint, self.options.code_length)} "
            f"answer : {' '.join(answer) if answer else NONE} reward : {shown} "
            f"feedback : {self._render(feedback, _FEEDBACK_MAX_WORDS)} new hint :"
        )

    def parse_bare_hint(self, response: str) -> str | None:
        """The whole update response (cut at ``<eos>`` / F words) is the hint; None if empty or special."""
        words = response_words(response, self.options.code_length, self._vocab)
        if not words or any(w in SPECIAL for w in words):
            return None
        return " ".join(words)

    def max_response_tokens(self, kind: Literal["solve", "update"]) -> int:
        """One word per reveal turn, F for a combination answer and for a hint."""
        if kind == "solve" and self.is_reveal:
            return 1
        return self.options.code_length

    @classmethod
    def initial_hint(cls) -> str:
        """``none``: the bare hint before the first task."""
        return INITIAL_HINT
