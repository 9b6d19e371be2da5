"""HiddenKey in natural language, for a pre-trained chat model (domain ``hidden_key_chat``).

The same game as :mod:`cod_envs.hidden_key.env` (cod.md 9.8): a pack shares one secret drawn from the pack seed, each
task shows one distractor word, and the secret reaches later tasks only through the hint the model writes. Here the
keys are colors and the distractors everyday words, the solve prompt is the CoD core's (the domain's system prompt
plus the spec's hint section, then a user message), and the update prompt is the domain's own short chat exchange,
because a 135M model cannot yet follow the generic update prompt's delimited format. Hints are ``bare``: the whole
update response (a few tokens) is the next hint. Both prompts open with a system message, so no template adds its
default one (SmolLM2's "You are a helpful AI assistant named SmolLM...").

A solve response is scored by the color words it names: exactly one distinct color is an answer (right or wrong);
none or several is a format error. Rows are HiddenKey's (``num_keys`` <= 8, ``distractor_vocab`` <= 16).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from cod_envs.base import MAX_ACTION_CHARS, Environment, Message, PackState, StepResult, TaskContext, TextPolicy
from cod_envs.hidden_key.env import HiddenKeyOptions, draw_distractors, draw_key
from cod_envs.lazy_rows import lazy_make_rows
from cod_envs.scripted import HINT_SECTION, policy_table, system_prompt_of
from cod_envs.utf8 import valid_utf8

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "black", "white")
"""Key ``k{i}`` of the word-level game is ``COLORS[i]`` here (each one token in SmolLM2's vocabulary)."""
WORDS: tuple[str, ...] = (
    "apple", "river", "chair", "cloud", "pencil", "garden", "window", "bottle",
    "forest", "candle", "ladder", "mirror", "basket", "rocket", "violin", "pillow",
)  # fmt: skip
"""Distractor ``d{i}`` of the word-level game is ``WORDS[i]`` here."""
NO_NOTE = "none"
HINT_MAX_CHARS = 200
"""A bare hint is cut to this many characters (the engine's token cap already keeps it short)."""

SOLVE_SYSTEM = (
    "You are playing a guessing game. Every game hides one secret color: {colors}. The secret color stays the same "
    "for every round of a game. Answer with the color only."
)
UPDATE_SYSTEM = (
    "You keep a short note for yourself between the rounds of a guessing game. The secret color stays the same for "
    "every round of a game, and your note is all you will see in the next round."
)
UPDATE_USER = "Your note: {note}\nYour answer: {answer}\nResult: {result}\n\nWrite your new note in a few words."


def color_of(key: str) -> str:
    """``k3`` -> ``yellow``."""
    return COLORS[int(key[1:])]


def named_colors(text: str, colors: tuple[str, ...]) -> list[str]:
    """The distinct colors ``text`` names, in order of first mention (whole words, any case, bounded input)."""
    words = re.findall(r"[a-z]+", text[:MAX_ACTION_CHARS].lower())
    return list(dict.fromkeys(w for w in words if w in colors))


class HiddenKeyChat(Environment):
    """One solve task of a chat HiddenKey pack: name the pack's secret color; only the hint can tell it."""

    name: ClassVar[str] = "hidden_key_chat"
    hint_format: ClassVar[Literal["delimited", "bare"]] = "bare"
    solve_max_tokens: ClassVar[int] = 10
    update_max_tokens: ClassVar[int] = 16

    def __init__(self, ctx: TaskContext, state: PackState):
        super().__init__(ctx, state)
        self.options = HiddenKeyOptions.resolve(ctx.row, HiddenKeyOptions())
        o = self.options
        if o.num_keys > len(COLORS) or o.distractor_vocab > len(WORDS):
            raise ValueError(f"hidden_key_chat: num_keys <= {len(COLORS)}, distractor_vocab <= {len(WORDS)}; got {o}")
        self.colors = COLORS[: o.num_keys]
        self.key = color_of(draw_key(ctx.pack_seed, o.num_keys))
        seed = int(ctx.row.get("seed", 0))
        self.distractors = [WORDS[int(d[1:])] for d in draw_distractors(seed, o.num_distractors, o.distractor_vocab)]
        self._feedback = ""

    @property
    def max_turns(self) -> int:
        """One turn: a single answer."""
        return 1

    def system_prompt(self) -> str:
        """The rules; the CoD core appends the hint section."""
        return SOLVE_SYSTEM.format(colors=", ".join(self.colors))

    def first_observation(self) -> str:
        """The round, its distractor words and the question."""
        shown = ", ".join(self.distractors) or "none"
        options = " or ".join(self.colors)
        return f"Round {self.ctx.task_idx + 1}. Ignore this word: {shown}.\nWhat is the secret color: {options}?"

    def step(self, action_text: str) -> StepResult:
        """1 for the secret color, 0 for another color, 0 and a format error for no color or several."""
        self.turns += 1
        named = named_colors(action_text, self.colors)
        valid = len(named) == 1
        correct = valid and named[0] == self.key
        verdict = "correct" if correct else "wrong" if valid else "no single color named"
        reveal = f": the secret color was {self.key}" if self.options.reveal_key else ""
        self._feedback = verdict + reveal
        return self.finish(1.0 if correct else 0.0, self._feedback, format_error=not valid)

    def final_feedback(self) -> str:
        """The last step's feedback (empty before any step)."""
        return self._feedback

    def raw_update_prompt(self, previous_hint: str, response: str, reward: float, feedback: str) -> list[Message]:
        """The domain's own update exchange: the note so far, the answer, the result; asks for a new note."""
        answer = " ".join(response[:HINT_MAX_CHARS].split()) or "(nothing)"
        user = valid_utf8(UPDATE_USER.format(note=previous_hint or NO_NOTE, answer=answer, result=feedback))
        return [{"role": "system", "content": UPDATE_SYSTEM}, {"role": "user", "content": user}]

    def parse_bare_hint(self, response: str) -> str | None:
        """The whole update response, whitespace folded, cut to HINT_MAX_CHARS and made valid UTF-8 (it becomes the
        next solve prompt's hint); None when it is empty."""
        note = valid_utf8(" ".join(response[: 4 * HINT_MAX_CHARS].split())[:HINT_MAX_CHARS])
        return note or None

    def max_response_tokens(self, kind: Literal["solve", "update"]) -> int:
        """A short answer, a short note."""
        return self.solve_max_tokens if kind == "solve" else self.update_max_tokens

    @classmethod
    def initial_hint(cls) -> str:
        """``none``: no note before the first round."""
        return NO_NOTE


# ---- scripted reference policies (they read only what the model sees) ---------------------------------------------
def _is_update(messages: list[Message]) -> bool:
    return system_prompt_of(messages) == UPDATE_SYSTEM


def _hint_of(messages: list[Message]) -> str:
    """The hint text of a solve prompt (after the spec's hint section header), empty without one."""
    system = system_prompt_of(messages)
    return system[system.find(HINT_SECTION) :] if HINT_SECTION in system else ""


def _colors_offered(messages: list[Message]) -> tuple[str, ...]:
    system = system_prompt_of(messages)
    return tuple(c for c in COLORS if c in system.split("hides one secret color:")[-1].split(".")[0])


def oracle(seed: int = 0) -> TextPolicy:
    """Writes the color the result names as its note; answers the note's color, else a random one."""
    rng = random.Random(seed)

    def policy(messages: list[Message]) -> str:
        if _is_update(messages):
            user = messages[-1]["content"]
            named = named_colors(user.split("Result:")[-1], COLORS) or named_colors(user.split("\n")[0], COLORS)
            return f"The secret color is {named[-1]}." if named else NO_NOTE
        noted = named_colors(_hint_of(messages), COLORS)
        return noted[0] if noted else rng.choice(_colors_offered(messages) or COLORS[:4])

    return policy


def hint_blind(seed: int = 0) -> TextPolicy:
    """A random color every round; the note is always ``none``."""
    rng = random.Random(seed)
    return lambda messages: NO_NOTE if _is_update(messages) else rng.choice(_colors_offered(messages) or COLORS[:4])


def random_policy(seed: int = 0) -> TextPolicy:
    """Up to four words from the game's words and colors: format errors, chance-level answers, useless notes."""
    rng = random.Random(seed)
    pool = (*COLORS[:4], *WORDS, "the", "secret", "color", "is")
    return lambda messages: " ".join(rng.choice(pool) for _ in range(rng.randint(1, 4)))


ENV = HiddenKeyChat
POLICIES: dict[str, Callable[..., TextPolicy]] = policy_table(oracle, hint_blind, random_policy)
make_rows: Callable[..., list[dict[str, Any]]] = lazy_make_rows("cod_envs.hidden_key", "easy")
