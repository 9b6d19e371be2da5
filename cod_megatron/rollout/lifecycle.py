"""The one lifecycle runner: one rollout of one pack, solve and update episodes alternating (spec 2.3).

The runner owns the CoD logic (pack state, hints, the generic update prompt, Ralph task indices) and asks a
*responder* for the model's side of each episode. Two responders: text (any ``TextPolicy``: scripted policies, an
OpenAI-compatible endpoint) for evaluation, and tokens (a :class:`~cod_megatron.engines.interface.RolloutEngine`) for
training, which records every episode token-in/token-out as an :class:`~cod_megatron.cod.episode.Episode`.
Hints: delimited hints keep the previous hint on a parse failure (R1) and earn the format penalty; bare hints
(HiddenKey) are parsed by the environment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypedDict, Unpack

from cod_envs import registry
from cod_envs.base import Environment, PackState, TaskContext, TextPolicy
from cod_megatron.cod.episode import Episode, Lifecycle, Pack, has_judge_error
from cod_megatron.cod.hints import (
    INITIAL_HINT,
    UpdateInput,
    UpdatePromptHooks,
    augment_system_prompt,
    build_update_prompt,
    render_trajectory,
    update_hint,
)
from cod_megatron.cod.rewards import RewardRule
from cod_megatron.cod.tokenization import ChatRenderer, TokenConversation
from cod_megatron.engines.interface import RolloutEngine, SamplingParams

Prompt = list[dict[str, str]] | str


class Responder(Protocol):
    """The model's side of an episode: a first response to the prompt, then one per observation."""

    def begin(self, kind: str, position: int, prompt: Prompt, max_tokens: int | None = None) -> str:
        """Start an episode and return the first response text (``max_tokens``: the environment's cap, if any)."""
        ...

    def follow(self, observation: str) -> str:
        """Append an observation and return the next response text."""
        ...

    def response_tokens(self) -> list[int]:
        """Response tokens of each model turn of the current episode (the length penalty's token ramp)."""
        ...

    def end(self, reward: float, feedback: str, format_error: bool, judge_error: bool = False, **scored: float) -> None:
        """Close the episode with its reward (``judge_error``: the judge's verdict was unusable, spec 3).

        ``scored``: a solve episode's ``outcome`` (the environment's raw reward) and ``penalty`` (spec R4).
        """
        ...


@dataclass
class TextEpisodeTrace:
    """What happened in one episode, as text."""

    kind: str
    position: int
    prompt: Prompt
    responses: list[str]
    reward: float
    feedback: str = ""
    format_error: bool = False
    turns_used: int = 0
    judge_error: bool = False
    outcome: float | None = None
    """Solve episodes: the environment's raw outcome, before the step penalty (``reward`` is after it)."""
    penalty: float = 0.0
    """Solve episodes: the length/step penalty taken off a positive outcome."""
    turn_budget: int = 0
    """Solve episodes: the environment's turn budget (the penalty's denominator)."""


@dataclass
class TextLifecycle:
    """One lifecycle: solve rewards by position, the hint before each task, every episode."""

    solve_rewards: list[float] = field(default_factory=list)
    update_rewards: list[float] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    episodes: list[TextEpisodeTrace] = field(default_factory=list)

    @property
    def has_judge_error(self) -> bool:
        """See :func:`~cod_megatron.cod.episode.has_judge_error`."""
        return has_judge_error(self.episodes)


