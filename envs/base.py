"""The environment contract shared by every CoD domain (spec 9.0). Plain values in and out.

``envs`` imports nothing from ``cod_megatron``: an environment is built from its data row, the pack seed, its task
index, the pack size and a pack-state object that the *caller* owns (one per lifecycle), renders its prompts, takes
the model's text action and answers with an observation, the raw outcome reward, done, turns used and feedback.
The step/length penalty is applied by the CoD core, not here. Model output is only ever parsed, never executed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

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


def extract_answer(text: str) -> str | None:
    """The text between ``<answer>`` and ``</answer>``: each must occur exactly once, in that order (spec 2.5)."""
    text = text[:MAX_ACTION_CHARS]
    if text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return None
    start, end = text.index("<answer>") + len("<answer>"), text.index("</answer>")
    return text[start:end].strip() if start <= end else None


class Environment(ABC):
    """One task of one pack. Subclasses set ``name``, ``max_turns`` and implement the four methods."""

    name: ClassVar[str]
    hint_format: ClassVar[Literal["delimited", "bare"]] = "delimited"
    update_shows_reward: ClassVar[bool] = True

    def __init__(self, ctx: TaskContext, state: PackState):
        self.ctx, self.state = ctx, state
        self.turns = 0

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

    # ---- optional overrides (None = the CoD core's generic behaviour) -------------------------------------------
    def update_trajectory(self, messages: list[Message]) -> str | None:
        """This domain's rendering of the solve trajectory inside the generic update prompt (spec 2.6)."""
        return None

    def raw_solve_prompt(self, hint: str) -> str | None:
        """A plain-text solve prompt that bypasses chat messages (HiddenKey, spec 9.8); the hint is given as is."""
        return None

    def raw_update_prompt(self, previous_hint: str, response: str, reward: float, feedback: str) -> str | None:
        """A plain-text update prompt that replaces the generic one (HiddenKey)."""
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
