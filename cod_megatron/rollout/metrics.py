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
    out |= lifecycle_metrics(lcs, "rollout")
    domains = list(dict.fromkeys(lc.pack.tasks[0].taskset_id for lc in result.lifecycles))
    if len(domains) > 1:  # a mixture: every number per domain too
        for d in domains:
            mine = [lc for lc in lcs if lc.pack.tasks[0].taskset_id == d]
            out[f"rollout/{d}/lifecycles"] = float(len(mine))
            out |= lifecycle_metrics(mine, f"rollout/{d}") if mine else {}
            every = [lc for lc in result.lifecycles if lc.pack.tasks[0].taskset_id == d]
            out |= {k.replace("rollout/", f"rollout/{d}/"): v for k, v in generated_token_metrics(every).items()}
    return out | generated_token_metrics(result.lifecycles)


def lifecycle_metrics(lcs: list[Lifecycle], prefix: str) -> dict[str, float]:
    """The CoD curve, its gap, format errors, hint parse failures and truncations of ``lcs`` (one pack size)."""
    out: dict[str, float] = {}
    size = lcs[0].pack.size
    rewards = [lc.solve_rewards() for lc in lcs]
    for j in range(size):
        out[f"{prefix}/reward_pos_{j}"] = sum(r[j] for r in rewards) / len(rewards)
    if size > 1:
        later = sum(out[f"{prefix}/reward_pos_{j}"] for j in range(1, size)) / (size - 1)
        out[f"{prefix}/gap"] = later - out[f"{prefix}/reward_pos_0"]
    solves = [e for lc in lcs for e in lc.solves()]
    updates = [e for lc in lcs for e in lc.updates()]
    out[f"{prefix}/solve_format_error"] = sum(e.format_error for e in solves) / len(solves)
    outcomes = [e.outcome for e in solves if e.outcome is not None]
    if outcomes:  # spec R4: the raw outcome and the step penalty apart, beside r_x (reward_pos_<k>)
        out[f"{prefix}/solve_outcome"] = sum(outcomes) / len(outcomes)
        out[f"{prefix}/solve_penalty"] = sum(e.penalty for e in solves) / len(solves)
    if updates:
        out[f"{prefix}/hint_parse_failure"] = sum(e.format_error for e in updates) / len(updates)
        out[f"{prefix}/update_tokens"] = sum(e.num_generated for e in updates) / len(updates)
    out[f"{prefix}/truncated"] = float(sum(e.truncated for lc in lcs for e in lc.episodes))
    return out


def generated_token_metrics(lifecycles: list[Lifecycle]) -> dict[str, float]:
    """Tokens the engines generated for the step, every lifecycle counted (a budget compares runs by it):
    ``rollout/generated_tokens`` in all, ``rollout/branch_generated_tokens`` of them spent on update branches (the
    non-continuing branches' update episodes and the tasks they played; docs/update_branches.md)."""
    every = sum(e.num_generated for lc in lifecycles for e in lc.all_episodes())
    branch = sum(e.num_generated for lc in lifecycles for br in lc.branches for e in br.episodes)
    return {"rollout/generated_tokens": float(every), "rollout/branch_generated_tokens": float(branch)}
