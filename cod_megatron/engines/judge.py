"""An LLM judge for Learn2Ask (cod.md 9.4) backed by an auxiliary model: implements ``cod_envs.learn2ask.judge.Judge``.

``EngineJudge`` renders the judge's chat messages with a chat renderer, asks any object with the
:class:`~cod_megatron.engines.interface.RolloutEngine` ``generate(prompt_ids, params, messages)`` method, and returns
the text (the generation's own text when it has one, else the renderer's decoding). ``ChatJudge`` wraps a plain
OpenAI-compatible chat function (``messages -> text``; ``OpenAIChatPolicy`` is one). Both retry a failing call a few
times and then let the error through: the environment turns any judge failure, like an unparseable verdict, into
``judge_error`` and the lifecycle is dropped.

Use: ``env_cls = Learn2Ask.with_judge(EngineJudge(aux_engine, renderer))`` in place of ``Learn2Ask``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cod_envs.base import Message
from cod_megatron.engines.interface import Generation, SamplingParams

DEFAULT_JUDGE_PARAMS = SamplingParams(max_new_tokens=512, temperature=0.0)
"""Greedy and short: the verdict is a few tags."""


class _Renderer(Protocol):
    def encode_prompt(self, messages: list[Message]) -> list[int]: ...

    def decode_response(self, token_ids: list[int]) -> str: ...


class _Engine(Protocol):
    def generate(
        self, prompt_ids: list[int], params: SamplingParams, messages: list[Message] | None = None
    ) -> Generation: ...


def _with_retries(call: Callable[[], str], retries: int, backoff_s: float) -> str:
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception:
            if attempt == retries:
                raise
            time.sleep(backoff_s * (attempt + 1))
    raise AssertionError("unreachable")


@dataclass
class EngineJudge:
    """Judge messages -> token ids -> auxiliary engine -> verdict text."""

    engine: _Engine
    renderer: _Renderer
    params: SamplingParams = DEFAULT_JUDGE_PARAMS
    retries: int = 2
    backoff_s: float = 0.5
    calls: int = field(default=0, init=False)

    def __call__(self, messages: list[Message]) -> str:
        """The verdict text for the judge's prompt."""
        self.calls += 1

        def call() -> str:
            ids = self.renderer.encode_prompt(messages)
            gen = self.engine.generate(ids, self.params, messages)
            return gen.text if gen.text is not None else self.renderer.decode_response(gen.token_ids)

        return _with_retries(call, self.retries, self.backoff_s)


@dataclass
class ChatJudge:
    """A judge from an OpenAI-compatible chat function (``messages -> text``)."""

    chat: Callable[[list[dict[str, Any]]], str]
    retries: int = 2
    backoff_s: float = 0.5

    def __call__(self, messages: list[Message]) -> str:
        """The chat function's reply."""
        return _with_retries(lambda: self.chat([dict(m) for m in messages]), self.retries, self.backoff_s)
