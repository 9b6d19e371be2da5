"""Credit assignment for a batch of lifecycles: rewards -> returns -> group baselines -> adaptive RED -> episodes.

The glue between the data model and the pure tensor functions: it builds ``r_x [L, S]`` / ``r_z [L, S-1]`` from the
lifecycles, keeps the ones without a judge-format error (dropped whole, spec section 3), and writes each
episode's advantage back. A pack left with a single rollout gets advantage 0 (counted), never an error. RED weighs
every episode by the tokens it trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cod_megatron.cod.baselines import group_advantages
from cod_megatron.cod.episode import Episode, Lifecycle
from cod_megatron.cod.red import adaptive_red
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
    # a pack left with one rollout (judge errors, exhausted retries, or G = 1 by design) has A = 0 (spec 4.3)
    adv_x, adv_z = group_advantages(ret_x, ret_z, pack_ids, std_normalization=cfg.std_normalization, min_group_size=1)
    single = int((torch.unique(pack_ids, return_counts=True)[1] == 1).sum())
    episodes: list[Episode] = []
    values: list[float] = []
    for i, lc in enumerate(kept):
        for e in sorted(lc.episodes, key=lambda e: (e.position, e.kind != "solve")):
            episodes.append(e)
            values.append(float(adv_x[i, e.position] if e.kind == "solve" else adv_z[i, e.position]))
    adv = torch.tensor(values, dtype=torch.float64)
    weights = torch.tensor([e.num_generated for e in episodes], dtype=torch.float64)
    temperature, metrics = None, {}
    if cfg.adaptive_red and weights.sum() > 0:
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
    return CreditResult(episodes, len(lifecycles) - len(kept), temperature, metrics)
