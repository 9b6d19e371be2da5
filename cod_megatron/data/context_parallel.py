"""Split a packed THD batch over context-parallel ranks, the way megatron-core and Transformer Engine expect.

Each segment is padded to a multiple of ``2 * cp`` and cut into ``2 * cp`` equal chunks; CP rank ``r`` keeps
chunks ``r`` and ``2 * cp - 1 - r`` (load balancing for causal attention: early chunks are cheap, late ones
expensive). Labels and loss masks are computed on the whole sequence first, so the shard's loss terms are exactly
the full sequence's terms that live on this rank.
"""

from __future__ import annotations

import dataclasses

import torch

from cod_megatron.data.packed import PackedBatch


def padded_lengths(cu_seqlens: torch.Tensor, cp: int, multiple: int = 1) -> torch.Tensor:
    """Segment lengths rounded up to a multiple of ``2 * cp * multiple`` (``multiple = tp`` with sequence parallel,
    so that every rank's share of every segment also splits evenly over TP)."""
    lengths = cu_seqlens.diff().long()
    unit = 2 * cp * multiple
    return (lengths + unit - 1) // unit * unit


def local_positions(padded_len: int, cp: int, rank: int) -> torch.Tensor:
    """Positions (inside its segment) of the tokens CP rank ``rank`` holds, in its local order."""
    chunk = padded_len // (2 * cp)
    first = torch.arange(rank * chunk, (rank + 1) * chunk)
    second = torch.arange((2 * cp - 1 - rank) * chunk, (2 * cp - rank) * chunk)
    return torch.cat([first, second])


def split_for_context_parallel(batch: PackedBatch, cp: int, rank: int, multiple: int = 1) -> PackedBatch:
    """This CP rank's shard; ``cu_seqlens`` stays global (real lengths), ``cu_seqlens_padded`` is added."""
    if cp == 1:
        return batch
    if batch.cu_seqlens_padded is not None:
        raise ValueError("batch is already a context-parallel shard")
    plens = padded_lengths(batch.cu_seqlens, cp, multiple)
    cu_padded = torch.zeros_like(batch.cu_seqlens)
    cu_padded[1:] = plens.cumsum(0).to(cu_padded.dtype)
    index, valid = [], []
    for start, length, plen in zip(
        batch.cu_seqlens[:-1].tolist(), batch.cu_seqlens.diff().tolist(), plens.tolist(), strict=True
    ):
        pos = local_positions(plen, cp, rank)
        valid.append(pos < length)
        index.append(torch.where(pos < length, start + pos, 0))
    idx, ok = torch.cat(index), torch.cat(valid)
    seg = torch.repeat_interleave(torch.arange(batch.num_segments), plens // cp)
    return dataclasses.replace(
        batch,
        tokens=torch.where(ok, batch.tokens[idx], 0),
        labels=torch.where(ok, batch.labels[idx], 0),
        loss_mask=torch.where(ok, batch.loss_mask[idx], 0.0),
        segment_ids=seg,
        cu_seqlens_padded=cu_padded,
        host_max_seqlen=None,  # the shard's own, read again from its tensors
        host_cu_seqlens=None,
        **{
            name: None if t is None else torch.where(ok, t[idx], torch.zeros((), dtype=t.dtype))
            for name, t in batch.optional_token_fields().items()
        },
    )
