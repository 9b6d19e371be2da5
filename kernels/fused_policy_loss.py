"""The CoD policy loss of a packed micro-batch straight from the final hidden states (no logits tensor).

The fused kernel gives per-token log-probs and entropy (the memory-heavy part); the unchanged torch loss
(``cod_megatron.policy.loss.packed_policy_loss``) runs on those [T] vectors, so REC / IS / PPO, TIS, KL, entropy
and the megatron scaling chain are the trainer's own, by construction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from cod_kernels.fused_linear_logprob import KernelConfig, fused_linear_logprob
from cod_kernels.fused_linear_logprob_reference import materialized_linear_logprob
from cod_megatron.cod.losses import LossDenominators
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data import PackedBatch
from cod_megatron.policy.loss import packed_policy_loss


def _loss_from(
    logprob_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    hidden: torch.Tensor,
    weight: torch.Tensor,
    batch: PackedBatch,
    denom: LossDenominators,
    cfg: AlgorithmConfig,
    sample_offset: int,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Shared body: log-probs of the loss tokens, then the trainer's loss on them."""
    h = hidden.reshape(-1, hidden.shape[-1])  # megatron's decoder gives [T, 1, H] for a packed THD row
    if h.shape[0] != batch.num_tokens:
        raise ValueError(f"hidden has {h.shape[0]} rows, the batch {batch.num_tokens} tokens")
    logp, ent = logprob_fn(h, weight, batch.labels, batch.loss_mask != 0, **kwargs)
    if cfg.entropy_coef == 0:
        ent = ent.detach()  # only a metric then: the backward skips the entropy term
    return packed_policy_loss(logp, ent, batch, denom, cfg, sample_offset)


def fused_packed_policy_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    batch: PackedBatch,
    denom: LossDenominators,
    cfg: AlgorithmConfig,
    sample_offset: int = 0,
    *,
    vocab_start: int = 0,
    group: dist.ProcessGroup | None = None,
    reduce_hidden_grad: bool = False,
    config: KernelConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``packed_policy_loss`` from ``hidden [T, H]`` (or ``[T, 1, H]``) and the output-layer shard ``weight``.

    Same ``(loss, num_tokens, metrics)`` contract; TP arguments as :func:`fused_linear_logprob`.
    """
    return _loss_from(
        fused_linear_logprob,
        hidden,
        weight,
        batch,
        denom,
        cfg,
        sample_offset,
        vocab_start=vocab_start,
        group=group,
        reduce_hidden_grad=reduce_hidden_grad,
        config=config,
    )


def reference_packed_policy_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    batch: PackedBatch,
    denom: LossDenominators,
    cfg: AlgorithmConfig,
    sample_offset: int = 0,
    *,
    vocab_start: int = 0,
    group: dist.ProcessGroup | None = None,
    upcast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The trainer's path today (materialised logits, then the loss): the oracle for the fused one."""
    return _loss_from(
        materialized_linear_logprob,
        hidden,
        weight,
        batch,
        denom,
        cfg,
        sample_offset,
        vocab_start=vocab_start,
        group=group,
        upcast=upcast,
    )
