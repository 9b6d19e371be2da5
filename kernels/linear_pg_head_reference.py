"""Torch reference of ``linear_pg_head``: materialised ``[T, V/TP]`` logits and plain autograd, the same callback.

The reference computes (logp, entropy) of every row through ``vocab_parallel_logprobs`` (autograd through the
logits), asks the same ``grad_fn`` for the per-token loss gradient, and returns a 0-valued surrogate
``sum_t g_logp_t logp_t + g_H_t H_t - sg(same)`` whose gradient is that loss gradient: what the fused op computes
chunk by chunk, without its chunking, Triton row pass, in-place dz or ``main_grad`` accumulation.

``token_loss_grad`` turns a loss written over whole ``[T]`` vectors (such as ``cod_megatron.cod.losses.
policy_loss``) into a ``ChunkGrad``: exact whenever the loss is a sum of per-token terms, i.e. token t's term
reads only logp_t and H_t besides detached data.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from cod_kernels.fused_linear_logprob_reference import vocab_parallel_logprobs
from cod_kernels.linear_pg_head import ChunkGrad, PGHeadOutput


def token_loss_grad(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n_tokens: int, fill: torch.Tensor | None = None
) -> ChunkGrad:
    """A ``ChunkGrad`` from ``loss_fn(logp [T], entropy [T]) -> scalar`` by ``torch.autograd.grad`` on the chunk.

    The chunk's values are placed at their rows of [T] vectors (other rows: ``fill``, default 0; with a
    token-separable loss they do not change the chunk's gradient) and differentiated with respect to the chunk's
    [c] vectors only. Costs one loss evaluation over T per chunk: cheap next to the c x V/TP GEMMs.
    """

    def grad_fn(rows: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor):
        lp_c = logp.detach().requires_grad_(True)
        en_c = entropy.detach().requires_grad_(True)
        base = torch.zeros(n_tokens, dtype=logp.dtype, device=logp.device) if fill is None else fill.detach()
        with torch.enable_grad():
            lp_full = base.index_put((rows,), lp_c)
            en_full = base.index_put((rows,), en_c)
            loss = loss_fn(lp_full, en_full)
            g_lp, g_en = torch.autograd.grad(loss, (lp_c, en_c), allow_unused=True, materialize_grads=True)
        return g_lp, g_en

    return grad_fn


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
