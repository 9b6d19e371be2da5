"""The policy's loss path: a packed micro-batch's fields -> the CoD loss (``cod_megatron.cod.losses``).

Scaling chain (megatron ``calculate_per_token_loss=True``): each micro-batch returns ``N * sum_t w_t l_t`` and its
own loss-token count n_i, where ``w_t`` are aggregation weights from the step's global denominators (N tokens,
|B'| samples; computed once before any micro-batch / DP / CP split). megatron adds the gradients of all
micro-batches, DDP sums them over DP x CP, and ``finalize_model_grads`` divides once by ``sum_i n_i = N``: the
gradient of the spec's aggregated loss, whatever the split. For ``token_mean`` the returned value is the plain
masked token sum.
"""

from __future__ import annotations

import torch

from cod_megatron.cod.losses import LossDenominators, LossOptions, policy_loss
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data import PackedBatch
from cod_megatron.data.denominators import sample_ids


def packed_policy_loss(
    logp: torch.Tensor,
    entropy: torch.Tensor,
    batch: PackedBatch,
    denom: LossDenominators,
    cfg: AlgorithmConfig,
    sample_offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, num_tokens, metrics)`` of one micro-batch. Missing old log-probs mean on-policy (``sg(logp)``).

    The advantages are per token: the segment's, the batch's per-token term, and the term formed from these very
    log-probs (``cod_megatron.cod.token_advantages``), so the fused head's per-chunk call forms it from the chunk's.
    """
    old = batch.old_logprobs if batch.old_logprobs is not None else logp.detach()
    return policy_loss(
        logp,
        old,
        batch.advantage_terms(cfg.teacher_coef).at(logp),
        batch.loss_mask,
        sample_ids(batch, sample_offset),
        denom,
        cfg,
        entropy=entropy,
        ref_logp=batch.ref_logprobs,
        rollout_logp=batch.rollout_logprobs,
        options=LossOptions(clip_mode=cfg.clip_mode),
    )


def check_teacher_logprobs(batches: list[PackedBatch], cfg: AlgorithmConfig) -> None:
    """Raise when ``teacher_coef`` is on and a micro-batch with loss tokens has no teacher log-probs (the term would
    silently vanish). On the host, once per step: padding micro-batches (no loss token) need none."""
    if cfg.teacher_coef == 0:
        return
    for i, b in enumerate(batches):
        if b.teacher_logprobs is None and bool((b.loss_mask != 0).any()):
            raise ValueError(
                f"algorithm.teacher_coef={cfg.teacher_coef} needs teacher log-probs; micro-batch {i} has none"
            )
