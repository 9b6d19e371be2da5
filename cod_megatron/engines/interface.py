"""The rollout-engine interfaces: token ids in; token ids and log-probs out.

:class:`RolloutEngine` is what the lifecycle runner drives (one request at a time, from one lifecycle).
:class:`ServingEngine` is what the rollout manager calls (batched generation, a health probe, a restart);
:class:`InferenceEngine` is what the trainer owns (the embedded CPU engine, its Ray actor, the SGLang adapter): a
serving engine with weight updates in buckets and memory release for colocation; :class:`SerializedWeightsEngine`
also takes CUDA-IPC payloads made on every trainer rank (SGLang, colocated). The rollout manager
puts a batcher between the two, so many concurrent lifecycles share one engine call per round. :class:`ScoringEngine`
is what a teacher serves: the log-probs of given tokens after a prompt (prefill only). :class:`TextPolicyEngine`
puts a text-level policy (scripted reference policies, an OpenAI-compatible endpoint) behind the same interface:
it answers from the structured messages and tokenises its text, with log-probs it does not know set to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from cod_envs.base import Message, TextPolicy

if TYPE_CHECKING:
    import torch


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
    cached_tokens: int = 0
    """Prompt tokens the engine served from its prefix cache (SGLang's ``meta_info.cached_tokens``); 0 without one."""


class RolloutEngine(Protocol):
    """What the lifecycle runner needs from an engine."""

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, messages: list[Message] | None = None
    ) -> Generation:
        """Sample a response to ``prompt_ids`` (``messages`` is the same prompt as text, for text adapters)."""
        ...


@dataclass(frozen=True)
class EngineRequest:
    """One generation request of a batch."""

    prompt_ids: list[int]
    params: SamplingParams


@dataclass(frozen=True)
class ScoreRequest:
    """Teacher forcing: the log-probs of ``token_ids`` after ``prompt_ids`` (on-policy distillation, cod.md 8)."""

    prompt_ids: list[int]
    token_ids: list[int]


@runtime_checkable
class ScoringEngine(Protocol):
    """An engine that scores given tokens: a prefill of prompt + tokens, no sampling (a teacher's engine)."""

    def score_batch(self, requests: list[ScoreRequest]) -> list[list[float]]:
        """Per request, ``log p(token_ids[i] | prompt_ids + token_ids[:i])`` under the engine's weights, at
        temperature 1 (the model's own distribution), one value per token, in request order."""
        ...


@runtime_checkable
class ServingEngine(Protocol):
    """What the rollout manager calls on an engine: batched generation, a health probe and a restart."""

    def generate_batch(self, requests: list[EngineRequest]) -> list[Generation]:
        """One generation per request, in order; a request's sample depends only on its prompt and seed."""
        ...

    def health(self) -> dict[str, object]:
        """``{"ok": bool, "weight_version": int, ...}``; an engine that cannot answer is restarted."""
        ...

    def restart(self) -> None:
        """Replace an engine that no longer answers (``health()["ok"]`` False); its weights must be synced again.
        An engine that is never unhealthy (in-process) raises: it is never asked."""
        ...


@runtime_checkable
class InferenceEngine(ServingEngine, Protocol):
    """An engine the trainer owns and keeps in sync with the policy's weights."""

    def update_weights(self, named_tensors: list[tuple[str, torch.Tensor]], *, version: int, last: bool) -> None:
        """Load one bucket of HF-named full tensors; after the ``last`` bucket the engine serves ``version``."""
        ...

    def release_memory(self) -> None:
        """Free weights and KV cache while the colocated trainer runs (SGLang ``release_memory_occupation``)."""
        ...

    def resume_memory(self) -> None:
        """Take the memory back before the next weight update and generation."""
        ...


@runtime_checkable
class SerializedWeightsEngine(InferenceEngine, Protocol):
    """An engine that also takes weights as payloads made on every trainer rank (SGLang's colocated CUDA-IPC path)."""

    def update_weights_serialized(self, payloads: Sequence[str], *, version: int, last: bool) -> None:
        """Load one bucket given as one serialized payload per engine TP rank; after ``last`` it serves ``version``."""
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
