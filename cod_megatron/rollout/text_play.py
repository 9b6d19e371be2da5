"""Text-level play of the lifecycle runner: a ``TextPolicy`` answers (evaluation, scripted reference policies,
OpenAI-compatible endpoints); nothing is tokenised and no engine is involved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Unpack

from cod_envs.base import Environment, TextPolicy
from cod_megatron.rollout.lifecycle import LifecycleOptions, Prompt, TextLifecycle, as_messages, run_lifecycle


@dataclass
class TextResponder:
    """Answers with a text policy; keeps the conversation so far for multi-turn episodes."""

    policy: TextPolicy
    count_tokens: Callable[[str], int] = lambda text: len(text.split())
    """Text policies have no tokenizer: whitespace words stand in for tokens in the (normally dead) token ramp."""
    _messages: list[dict[str, str]] = field(default_factory=list)
    _replies: list[str] = field(default_factory=list)

    def begin(self, kind: str, position: int, prompt: Prompt, max_tokens: int | None = None) -> str:  # noqa: D102
        self._messages, self._replies = as_messages(prompt), []
        return self._reply()

    def follow(self, observation: str) -> str:  # noqa: D102
        self._messages.append({"role": "user", "content": observation})
        return self._reply()

    def response_tokens(self) -> list[int]:  # noqa: D102
        return [self.count_tokens(t) for t in self._replies]

    def end(self, reward: float, feedback: str, format_error: bool, judge_error: bool = False, **scored: float) -> None:  # noqa: D102
        self._messages = []

    def _reply(self) -> str:
        text = self.policy(list(self._messages))
        self._messages.append({"role": "assistant", "content": text})
        self._replies.append(text)
        return text


def run_text_lifecycle(
    env_cls: type[Environment],
    rows: list[dict[str, Any]],
    *,
    pack_seed: int,
    policy: TextPolicy,
    **options: Unpack[LifecycleOptions],
) -> TextLifecycle:
    """The lifecycle driven by a text policy (evaluation, scripted reference policies, served models)."""
    return run_lifecycle(env_cls, rows, pack_seed=pack_seed, responder=TextResponder(policy), **options)
