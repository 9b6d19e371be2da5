"""The one lifecycle runner, CoD level: one rollout of one pack, solve and update episodes alternating (cod.md 2.3).

The runner owns the CoD logic (pack state, hints, the generic update prompt, Ralph task indices) and asks a
:class:`Responder` for the model's side of each episode; it imports only ``cod_megatron.cod`` and ``cod_envs``, never
an engine. Two responders play it: text (:mod:`~cod_megatron.rollout.text_play`, any ``TextPolicy``: scripted
policies, an OpenAI-compatible endpoint) for evaluation, and tokens (:mod:`~cod_megatron.rollout.token_play`, a
rollout engine) for training, which records every episode token-in/token-out as an
:class:`~cod_megatron.cod.episode.Episode`. Update branches are played through a :class:`Brancher`
(:mod:`~cod_megatron.rollout.update_branches`).
Hints: delimited hints keep the previous hint on a parse failure (R1) and earn the format penalty; bare hints
(HiddenKey) are parsed by the environment.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, Unpack

from cod_envs import registry
from cod_envs.base import Environment, PackState, TaskContext
from cod_envs.trajectory import render_trajectory
from cod_megatron.cod.episode import has_judge_error
from cod_megatron.cod.hints import (
    INITIAL_HINT,
    UpdateInput,
    UpdatePromptHooks,
    augment_system_prompt,
    build_update_prompt,
    update_hint,
)
from cod_megatron.cod.rewards import RewardRule

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
        """Close the episode with its reward (``judge_error``: the judge's verdict was unusable, cod.md 3).

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


def as_messages(prompt: Prompt) -> list[dict[str, str]]:
    """Plain-text prompts (HiddenKey) reach text policies as one user message."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class Brancher(Protocol):
    """Plays the non-continuing update branches of one lifecycle (``algorithm.update_branches``; see
    :class:`~cod_megatron.rollout.update_branches.ThreadBrancher`)."""

    count: int
    """B: update episodes written from each update prompt."""
    horizon: int
    """k: tasks each branch plays after its update episode (fewer where fewer are left)."""

    def continuing(self, position: int) -> int:
        """The branch index the lifecycle itself continues from at update ``position``."""
        ...

    def start(self, position: int, index: int, play: Callable[[Responder], TextLifecycle]) -> None:
        """Run ``play`` with a fresh responder for branch ``index`` (possibly in another thread)."""
        ...

    def wait(self, *, reraise: bool = True) -> None:
        """Wait for every branch started; re-raise a branch's failure."""
        ...


class LifecycleOptions(TypedDict, total=False):
    """How a lifecycle is run, whoever drives it (``run_lifecycle`` and its text and token front ends)."""

    env_task_idx: list[int] | None
    """The task index each position tells its environment (Ralph packing); None: the position itself."""
    length_limit: int | None
    """The response length the prompts ask for (``rollout.response_length_restraint``, cod.md 2.7)."""
    hint_visible: bool
    """False renders every solve prompt with the initial hint (the hint-blind control)."""
    rewards: RewardRule | None
    """How outcomes become r_x / r_z; None: the domain's registered step penalty and the spec's hint penalty."""
    brancher: Brancher | None
    """Branch every update episode (``algorithm.update_branches`` > 1); None: no branches (evaluation, B = 1)."""


@dataclass(frozen=True)
class _Tasks:
    """What every task of one lifecycle shares: its domain, rows, pack seed and reward settings."""

    env_cls: type[Environment]
    rows: list[dict[str, Any]]
    pack_seed: int
    env_task_idx: list[int] | None
    length_limit: int | None
    hint_visible: bool
    rule: RewardRule
    initial: str

    def env(self, j: int, state: PackState) -> Environment:
        """The environment of task ``j`` on the lifecycle's (or a branch's) pack state."""
        task_idx = self.env_task_idx[j] if self.env_task_idx else j
        ctx = TaskContext(row=self.rows[j], pack_seed=self.pack_seed, task_idx=task_idx, pack_size=len(self.rows))
        return self.env_cls(ctx, state)


def run_lifecycle(
    env_cls: type[Environment],
    rows: list[dict[str, Any]],
    *,
    pack_seed: int,
    responder: Responder,
    **options: Unpack[LifecycleOptions],
) -> TextLifecycle:
    """S = len(rows) solve episodes and S - 1 update episodes with one caller-owned pack state."""
    rewards, brancher = options.get("rewards"), options.get("brancher")
    rule = rewards if rewards is not None else RewardRule(step_penalty_coef=registry.step_penalty_coef(env_cls))
    tasks = _Tasks(
        env_cls=env_cls,
        rows=rows,
        pack_seed=pack_seed,
        env_task_idx=options.get("env_task_idx"),
        length_limit=options.get("length_limit"),
        hint_visible=options.get("hint_visible", True),
        rule=rule,
        initial=env_cls.initial_hint() or INITIAL_HINT,
    )
    out = TextLifecycle()
    try:
        _play(tasks, PackState(), tasks.initial, range(len(rows)), responder, out, brancher)
    except BaseException:
        if brancher is not None:
            brancher.wait(reraise=False)
        raise
    if brancher is not None:
        brancher.wait()
    return out


def _play(
    tasks: _Tasks,
    state: PackState,
    hint: str,
    positions: range,
    responder: Responder,
    out: TextLifecycle,
    brancher: Brancher | None = None,
) -> None:
    """Solve the tasks at ``positions`` in order, an update episode between two of them (into ``out``)."""
    for j in positions:
        env = tasks.env(j, state)
        shown = hint if tasks.hint_visible else tasks.initial
        solve, messages = _solve_episode(env, j, shown, responder, tasks.rule, tasks.length_limit)
        out.hints.append(hint)
        out.solve_rewards.append(solve.reward)
        out.episodes.append(solve)
        if j == positions[-1] or solve.judge_error:  # a judge error drops the lifecycle: no point going on
            break
        prompt = _update_prompt(env, hint, solve, messages, tasks.length_limit)
        if brancher is not None:
            _start_branches(tasks, state, hint, env, prompt, j, brancher)
        update, hint = _update_episode(env, hint, prompt, j, responder, tasks.rule)
        out.update_rewards.append(update.reward)
        out.episodes.append(update)


def _start_branches(
    tasks: _Tasks, state: PackState, hint: str, env: Environment, prompt: Prompt, j: int, brancher: Brancher
) -> None:
    """Start the B - 1 branches of update ``j`` the lifecycle does not continue from, each on a copy of the pack
    state as it is after task ``j`` (before the lifecycle moves on); each plays up to ``horizon`` tasks.

    The branches share task ``j``'s ``env`` with the lifecycle only for what an update episode asks of it (its
    token cap and hint parsing), which reads the environment and never steps it.
    """
    last = min(j + brancher.horizon, len(tasks.rows) - 1)
    keep = brancher.continuing(j)
    for b in range(brancher.count):
        if b == keep:
            continue
        branch_state = copy.deepcopy(state)

        def play(responder: Responder, branch_state: PackState = branch_state) -> TextLifecycle:
            out = TextLifecycle()
            update, new_hint = _update_episode(env, hint, prompt, j, responder, tasks.rule)
            out.update_rewards.append(update.reward)
            out.episodes.append(update)
            _play(tasks, branch_state, new_hint, range(j + 1, last + 1), responder, out)
            return out

        brancher.start(j, b, play)


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
    messages = as_messages(prompt)
    responses = [responder.begin("solve", j, prompt, env.max_response_tokens("solve"))]
    while True:
        messages.append({"role": "assistant", "content": responses[-1]})
        result = env.step(responses[-1])
        if result.done or env.turns >= env.max_turns:
            break
        messages.append({"role": "user", "content": result.observation})
        responses.append(responder.follow(result.observation))
    feedback = env.final_feedback() or result.feedback
    judge_error = env.judge_error
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


def _update_prompt(
    env: Environment, hint: str, solve: TextEpisodeTrace, messages: list[dict[str, str]], length_limit: int | None
) -> Prompt:
    """The update prompt after ``solve`` (the same for every branch written from it)."""
    update_prompt = env.raw_update_prompt(hint, solve.responses[-1], solve.reward, solve.feedback)
    if update_prompt is None:
        trajectory = env.update_trajectory(messages)
        hooks = UpdatePromptHooks(
            render_trajectory=(lambda _m, t=trajectory: t) if trajectory is not None else render_trajectory,
            include_reward=env.update_shows_reward,
            suffix=env.update_prompt_suffix,
        )
        update_input = UpdateInput(hint, messages, solve.reward, solve.feedback)
        update_prompt = build_update_prompt(update_input, length_limit=length_limit, hooks=hooks)
    return update_prompt


def _update_episode(
    env: Environment, hint: str, update_prompt: Prompt, position: int, responder: Responder, rule: RewardRule
) -> tuple[TextEpisodeTrace, str]:
    """The update episode written after task ``position``: its trace and the next hint (the previous one on a parse
    failure, R1)."""
    response = responder.begin("update", position, update_prompt, env.max_response_tokens("update"))
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
        position=position,
        prompt=update_prompt,
        responses=[response],
        reward=r_z,
        format_error=not parsed,
    )
    return trace, hint
