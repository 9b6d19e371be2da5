"""Token-level play of the lifecycle runner: a rollout engine answers and every episode is recorded token-in /
token-out as an :class:`~cod_megatron.cod.episode.Episode` (training, checkpoint evaluation).

A chat prompt is rendered through the model's chat template (:class:`~cod_megatron.cod.tokenization.TokenConversation`);
a plain-text prompt (HiddenKey, CodeLock) is encoded as is (:class:`PlainTextConversation`). Either way the responder
drives one conversation object, so it has one mode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Unpack

from cod_envs.base import Environment, Message
from cod_megatron.cod.episode import Episode, Lifecycle, Pack
from cod_megatron.cod.tokenization import ChatRenderer, LengthBudget, TokenConversation, WordRenderer
from cod_megatron.engines.interface import RolloutEngine, SamplingParams
from cod_megatron.rollout.lifecycle import LifecycleOptions, Prompt, TextLifecycle, run_lifecycle
from cod_megatron.rollout.update_branches import attach_branches, token_brancher

Renderer = ChatRenderer | WordRenderer
"""What turns text into the model's tokens: a chat template (:class:`ChatRenderer`) or a word vocabulary
(:class:`WordRenderer`, plain-text prompts only)."""


@dataclass
class PlainTextConversation(TokenConversation):
    """A conversation without a chat template: the prompt's and each observation's words are encoded as they are and
    follow the last response directly (no template tokens). Same ids, mask and turn indices as
    :class:`TokenConversation`; ``messages`` keeps the text as user / assistant messages."""

    renderer: Renderer  # type: ignore[assignment]  # only ``encode`` is used here

    @classmethod
    def from_text(cls, renderer: Renderer, text: str) -> PlainTextConversation:
        """The conversation of a plain-text prompt, awaiting the first response."""
        ids = renderer.encode(text)
        return cls(
            renderer=renderer,
            messages=[{"role": "user", "content": text}],
            token_ids=list(ids),
            generated=[False] * len(ids),
            turn_ids=[0] * len(ids),
        )

    def add_observation(self, content: str | Sequence[Message]) -> list[int]:
        """Append the observation's words as they are; returns their ids."""
        if self.awaiting_response:
            raise RuntimeError("add_observation: the model has not answered the last prompt yet")
        if not isinstance(content, str):
            raise TypeError("a plain-text conversation takes observations as text")
        ids = self.renderer.encode(content)
        self.token_ids += ids
        self.generated += [False] * len(ids)
        self.turn_ids += [self.num_turns] * len(ids)
        self.messages.append({"role": "user", "content": content})
        self.awaiting_response = True
        return ids


def start_conversation(renderer: Renderer, prompt: Prompt) -> TokenConversation:
    """The conversation of one episode: plain text encoded as is, chat messages through the chat template."""
    if isinstance(prompt, str):
        return PlainTextConversation.from_text(renderer, prompt)
    if not isinstance(renderer, ChatRenderer):
        raise TypeError(f"a chat prompt needs a chat template; {type(renderer).__name__} has none")
    return TokenConversation.start(renderer, prompt)


