"""Per-token log-probabilities of the targets and entropy from vocab-parallel logits (the reference path).

Each tensor-parallel rank holds logits for its vocab slice ``[start, start + V/TP)``. Per row only three numbers
cross ranks: the max, the sum of exp and the target logit (and, for entropy, sum p*z); the full vocabulary is
never gathered. The backward needs no communication: softmax probabilities of the local slice are enough.

    logZ = m + log sum_v exp(z_v - m)          log p(y) = z_y - logZ
    H = logZ - sum_v p_v z_v                   dlogp/dz_v = 1[v=y] - p_v     dH/dz_v = -p_v (z_v - logZ + H)

The Triton kernel in ``kernels/`` is checked against this function.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


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


def tp_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`vocab_parallel_logprobs` with the vocab slice and group of megatron's tensor-parallel state."""
    from megatron.core import parallel_state

    rank = parallel_state.get_tensor_model_parallel_rank()
    return vocab_parallel_logprobs(
        logits, targets, vocab_start=rank * logits.shape[-1], group=parallel_state.get_tensor_model_parallel_group()
    )
