"""The data side of one CoD step: lifecycles -> credit -> episode packing -> the step's loss denominators.

Runs on the rank that owns the rollouts; what it returns is broadcast to every trainer rank as it is, so the
denominators are computed once over all DP ranks' micro-batches (before any CP split) and every rank agrees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cod_megatron.cod.credit import assign_credit
from cod_megatron.cod.episode import Episode, Lifecycle
from cod_megatron.cod.losses import LossDenominators
from cod_megatron.cod.opd import reverse_kl_metrics
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data.denominators import step_denominators
from cod_megatron.data.episodes import pack_episodes
from cod_megatron.data.packed import PackedBatch


@dataclass
class StepBatch:
    """Every DP rank's micro-batches (``ranks[rank][m]``) and the step's global denominators."""

    ranks: list[list[PackedBatch]]
    denominators: LossDenominators
    metrics: dict[str, float]


TeacherScores = Callable[[Sequence[tuple[str, Episode]]], list[list[float]]]
"""``(domain, episode)`` pairs -> each episode's teacher log-prob per token (``rollout.teacher_scores``)."""


def build_step_batch(
    lifecycles: list[Lifecycle],
    alg: AlgorithmConfig,
    *,
    budget: int,
    dp: int,
    teacher_scores: TeacherScores | None = None,
    keep_cod_advantage: bool = True,
) -> StepBatch:
    """Reward-to-go credit and baselines, then THD packing into ``budget``-token micro-batches over ``dp`` ranks.

    With ``teacher_scores`` (on-policy distillation, cod.md 8) every credited episode also carries its domain's
    teacher log-probs, which the loss turns into ``A_t += teacher_coef * (logp_teacher_t - sg(logp_theta_t))``;
    ``keep_cod_advantage=False`` zeroes the CoD advantages first (OPD alone, the paper's v2)."""
    credit = assign_credit(lifecycles, alg)
    domain_of = {lc.pack.pack_id: lc.pack.tasks[0].taskset_id for lc in lifecycles}
    metrics = dict(credit.metrics)
    if teacher_scores is not None:
        samples = [(domain_of[e.pack_id], e) for e in credit.episodes]
        teacher = teacher_scores(samples)
        for e, values in zip(credit.episodes, teacher, strict=True):
            e.teacher_logprobs = values
            if not keep_cod_advantage:
                e.advantage = 0.0
        metrics |= reverse_kl_metrics(samples, teacher)
    ranks, packing = pack_episodes(credit.episodes, budget=budget, dp=dp)
    metrics |= {"packing/tokens": float(packing.tokens), "packing/truncated": float(len(packing.truncated))}
    if len(set(domain_of.values())) > 1:  # a mixture: the response tokens the loss sees, per domain
        for d in dict.fromkeys(domain_of.values()):
            mine = [e for e in credit.episodes if domain_of[e.pack_id] == d]
            metrics[f"packing/{d}/trained_tokens"] = float(sum(e.num_generated for e in mine))
    return StepBatch(ranks, step_denominators([mb for rank in ranks for mb in rank]), metrics)
