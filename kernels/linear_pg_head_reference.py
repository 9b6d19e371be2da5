"""Torch reference of ``linear_pg_head``: materialised ``[T, V/TP]`` logits and plain autograd, the same callback.

The reference computes (logp, entropy) of every row through ``vocab_parallel_logprobs`` (autograd through the
logits), asks the same ``grad_fn`` for the per-token loss gradient, and returns a 0-valued surrogate
``sum_t g_logp_t logp_t + g_H_t H_t - sg(same)`` whose gradient is that loss gradient: what the fused op computes
chunk by chunk, without its chunking, Triton row pass, in-place dz or ``main_grad`` accumulation.

"""

from __future__ import annotations

import torch
import torch.distributed as dist

from cod_kernels.fused_linear_logprob_reference import vocab_parallel_logprobs
from cod_kernels.linear_pg_head import ChunkGrad, PGHeadOutput


def linear_pg_head_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    rows: torch.Tensor | None = None,
    grad_fn: ChunkGrad,
    vocab_start: int = 0,
    group: dist.ProcessGroup | None = None,
) -> PGHeadOutput:
    """``(logp, entropy, surrogate)`` as ``linear_pg_head``, from the full logits; ``rows`` None: every row."""
    h_all, y_all = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    rows = torch.arange(y_all.numel(), device=y_all.device) if rows is None else rows
    logits = h_all.index_select(0, rows) @ weight.T
    lp_r, en_r = vocab_parallel_logprobs(logits, y_all.index_select(0, rows), vocab_start=vocab_start, group=group)
    g_lp, g_en = grad_fn(rows, lp_r.detach(), en_r.detach())
    linear = (g_lp.detach() * lp_r).sum()
    if g_en is not None:
        linear = linear + (g_en.detach() * en_r).sum()
    zeros = torch.zeros(y_all.numel(), dtype=torch.float32, device=y_all.device)
    logp = zeros.index_put((rows,), lp_r.detach()).view(labels.shape)
    entropy = zeros.index_put((rows,), en_r.detach()).view(labels.shape)
    return PGHeadOutput(logp, entropy, linear - linear.detach())
