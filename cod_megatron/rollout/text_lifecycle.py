"""The text-level lifecycle runner: one rollout of one pack, solve and update episodes alternating (spec 2.3).

It drives any :data:`cod_envs.base.TextPolicy` (scripted policies, a served model behind an adapter). The
token-level runner that trains (token ids in, token ids and log-probs out) follows the same steps. Hints are
handled by the CoD core (``cod_megatron.cod.hints``): delimited hints keep the previous hint on a parse failure
(R1) and earn the format penalty; bare hints (HiddenKey) are parsed by the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cod_envs.base import Environment, PackState, TaskContext, TextPolicy
from cod_megatron.cod.hints import (
    INITIAL_HINT,
    UpdateInput,
    UpdatePromptHooks,
    augment_system_prompt,
    build_update_prompt,
    render_trajectory,
    update_hint,
)
from cod_megatron.cod.rewards import update_reward


@dataclass
class TextEpisodeTrace:
    """What happened in one episode, as text."""

    kind: str
    position: int
    prompt: list[dict[str, str]] | str
    responses: list[str]
    reward: float
    feedback: str = ""
    format_error: bool = False
    turns_used: int = 0


@dataclass
class TextLifecycle:
    """One lifecycle: solve rewards by position, the hint before each task, every episode."""

    solve_rewards: list[float] = field(default_factory=list)
    update_rewards: list[float] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    episodes: list[TextEpisodeTrace] = field(default_factory=list)


def _ask(policy: TextPolicy, prompt: list[dict[str, str]] | str) -> str:
    """Plain-text prompts (HiddenKey) reach the policy as one user message."""
    return policy([{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt)


def run_text_lifecycle(
    env_cls: type[Environment],
    rows: list[dict[str, Any]],
    *,
    pack_seed: int,
    policy: TextPolicy,
    env_task_idx: list[int] | None = None,
    length_limit: int | None = None,
    hint_visible: bool = True,
) -> TextLifecycle:
    """Run S = len(rows) solve episodes and S - 1 update episodes with one caller-owned pack state."""
    state, out = PackState(), TextLifecycle()
    hint = env_cls.initial_hint() or INITIAL_HINT
    size = len(rows)
    for j, row in enumerate(rows):
        ctx = TaskContext(row=row, pack_seed=pack_seed, task_idx=env_task_idx[j] if env_task_idx else j, pack_size=size)
        env = env_cls(ctx, state)
        shown = hint if hint_visible else (env_cls.initial_hint() or INITIAL_HINT)
        raw = env.raw_solve_prompt(shown)
        if raw is not None:
            prompt: list[dict[str, str]] | str = raw
            messages = [{"role": "user", "content": raw}]
        else:
            messages = [
                {"role": "system", "content": augment_system_prompt(env.system_prompt(), shown, length_limit)},
                {"role": "user", "content": env.first_observation()},
            ]
            prompt = list(messages)
        responses: list[str] = []
        while True:
            response = _ask(policy, messages if raw is None else raw)
            responses.append(response)
            messages.append({"role": "assistant", "content": response})
            result = env.step(response)
            if result.done or env.turns >= env.max_turns:
                break
            messages.append({"role": "user", "content": result.observation})
        feedback = env.final_feedback() or result.feedback
        out.hints.append(hint)
        out.solve_rewards.append(result.reward)
        out.episodes.append(
            TextEpisodeTrace(
                kind="solve",
                position=j,
                prompt=prompt,
                responses=responses,
                reward=result.reward,
                feedback=feedback,
                format_error=result.format_error,
                turns_used=result.turns_used,
            )
        )
        if j == size - 1:
            break
        raw_update = env.raw_update_prompt(hint, responses[-1], result.reward, feedback)
        if raw_update is not None:
            update_prompt: list[dict[str, str]] | str = raw_update
        else:
            trajectory = env.update_trajectory(messages)
            hooks = UpdatePromptHooks(
                render_trajectory=(lambda _m, t=trajectory: t) if trajectory is not None else render_trajectory,
                include_reward=env.update_shows_reward,
            )
            update_prompt = build_update_prompt(
                UpdateInput(hint, messages, result.reward, feedback), length_limit=length_limit, hooks=hooks
            )
        response = _ask(policy, update_prompt)
        if env.hint_format == "bare":
            new = env.parse_bare_hint(response)
            parsed, hint = new is not None, new if new is not None else hint
        else:
            upd = update_hint(hint, response)
            parsed, hint = upd.parsed, upd.hint
        out.update_rewards.append(update_reward(parsed))
        out.episodes.append(
            TextEpisodeTrace(
                kind="update",
                position=j,
                prompt=update_prompt,
                responses=[response],
                reward=out.update_rewards[-1],
                format_error=not parsed,
            )
        )
    return out
