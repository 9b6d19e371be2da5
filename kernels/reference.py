"""Torch references for the fused LM-head loss: materialised logits (what the trainer does today) and row chunks.

Both go through ``cod_megatron.policy.logprobs.vocab_parallel_logprobs``, so the fused kernel is checked against
the exact math of the trainer's path, TP included. They are also the benchmark's baselines.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils.checkpoint import checkpoint

from cod_megatron.policy.logprobs import vocab_parallel_logprobs


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
