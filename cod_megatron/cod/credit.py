"""Credit assignment for a batch of lifecycles: rewards -> returns -> group baselines -> adaptive RED -> episodes.

The glue between the data model and the pure tensor functions: it builds ``r_x [L, S]`` / ``r_z [L, S-1]`` from the
lifecycles, keeps the ones without a judge-format error (dropped whole, cod.md 3), and writes each
episode's advantage back. A pack left with a single rollout gets advantage 0 (counted), never an error. RED weighs
every episode by the tokens it trains on. With ``update_branches`` B > 1 every update episode is credited against
the mean of the B branches written from its own prompt instead (``branch_baselines``, docs/update_branches.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cod_megatron.cod.baselines import STD_EPS, group_advantages
from cod_megatron.cod.branch_baselines import branch_advantages, branch_returns
from cod_megatron.cod.episode import Episode, Lifecycle
from cod_megatron.cod.red import adaptive_red, adaptive_red_by_group
from cod_megatron.cod.returns import lifecycle_returns
from cod_megatron.config import AlgorithmConfig


@dataclass
class CreditResult:
    """The episodes that will be trained on (advantages set) and what happened on the way."""

    episodes: list[Episode]
    dropped_lifecycles: int
    red_temperature: float | None
    metrics: dict[str, float]


def assign_credit(lifecycles: list[Lifecycle], cfg: AlgorithmConfig) -> CreditResult:
    """Set ``advantage`` on every episode of the kept lifecycles (all of one pack size S)."""
    kept = [lc for lc in lifecycles if not lc.has_judge_error]
    if not kept:
        return CreditResult([], len(lifecycles), None, {"credit/kept_lifecycles": 0.0})
    sizes = {lc.pack.size for lc in kept}
    if len(sizes) != 1:
        raise ValueError(f"assign_credit: one pack size per batch, got {sorted(sizes)}")
    for lc in kept:
        if len(lc.solves()) != lc.pack.size or len(lc.updates()) != lc.pack.size - 1:
            raise ValueError(
                f"assign_credit: lifecycle {lc.rollout} of pack {lc.pack.pack_id} has "
                f"{len(lc.solves())} solve / {len(lc.updates())} update episodes for S={lc.pack.size}"
            )
    r_x = torch.tensor([lc.solve_rewards() for lc in kept], dtype=torch.float64)
    r_z = torch.tensor([lc.update_rewards() for lc in kept], dtype=torch.float64).reshape(len(kept), -1)
    ret_x, ret_z = lifecycle_returns(
        r_x, r_z, credit=cfg.credit, returns=cfg.returns, gamma=cfg.gamma, window=cfg.window
    )
    pack_ids = torch.tensor([lc.pack.pack_id for lc in kept])
    branched = cfg.update_branches > 1
    norm = "none" if branched and cfg.std_normalization == "batch" else cfg.std_normalization
    # a pack left with one rollout (judge errors, exhausted retries, or G = 1 by design) has A = 0 (cod.md 4.3)
    adv_x, adv_z = group_advantages(ret_x, ret_z, pack_ids, std_normalization=norm, min_group_size=1)
    single = int((torch.unique(pack_ids, return_counts=True)[1] == 1).sum())
    by_branch: dict[int, float] = {}
    if branched:
        adv_x, by_branch = _branch_credit(kept, cfg, ret_x, adv_x)
    episodes: list[Episode] = []
    values: list[float] = []
    owner: dict[int, str] = {}  # id(episode) -> its domain (the pack's taskset), for RED per domain
    for i, lc in enumerate(kept):
        trained = [*lc.episodes, *(br.update for br in lc.branches)]
        for e in sorted(trained, key=lambda e: (e.position, e.kind != "solve", e.branch or 0)):
            episodes.append(e)
            owner[id(e)] = lc.pack.tasks[0].taskset_id
            if e.kind == "solve":
                values.append(float(adv_x[i, e.position]))
            else:
                values.append(by_branch[id(e)] if branched else float(adv_z[i, e.position]))
    adv = torch.tensor(values, dtype=torch.float64)
    weights = torch.tensor([e.num_generated for e in episodes], dtype=torch.float64)
    temperature, metrics = None, {}
    if cfg.adaptive_red and weights.sum() > 0 and cfg.red_level == "domain":
        adv, metrics = adaptive_red_by_group(
            adv, weights, [owner[id(e)] for e in episodes], t_min=cfg.red_temperature_min, t_max=cfg.red_temperature_max
        )
    elif cfg.adaptive_red and weights.sum() > 0:
        adv, temperature, metrics = adaptive_red(
            adv, weights, t_min=cfg.red_temperature_min, t_max=cfg.red_temperature_max
        )
    for e, a in zip(episodes, adv.tolist(), strict=True):
        e.advantage = a
    metrics = {f"credit/{k}": float(v) for k, v in metrics.items()} | {
        "credit/kept_lifecycles": float(len(kept)),
        "credit/dropped_lifecycles": float(len(lifecycles) - len(kept)),
        "credit/single_rollout_packs": float(single),
        "credit/solve_reward_mean": float(r_x.mean()),
    }
    if branched:
        metrics["credit/branch_update_episodes"] = float(len(by_branch))
    return CreditResult(episodes, len(lifecycles) - len(kept), temperature, metrics)


def _branch_credit(
    kept: list[Lifecycle], cfg: AlgorithmConfig, ret_x: torch.Tensor, adv_x: torch.Tensor
) -> tuple[torch.Tensor, dict[int, float]]:
    """Every update episode's advantage against its B branches' mean, keyed by ``id(episode)``; ``adv_x`` back
    divided by the batch std when ``std_normalization=batch`` (solve returns and branch returns together)."""
    s = ret_x.shape[1]
    points: list[list[list[Episode]]] = []
    returns: list[torch.Tensor] = []
    for j in range(s - 1):
        horizon = min(cfg.branch_horizon, s - 1 - j)  # with fewer tasks left, a branch plays what is left
        eps, r_z, r_x = zip(*(lc.branch_point(j, horizon) for lc in kept), strict=True)
        if {len(e) for e in eps} != {cfg.update_branches}:
            raise ValueError(
                f"assign_credit: update {j} has {sorted({len(e) for e in eps})} branches, want B={cfg.update_branches}"
            )
        r_z_t, r_x_t = torch.tensor(r_z, dtype=torch.float64), torch.tensor(r_x, dtype=torch.float64)
        returns.append(branch_returns(r_z_t, r_x_t, returns=cfg.returns, gamma=cfg.gamma))
        points.append(list(eps))
    group = "group" if cfg.std_normalization == "group" else "none"
    advs = [branch_advantages(r, std_normalization=group) for r in returns]
    if cfg.std_normalization == "batch":
        every = torch.cat([ret_x.flatten(), *(r.flatten() for r in returns)])
        scale = (every.std() if every.numel() > 1 else every.new_tensor(1.0)) + STD_EPS
        adv_x, advs = adv_x / scale, [a / scale for a in advs]
    out = {}
    for eps, adv in zip(points, advs, strict=True):
        for row, arow in zip(eps, adv.tolist(), strict=True):
            out |= {id(e): a for e, a in zip(row, arow, strict=True)}
    return adv_x, out