def call_seed(seed: int, call: int) -> int:
    """The sampling seed of model call ``call`` of a lifecycle seeded ``seed`` (process-independent)."""
    digest = hashlib.sha256(f"cod-call/{seed}/{call}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


@dataclass
class TokenResponder:
    """Answers through a rollout engine and records each episode token-in/token-out as an ``Episode``.

    ``budget`` (the run's caps of cod.md 2.7) bounds every call by what the prompt leaves: the engine is asked for
    at most ``budget.max_new_tokens(len(prompt))``. A prompt with no room left gets an empty answer without an
    engine call, and an episode the budget cut is marked ``truncated`` (counted, never a crash: R11).
    """

    engine: RolloutEngine
    renderer: Renderer
    params: SamplingParams
    pack_id: int
    rollout: int
    budget: LengthBudget | None = None
    episodes: list[Episode] = field(default_factory=list)
    _conv: TokenConversation | None = None
    _key: tuple[str, int] = ("solve", 0)
    _logprobs: list[float] = field(default_factory=list)
    _cap: int | None = None
    _calls: int = 0
    _turn_tokens: list[int] = field(default_factory=list)
    _truncated: bool = False

    def begin(self, kind: str, position: int, prompt: Prompt, max_tokens: int | None = None) -> str:  # noqa: D102
        self._key, self._logprobs, self._turn_tokens, self._truncated = (kind, position), [], [], False
        self._cap = max_tokens
        self._conv = start_conversation(self.renderer, prompt)
        return self._generate(self._conv)

    def follow(self, observation: str) -> str:  # noqa: D102
        conv = self._open()
        conv.add_observation(observation)
        return self._generate(conv)

    def response_tokens(self) -> list[int]:  # noqa: D102
        return list(self._turn_tokens)

    def end(self, reward: float, feedback: str, format_error: bool, judge_error: bool = False, **scored: float) -> None:  # noqa: D102
        conv = self._open()
        ids = conv.token_ids
        kind, position = self._key
        self.episodes.append(
            Episode(
                pack_id=self.pack_id,
                rollout=self.rollout,
                kind=kind,
                position=position,
                token_ids=list(ids),
                generated=list(conv.generated),
                rollout_logprobs=self._logprobs + [0.0] * (len(ids) - len(self._logprobs)),
                turn_ids=list(conv.turn_ids),
                reward=reward,
                feedback=feedback,
                truncated=self._truncated,
                format_error=format_error,
                judge_error=judge_error,
                outcome=scored.get("outcome"),
                penalty=scored.get("penalty", 0.0),
            )
        )

    def _open(self) -> TokenConversation:
        if self._conv is None:
            raise RuntimeError("TokenResponder: no episode begun")
        return self._conv

    def _limits(self, prompt_len: int) -> tuple[SamplingParams, bool]:
        """This call's sampling params (its seed, the smallest cap) and whether the length budget set the cap."""
        params = self.params
        if self._cap is not None and self._cap < params.max_new_tokens:
            params = replace(params, max_new_tokens=self._cap)
        if params.seed is not None:  # one seed per lifecycle; each model call of it draws its own stream
            params = replace(params, seed=call_seed(params.seed, self._calls))
        self._calls += 1
        room = self.budget.max_new_tokens(prompt_len) if self.budget is not None else params.max_new_tokens
        if room >= params.max_new_tokens:
            return params, False
        return replace(params, max_new_tokens=max(room, 0)), True

    def _generate(self, conv: TokenConversation) -> str:
        prompt_ids = conv.prompt_ids
        params, budget_cut = self._limits(len(prompt_ids))
        if budget_cut and params.max_new_tokens == 0:  # no room: an empty answer, no engine call; the domain scores it
            self._truncated = True
            self._turn_tokens.append(0)
            conv.add_response([], "")
            return ""
        gen = self.engine.generate(prompt_ids, params, conv.messages)
        self._truncated |= budget_cut and len(gen.token_ids) >= params.max_new_tokens
        self._turn_tokens.append(len(gen.token_ids))
        text = gen.text if gen.text is not None else self.renderer.decode_response(gen.token_ids)
        self._logprobs += [0.0] * (len(prompt_ids) - len(self._logprobs)) + list(gen.logprobs)
        conv.add_response(gen.token_ids, text)
        return text


def run_token_lifecycle(
    env_cls: type[Environment],
    pack: Pack,
    rollout: int,
    *,
    engine: RolloutEngine,
    renderer: Renderer,
    params: SamplingParams,
    budget: LengthBudget | None = None,
    update_branches: int = 1,
    branch_horizon: int = 1,
    **options: Unpack[LifecycleOptions],
) -> tuple[Lifecycle, TextLifecycle]:
    """The lifecycle driven by an engine; returns the token-level ``Lifecycle`` (for credit and packing) and its
    text trace. ``budget``: the run's length caps (:class:`TokenResponder`). ``update_branches`` B > 1 writes B
    update episodes at every update position, each non-continuing one playing the next ``branch_horizon`` tasks
    (``Lifecycle.branches``; docs/update_branches.md)."""

    def new_responder(handle: RolloutEngine, branch_params: SamplingParams) -> TokenResponder:
        return TokenResponder(
            engine=handle,
            renderer=renderer,
            params=branch_params,
            pack_id=pack.pack_id,
            rollout=rollout,
            budget=budget,
        )

    responder = new_responder(engine, params)
    brancher = None
    if update_branches > 1:
        brancher = token_brancher(update_branches, branch_horizon, engine, params, new_responder)
        options = {**options, "brancher": brancher}
    trace = run_lifecycle(env_cls, [t.data for t in pack.tasks], pack_seed=pack.seed, responder=responder, **options)
    lc = Lifecycle(pack=pack, rollout=rollout, episodes=responder.episodes)
    if brancher is not None:
        attach_branches(lc, brancher)
    return lc, trace
