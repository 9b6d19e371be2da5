"""The environment contract shared by every CoD domain (cod.md 9.0). Plain values in and out.

``envs`` imports nothing from ``cod_megatron``: an environment is built from its data row, the pack seed, its task
index, the pack size and a pack-state object that the *caller* owns (one per lifecycle), renders its prompts, takes
the model's text action and answers with an observation, the raw outcome reward, done, turns used and feedback.
The step/length penalty is applied by the CoD core, not here. Model output is only ever parsed, never executed.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from cod_envs.utf8 import valid_utf8

logger = logging.getLogger(__name__)

Message = dict[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": ...}``."""

TextPolicy = Callable[[list[Message]], str]
"""What a scripted policy (or a served model behind an adapter) is: messages in, response text out."""

MAX_ACTION_CHARS = 65_536
"""Actions are cut to this many characters before any parsing, so malformed input costs bounded work."""


@dataclass(frozen=True, kw_only=True)
class TaskContext:
    """Everything an environment is built from besides the pack state."""

    row: dict[str, Any]
    pack_seed: int
    task_idx: int
    """Position in the pack (or ``env_task_idx`` under the Ralph strategies)."""
    pack_size: int


@dataclass
class PackState:
    """State that persists across the tasks of ONE lifecycle (Grid reveals, PDE evidence, Control's last policy).

    Owned by the caller and passed to every task of the lifecycle; never a module global, so concurrent rollouts
    of the same pack cannot see each other's state.
    """

    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """The environment's answer to one action."""

    observation: str
    """The next user message (empty when ``done``)."""
    reward: float
    """Raw outcome reward so far (final when ``done``)."""
    done: bool
    feedback: str
    """Feedback on this action (also shown to the update episode when the episode ends)."""
    turns_used: int
    format_error: bool = False
    """The action could not be parsed (the episode ends with the domain's defined reward)."""

    def __post_init__(self) -> None:
        # Observation and feedback echo model text in several domains; they become prompts, so they must encode.
        object.__setattr__(self, "observation", valid_utf8(self.observation))
        object.__setattr__(self, "feedback", valid_utf8(self.feedback))


def extract_answer(text: str) -> str | None:
    """The text between ``<answer>`` and ``</answer>``: each must occur exactly once, in that order (cod.md 2.5)."""
    text = text[:MAX_ACTION_CHARS]
    if text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return None
    start, end = text.index("<answer>") + len("<answer>"), text.index("</answer>")
    return text[start:end].strip() if start <= end else None


def turn_heading(label: str, turn: int, budget: int, feedback: str | None) -> str:
    """The head of a multi-turn domain's user message (the references' ``user.jinja2``): ``{label} {turn}/{budget}``
    and a blank line, then the previous action's feedback and a blank line when there is any."""
    head = f"{label} {turn}/{budget}\n\n"
    return f"{head}{feedback}\n\n" if feedback else head


UNPARSEABLE_FEEDBACK = "Invalid response: it could not be parsed ({error}). Game over."
"""Feedback of a response on which a domain's ``step`` raised (see :meth:`Environment.__init_subclass__`)."""


