"""What a step's rollouts looked like: per-position rewards (the CoD curve), hints, format errors, costs."""

from __future__ import annotations

from cod_megatron.cod.episode import Lifecycle
from cod_megatron.rollout.manager import RolloutResult


def rollout_metrics(result: RolloutResult) -> dict[str, float]:
    """Flat ``rollout/...`` metrics; ``rollout/reward_pos_<k>`` is the mean solve reward at pack position k."""
    lcs = [lc for lc in result.lifecycles if not lc.has_judge_error]
    out: dict[str, float] = {
        "rollout/judge_error_lifecycles": float(len(result.lifecycles) - len(lcs)),
        "rollout/lifecycles": float(len(lcs)),
        "rollout/failed_lifecycles": float(result.failed),
        "rollout/retries": float(result.retries),
        "rollout/engine_restarts": float(result.restarts),
        "rollout/engine_calls": float(result.engine_calls),
        "rollout/prompt_tokens": float(result.prompt_tokens),
        "rollout/prefix_cache_hit_rate": result.cached_tokens / max(result.prompt_tokens, 1),
    }
    if not lcs:
        return out
    size = lcs[0].pack.size
    rewards = [lc.solve_rewards() for lc in lcs]
    for j in range(size):
        out[f"rollout/reward_pos_{j}"] = sum(r[j] for r in rewards) / len(rewards)
    if size > 1:
        later = sum(out[f"rollout/reward_pos_{j}"] for j in range(1, size)) / (size - 1)
        out["rollout/gap"] = later - out["rollout/reward_pos_0"]
    solves = [e for lc in lcs for e in lc.solves()]
    updates = [e for lc in lcs for e in lc.updates()]
    out["rollout/solve_format_error"] = sum(e.format_error for e in solves) / len(solves)
    outcomes = [e.outcome for e in solves if e.outcome is not None]
    if outcomes:  # spec R4: the raw outcome and the step penalty apart, beside r_x (reward_pos_<k>)
        out["rollout/solve_outcome"] = sum(outcomes) / len(outcomes)
        out["rollout/solve_penalty"] = sum(e.penalty for e in solves) / len(solves)
    if updates:
        out["rollout/hint_parse_failure"] = sum(e.format_error for e in updates) / len(updates)
        out["rollout/update_tokens"] = sum(e.num_generated for e in updates) / len(updates)
    out["rollout/truncated"] = float(sum(e.truncated for lc in lcs for e in lc.episodes))
    return out | generated_token_metrics(result.lifecycles)


def generated_token_metrics(lifecycles: list[Lifecycle]) -> dict[str, float]:
    """Tokens the engines generated for the step, every lifecycle counted (a budget compares runs by it):
    ``rollout/generated_tokens`` in all, ``rollout/branch_generated_tokens`` of them spent on update branches (the
    non-continuing branches' update episodes and the tasks they played; docs/update_branches.md)."""
    every = sum(e.num_generated for lc in lifecycles for e in lc.all_episodes())
    branch = sum(e.num_generated for lc in lifecycles for br in lc.branches for e in br.episodes)
    return {"rollout/generated_tokens": float(every), "rollout/branch_generated_tokens": float(branch)}
