"""Torch references of ``fused_linear_logprob``: vocab-parallel log-probs and entropy from logits, and the LM head
with materialised logits (what the trainer does without the kernel) or in row chunks.

Each tensor-parallel rank holds logits for its vocab slice ``[start, start + V/TP)``. Per row only three numbers
cross ranks: the max, the sum of exp and the target logit (and, for entropy, sum p*z); the full vocabulary is
never gathered. The backward needs no communication: softmax probabilities of the local slice are enough.

    logZ = m + log sum_v exp(z_v - m)          log p(y) = z_y - logZ
    H = logZ - sum_v p_v z_v                   dlogp/dz_v = 1[v=y] - p_v     dH/dz_v = -p_v (z_v - logZ + H)

``vocab_parallel_logprobs`` is the trainer's reference path (``cod_megatron.policy.logprobs``) and the math the
Triton kernel is checked against, TP included; the two LM-head functions are also the benchmark's baselines.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils.checkpoint import checkpoint


class _VocabParallelLogProbEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, vocab_start: int, group):
        z = logits.float()
        m = z.max(dim=-1).values
        if group is not None:
            dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
        e = torch.exp(z - m.unsqueeze(-1))
        local = targets - vocab_start
        in_shard = (local >= 0) & (local < z.shape[-1])
        idx = local.clamp(0, z.shape[-1] - 1)
        z_target = torch.where(in_shard, z.gather(-1, idx.unsqueeze(-1)).squeeze(-1), torch.zeros_like(m))
        sums = torch.stack([e.sum(-1), (e * z).sum(-1), z_target])
        if group is not None:
            dist.all_reduce(sums, group=group)
        sum_e, sum_ez, z_y = sums
        log_z = m + torch.log(sum_e)
        logp = z_y - log_z
        entropy = log_z - sum_ez / sum_e
        p = e / sum_e.unsqueeze(-1)
        ctx.save_for_backward(z, p, log_z, entropy, idx, in_shard)
        ctx.in_dtype = logits.dtype
        return logp, entropy

    @staticmethod
    def backward(ctx, g_logp: torch.Tensor, g_entropy: torch.Tensor):
        z, p, log_z, entropy, idx, in_shard = ctx.saved_tensors
        grad = torch.zeros_like(p)
        if g_logp is not None:
            grad -= g_logp.unsqueeze(-1) * p
            onehot = torch.zeros_like(p).scatter_(-1, idx.unsqueeze(-1), in_shard.unsqueeze(-1).to(p.dtype))
            grad += g_logp.unsqueeze(-1) * onehot
        if g_entropy is not None:
            grad -= g_entropy.unsqueeze(-1) * p * (z - log_z.unsqueeze(-1) + entropy.unsqueeze(-1))
        return grad.to(ctx.in_dtype), None, None, None


def vocab_parallel_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, *, vocab_start: int = 0, group=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``targets`` and entropy, both float32 with the shape of ``targets``.

    ``logits``: ``[..., V/TP]`` this rank's vocab slice starting at global id ``vocab_start``; ``targets``: global
    ids. ``group``: the tensor-parallel process group (None for TP=1).
    """
    if group is not None and dist.get_world_size(group) == 1:
        group = None
    return _VocabParallelLogProbEntropy.apply(logits, targets, vocab_start, group)


def _zero_outside(mask: torch.Tensor | None, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The fused kernel's convention: rows outside the mask are 0 (and so get no gradient)."""
    if mask is None:
        return xs
    keep = mask != 0
    return tuple(torch.where(keep, x, torch.zeros_like(x)) for x in xs)


def materialized_linear_logprob(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    vocab_start: int = 0,
    group: dist.ProcessGroup | None = None,
    upcast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logp, entropy)`` from the full ``[T, V/TP]`` logits; ``upcast`` does the GEMM in fp32 (the test oracle)."""
    if upcast:
        hidden, weight = hidden.float(), weight.float()
    logits = hidden @ weight.T
    logp, ent = vocab_parallel_logprobs(logits, labels, vocab_start=vocab_start, group=group)
    return _zero_outside(mask, logp, ent)


def chunked_linear_logprob(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    vocab_start: int = 0,
    group: dist.ProcessGroup | None = None,
    chunk_rows: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same values with at most ``chunk_rows`` rows of logits alive (checkpointed chunks, recomputed in backward).

    The common pure-torch way to bound the memory; the baseline the Triton kernel has to beat on time.
    """
    h_all, lab = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    rows = torch.arange(lab.numel(), device=lab.device) if mask is None else (mask.reshape(-1) != 0).nonzero()[:, 0]
    logp = torch.zeros(lab.numel(), dtype=torch.float32, device=lab.device)
    ent = torch.zeros_like(logp)

    def _chunk(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return vocab_parallel_logprobs(h @ w.T, y, vocab_start=vocab_start, group=group)

    parts_lp, parts_en = [], []
    for start in range(0, rows.numel(), chunk_rows):
        r = rows[start : start + chunk_rows]
        lp, en = checkpoint(_chunk, h_all.index_select(0, r), weight, lab.index_select(0, r), use_reentrant=False)
        parts_lp.append(lp)
        parts_en.append(en)
    if parts_lp:
        logp = logp.index_put((rows,), torch.cat(parts_lp))
        ent = ent.index_put((rows,), torch.cat(parts_en))
    return logp.view(labels.shape), ent.view(labels.shape)