class Environment(ABC):
    """One task of one pack. Subclasses set ``name``, ``max_turns`` and implement the four methods."""

    name: ClassVar[str]
    hint_format: ClassVar[Literal["delimited", "bare"]] = "delimited"
    update_shows_reward: ClassVar[bool] = True
    format_error_reward: ClassVar[float] = 0.0
    """The domain's reward for an unparseable response (Optimal Control: -0.1)."""
    update_prompt_suffix: ClassVar[str] = ""
    """Text the runner appends to the generic update prompt (PDE discovery: its protocol reminder); "" for none."""
    judge_error: bool = False
    """Set by a domain whose verdict comes from a judge model when that verdict was unusable (Learn2Ask): the runner
    then drops the whole lifecycle (cod.md 3.4). Read by the runner after the solve episode ends."""
    _unparseable_result: StepResult | None = None
    """Set by the ``step`` safety net when the domain raised; every later call returns it again."""
    result: StepResult | None = None
    """The episode's final result once it has ended (:meth:`finish`); a ``step`` past the end returns it again."""

    def __init__(self, ctx: TaskContext, state: PackState):
        self.ctx, self.state = ctx, state
        self.turns = 0

    def __init_subclass__(cls, **kwargs: Any):
        """Safety net for the contract that ``step`` and ``parse_bare_hint`` never raise on model output.

        Domains parse hostile text themselves and must not raise; this guards against the bug that got through,
        for present and future domains alike, because one exception would kill a whole training run. A ``step`` or
        ``parse_bare_hint`` defined by the subclass itself is wrapped: an ``Exception`` escaping ``step`` becomes a
        format error (done, ``format_error_reward``, string feedback, the turn counted, the same result on every
        later call and from ``final_feedback``), one escaping ``parse_bare_hint`` a parse failure (None); both are
        logged as warnings with the domain's name. ``KeyboardInterrupt`` and ``SystemExit`` pass through.
        """
        super().__init_subclass__(**kwargs)
        guards = {"step": _guard_step, "parse_bare_hint": _guard_parse_bare_hint, "final_feedback": _guard_final}
        for attr, guard in guards.items():
            method = cls.__dict__.get(attr)
            if callable(method) and not getattr(method, "_never_raises", False):
                setattr(cls, attr, guard(method))

    @property
    @abstractmethod
    def max_turns(self) -> int:
        """Turn budget of one solve episode."""

    @abstractmethod
    def system_prompt(self) -> str:
        """The domain's solve system prompt (the CoD core appends the hint and length sections)."""

    @abstractmethod
    def first_observation(self) -> str:
        """The first user message."""

    @abstractmethod
    def step(self, action_text: str) -> StepResult:
        """Apply the model's full response text; never raises on malformed input."""

    def final_feedback(self) -> str:
        """Feedback for the update episode once the solve episode is over."""
        return ""

    def next_turn(self, observation: str, feedback: str) -> StepResult:
        """The result of a step that does not end the episode: the next user message, no reward yet."""
        return StepResult(observation=observation, reward=0.0, done=False, feedback=feedback, turns_used=self.turns)

    def finish(self, reward: float, feedback: str, format_error: bool = False) -> StepResult:
        """End the episode after ``self.turns`` turns: the done result (no next observation), kept as ``result``."""
        self.result = StepResult(
            observation="",
            reward=reward,
            done=True,
            feedback=feedback,
            turns_used=self.turns,
            format_error=format_error,
        )
        return self.result

    # ---- optional overrides (None = the CoD core's generic behaviour) -------------------------------------------
    def update_trajectory(self, messages: list[Message]) -> str | None:
        """This domain's rendering of the solve trajectory inside the generic update prompt (cod.md 2.6)."""
        return None

    def raw_solve_prompt(self, hint: str) -> str | None:
        """A plain-text solve prompt that bypasses chat messages (HiddenKey, cod.md 9.8); the hint is given as is."""
        return None

    def raw_update_prompt(
        self, previous_hint: str, response: str, reward: float, feedback: str
    ) -> str | list[Message] | None:
        """The domain's own update prompt, replacing the generic one: plain text that bypasses the chat template
        (HiddenKey), or chat messages (HiddenKeyChat)."""
        return None

    def parse_bare_hint(self, response: str) -> str | None:
        """For ``hint_format = "bare"``: the new hint from the update response, None on a parse failure."""
        return None

    def max_response_tokens(self, kind: Literal["solve", "update"]) -> int | None:
        """A per-episode cap on the model's response in tokens (HiddenKey answers in 1), None: the run's cap."""
        return None

    @classmethod
    def initial_hint(cls) -> str | None:
        """The hint before the first task; None means the CoD core's ``Hints: null``."""
        return None


def _log_escaped(env: Environment, exc: Exception, what: str) -> None:
    """A warning naming the domain and the exception class (``what`` has one ``%s`` for it), with the traceback."""
    name = getattr(env, "name", type(env).__name__)
    logger.warning("environment %s: " + what, name, type(exc).__name__, exc_info=True)


def _guard_step(step: Callable[[Environment, str], StepResult]) -> Callable[[Environment, str], StepResult]:
    @functools.wraps(step)
    def guarded(self: Environment, action_text: str) -> StepResult:
        if self._unparseable_result is not None:
            return self._unparseable_result
        turns = self.turns
        try:
            return step(self, action_text)
        except Exception as exc:
            _log_escaped(self, exc, "step raised %s on a model response; scored as a format error")
            self.turns = max(self.turns, turns + 1)
            self._unparseable_result = StepResult(
                observation="",
                reward=float(self.format_error_reward),
                done=True,
                feedback=UNPARSEABLE_FEEDBACK.format(error=type(exc).__name__),
                turns_used=self.turns,
                format_error=True,
            )
            return self._unparseable_result

    guarded._never_raises = True  # type: ignore[attr-defined]
    return guarded


def _guard_parse_bare_hint(parse: Callable[[Environment, str], str | None]) -> Callable[[Environment, str], str | None]:
    @functools.wraps(parse)
    def guarded(self: Environment, response: str) -> str | None:
        try:
            return parse(self, response)
        except Exception as exc:
            _log_escaped(self, exc, "parse_bare_hint raised %s; treated as a parse failure")
            return None

    guarded._never_raises = True  # type: ignore[attr-defined]
    return guarded


def _guard_final(final_feedback: Callable[[Environment], str]) -> Callable[[Environment], str]:
    @functools.wraps(final_feedback)
    def guarded(self: Environment) -> str:
        failed = self._unparseable_result
        return failed.feedback if failed is not None else final_feedback(self)

    guarded._never_raises = True  # type: ignore[attr-defined]
    return guarded
