"""The rollout-engine interface the lifecycle runner drives: token ids in; token ids and log-probs out.

Engines (the embedded CPU engine, the SGLang adapter) implement :class:`RolloutEngine`. :class:`TextPolicyEngine`
puts a text-level policy (scripted reference policies, an OpenAI-compatible endpoint) behind the same interface:
it answers from the structured messages and tokenises its text, with log-probs it does not know set to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from cod_envs.base import Message, TextPolicy


@dataclass(frozen=True)
class SamplingParams:
    """Per-call sampling settings; ``seed`` makes a call reproducible (set per step, pack and rollout)."""

    max_new_tokens: int
    temperature: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    """What the engine produced: the token ids exactly as sampled and their log-probs under the engine's weights."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: Literal["stop", "length"] = "stop"
    text: str | None = None
    """The response text when the engine already has it (text policies); else decoded by the caller."""


class RolloutEngine(Protocol):
    """What the lifecycle runner needs from an engine."""

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, messages: list[Message] | None = None
    ) -> Generation:
        """Sample a response to ``prompt_ids`` (``messages`` is the same prompt as text, for text adapters)."""
        ...


@dataclass
class TextPolicyEngine:
    """A text policy behind the engine interface: replies from ``messages``, tokenised with ``encode``."""

    policy: TextPolicy
    encode: object
    """``str -> list[int]`` (the chat renderer's ``encode``)."""
    end_of_turn_id: int | None = None

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, messages: list[Message] | None = None
    ) -> Generation:
        """The policy's text, tokenised and ended with the end-of-turn token like an engine's stop."""
        if messages is None:
            raise ValueError("TextPolicyEngine needs the prompt as messages")
        text = self.policy(messages)
        ids = list(self.encode(text))[: params.max_new_tokens]
        finish: Literal["stop", "length"] = "length" if len(ids) == params.max_new_tokens else "stop"
        if finish == "stop" and self.end_of_turn_id is not None:
            ids.append(self.end_of_turn_id)
        return Generation(token_ids=ids, logprobs=[0.0] * len(ids), finish_reason=finish, text=text)