def _as_messages(prompt: Prompt) -> list[dict[str, str]]:
    """Plain-text prompts (HiddenKey) reach text policies as one user message."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class LifecycleOptions(TypedDict, total=False):
    """How a lifecycle is run, whoever drives it (``run_lifecycle`` and its text and token front ends)."""

    env_task_idx: list[int] | None
    """The task index each position tells its environment (Ralph packing); None: the position itself."""
    length_limit: int | None
    """The response length the prompts ask for (``rollout.response_length_restraint``, spec 2.7)."""
    hint_visible: bool
    """False renders every solve prompt with the initial hint (the hint-blind control)."""
    rewards: RewardRule | None
    """How outcomes become r_x / r_z; None: the domain's registered step penalty and the spec's hint penalty."""


def run_lifecycle(
    env_cls: type[Environment],
    rows: list[dict[str, Any]],
    *,
    pack_seed: int,
    responder: Responder,
    **options: Unpack[LifecycleOptions],
) -> TextLifecycle:
    """S = len(rows) solve episodes and S - 1 update episodes with one caller-owned pack state."""
    env_task_idx, length_limit = options.get("env_task_idx"), options.get("length_limit")
    hint_visible, rewards = options.get("hint_visible", True), options.get("rewards")
    rule = rewards if rewards is not None else RewardRule(step_penalty_coef=registry.step_penalty_coef(env_cls))
    state, out = PackState(), TextLifecycle()
    initial = env_cls.initial_hint() or INITIAL_HINT
    hint, size = initial, len(rows)
    for j, row in enumerate(rows):
        task_idx = env_task_idx[j] if env_task_idx else j
        env = env_cls(TaskContext(row=row, pack_seed=pack_seed, task_idx=task_idx, pack_size=size), state)
        solve, messages = _solve_episode(env, j, hint if hint_visible else initial, responder, rule, length_limit)
        out.hints.append(hint)
        out.solve_rewards.append(solve.reward)
        out.episodes.append(solve)
        if j == size - 1 or solve.judge_error:  # a judge error drops the lifecycle: no point going on
            break
        update, hint = _update_episode(env, hint, solve, messages, responder, rule, length_limit)
        out.update_rewards.append(update.reward)
        out.episodes.append(update)
    return out


def _solve_episode(
    env: Environment, j: int, shown: str, responder: Responder, rule: RewardRule, length_limit: int | None
) -> tuple[TextEpisodeTrace, list[dict[str, str]]]:
    """Task ``j`` solved with the hint ``shown``: its trace (r_x, outcome and penalty apart) and its messages."""
    raw = env.raw_solve_prompt(shown)
    if raw is not None:
        prompt: Prompt = raw
    else:
        prompt = [
            {"role": "system", "content": augment_system_prompt(env.system_prompt(), shown, length_limit)},
            {"role": "user", "content": env.first_observation()},
        ]
    messages = _as_messages(prompt)
    responses = [responder.begin("solve", j, prompt, env.max_response_tokens("solve"))]
    while True:
        messages.append({"role": "assistant", "content": responses[-1]})
        result = env.step(responses[-1])
        if result.done or env.turns >= env.max_turns:
            break
        messages.append({"role": "user", "content": result.observation})
        responses.append(responder.follow(result.observation))
    feedback = env.final_feedback() or result.feedback
    judge_error = bool(getattr(env, "judge_error", False))
    r_x = rule.solve(result.reward, responder.response_tokens(), result.turns_used, env.max_turns)
    penalty = result.reward - r_x if result.reward > 0 else 0.0
    responder.end(r_x, feedback, result.format_error, judge_error, outcome=result.reward, penalty=penalty)
    trace = TextEpisodeTrace(
        kind="solve",
        position=j,
        prompt=prompt,
        responses=responses,
        reward=r_x,
        feedback=feedback,
        format_error=result.format_error,
        turns_used=result.turns_used,
        judge_error=judge_error,
        outcome=result.reward,
        penalty=penalty,
        turn_budget=env.max_turns,
    )
    return trace, messages


def _update_episode(
    env: Environment,
    hint: str,
    solve: TextEpisodeTrace,
    messages: list[dict[str, str]],
    responder: Responder,
    rule: RewardRule,
    length_limit: int | None,
) -> tuple[TextEpisodeTrace, str]:
    """The update episode after ``solve``: its trace and the next hint (the previous one on a parse failure, R1)."""
    update_prompt = env.raw_update_prompt(hint, solve.responses[-1], solve.reward, solve.feedback)
    if update_prompt is None:
        trajectory = env.update_trajectory(messages)
        hooks = UpdatePromptHooks(
            render_trajectory=(lambda _m, t=trajectory: t) if trajectory is not None else render_trajectory,
            include_reward=env.update_shows_reward,
            suffix=getattr(env, "update_prompt_suffix", ""),
        )
        update_input = UpdateInput(hint, messages, solve.reward, solve.feedback)
        update_prompt = build_update_prompt(update_input, length_limit=length_limit, hooks=hooks)
    response = responder.begin("update", solve.position, update_prompt, env.max_response_tokens("update"))
    if env.hint_format == "bare":
        new = env.parse_bare_hint(response)
        parsed, hint = new is not None, new if new is not None else hint
    else:
        upd = update_hint(hint, response)
        parsed, hint = upd.parsed, upd.hint
    r_z = rule.update(parsed)
    responder.end(r_z, "", not parsed)
    trace = TextEpisodeTrace(
        kind="update",
        position=solve.position,
        prompt=update_prompt,
        responses=[response],
        reward=r_z,
        format_error=not parsed,
    )
    return trace, hint


@dataclass
class TextResponder:
    """Answers with a text policy; keeps the conversation so far for multi-turn episodes."""

    policy: TextPolicy
    count_tokens: Callable[[str], int] = lambda text: len(text.split())
    """Text policies have no tokenizer: whitespace words stand in for tokens in the (normally dead) token ramp."""
    _messages: list[dict[str, str]] = field(default_factory=list)
    _replies: list[str] = field(default_factory=list)

    def begin(self, kind: str, position: int, prompt: Prompt, max_tokens: int | None = None) -> str:  # noqa: D102
        self._messages, self._replies = _as_messages(prompt), []
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


def call_seed(seed: int, call: int) -> int:
    """The sampling seed of model call ``call`` of a lifecycle seeded ``seed`` (process-independent)."""
    digest = hashlib.sha256(f"cod-call/{seed}/{call}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


@dataclass
class TokenResponder:
    """Answers through a rollout engine and records each episode token-in/token-out as an ``Episode``."""

    engine: RolloutEngine
    renderer: ChatRenderer
    params: SamplingParams
    pack_id: int
    rollout: int
    episodes: list[Episode] = field(default_factory=list)
    _conv: TokenConversation | None = None
    _raw: dict[str, list] | None = None
    _raw_messages: list[dict[str, str]] = field(default_factory=list)
    _key: tuple[str, int] = ("solve", 0)
    _logprobs: list[float] = field(default_factory=list)
    _cap: int | None = None
    _calls: int = 0
    _turn_tokens: list[int] = field(default_factory=list)

    def begin(self, kind: str, position: int, prompt: Prompt, max_tokens: int | None = None) -> str:  # noqa: D102
        self._key, self._logprobs, self._turn_tokens = (kind, position), [], []
        self._cap = max_tokens
        if isinstance(prompt, str):  # plain-text prompt: encoded as is, no chat template (HiddenKey, CodeLock)
            self._conv = None
            ids = self.renderer.encode(prompt)
            self._raw = {"ids": list(ids), "gen": [False] * len(ids), "turns": [0] * len(ids)}
            self._raw_messages = [{"role": "user", "content": prompt}]
            return self._generate(ids, list(self._raw_messages))
        self._conv = TokenConversation.start(self.renderer, prompt)
        return self._generate(self._conv.prompt_ids, self._conv.messages)

    def follow(self, observation: str) -> str:  # noqa: D102
        if self._conv is None:  # plain text: the observation's words follow the last response as they are
            ids = self.renderer.encode(observation)
            turn = len(self._turn_tokens)
            self._raw["ids"] += ids
            self._raw["gen"] += [False] * len(ids)
            self._raw["turns"] += [turn] * len(ids)
            self._raw_messages.append({"role": "user", "content": observation})
            return self._generate(list(self._raw["ids"]), list(self._raw_messages))
        self._conv.add_observation(observation)
        self._logprobs += [0.0] * (len(self._conv.token_ids) - len(self._logprobs))
        return self._generate(self._conv.prompt_ids, self._conv.messages)

    def response_tokens(self) -> list[int]:  # noqa: D102
        return list(self._turn_tokens)

    def end(self, reward: float, feedback: str, format_error: bool, judge_error: bool = False, **scored: float) -> None:  # noqa: D102
        if self._conv is not None:
            ids, gen, turns = self._conv.token_ids, self._conv.generated, self._conv.turn_ids
        else:
            ids, gen, turns = self._raw["ids"], self._raw["gen"], self._raw["turns"]
        kind, position = self._key
        self.episodes.append(
            Episode(
                pack_id=self.pack_id,
                rollout=self.rollout,
                kind=kind,
                position=position,
                token_ids=list(ids),
                generated=list(gen),
                rollout_logprobs=self._logprobs + [0.0] * (len(ids) - len(self._logprobs)),
                turn_ids=list(turns),
                reward=reward,
                feedback=feedback,
                format_error=format_error,
                judge_error=judge_error,
                outcome=scored.get("outcome"),
                penalty=scored.get("penalty", 0.0),
            )
        )

    def _generate(self, prompt_ids: list[int], messages: list[dict[str, str]]) -> str:
        params = self.params
        if self._cap is not None and self._cap < params.max_new_tokens:
            params = replace(params, max_new_tokens=self._cap)
        if params.seed is not None:  # one seed per lifecycle; each model call of it draws its own stream
            params = replace(params, seed=call_seed(params.seed, self._calls))
        self._calls += 1
        gen = self.engine.generate(prompt_ids, params, messages)
        self._turn_tokens.append(len(gen.token_ids))
        text = gen.text if gen.text is not None else self.renderer.decode_response(gen.token_ids)
        self._logprobs += [0.0] * (len(prompt_ids) - len(self._logprobs)) + list(gen.logprobs)
        if self._conv is not None:
            self._conv.add_response(gen.token_ids, text)
        else:
            self._raw["ids"] += gen.token_ids
            self._raw["gen"] += [True] * len(gen.token_ids)
            self._raw["turns"] += [len(self._turn_tokens) - 1] * len(gen.token_ids)
            self._raw_messages.append({"role": "assistant", "content": text})
        return text


def run_token_lifecycle(
    env_cls: type[Environment],
    pack: Pack,
    rollout: int,
    *,
    engine: RolloutEngine,
    renderer: ChatRenderer,
    params: SamplingParams,
    **options: Unpack[LifecycleOptions],
) -> tuple[Lifecycle, TextLifecycle]:
    """The lifecycle driven by an engine; returns the token-level ``Lifecycle`` (for credit and packing) and its
    text trace."""
    responder = TokenResponder(engine=engine, renderer=renderer, params=params, pack_id=pack.pack_id, rollout=rollout)
    trace = run_lifecycle(env_cls, [t.data for t in pack.tasks], pack_seed=pack.seed, responder=responder, **options)
    return Lifecycle(pack=pack, rollout=rollout, episodes=responder.episodes), trace
