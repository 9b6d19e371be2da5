"""Per-token sample ids and the step's global loss denominators: computed once, on the data side, before any split.

A sample is one model call (the reference's unit for the sequence-mean loss modes). Packed episodes carry global
``sample_ids``; batches without them (synthetic ones) count one sample per segment, made unique over the step by
each micro-batch's segment offset.
"""

from __future__ import annotations

import itertools

import torch

from cod_megatron.cod.losses import LossDenominators, compute_denominators
from cod_megatron.data.packed import PackedBatch


def segment_offsets(batches: list[PackedBatch]) -> list[int]:
    """Index of each micro-batch's first segment in the step (a running sum of ``num_segments``)."""
    return [0, *itertools.accumulate(b.num_segments for b in batches)][: len(batches)]


def sample_ids(batch: PackedBatch, offset: int = 0) -> torch.Tensor:
    """Per-token sample ids: the batch's own, or one sample per segment (``offset`` keeps them unique)."""
    return batch.sample_ids if batch.sample_ids is not None else batch.segment_ids + offset


def step_denominators(batches: list[PackedBatch]) -> LossDenominators:
    """Denominators over ``batches``: the whole step's micro-batches (all DP ranks), before any CP split."""
    offsets = segment_offsets(batches)
    return compute_denominators(
        [b.loss_mask for b in batches], [sample_ids(b, o) for b, o in zip(batches, offsets, strict=True)]
    )


def check_samples_known(loss_mask: torch.Tensor, sample_ids: torch.Tensor, denom: LossDenominators) -> None:
    """Raise unless every masked-in token's sample id is one of the step's denominators (``seq_mean_token_mean``
    would otherwise weight it by another sample's token count).

    Reads values: call it once per micro-batch on host tensors (the trainer does, before the batch moves to its
    device), never inside the loss, which the ``pg_head`` path evaluates once per chunk of rows.
    """
    if loss_mask.shape != sample_ids.shape:
        raise ValueError(f"loss_mask {tuple(loss_mask.shape)} and sample_ids {tuple(sample_ids.shape)} differ")
    ids = sample_ids.detach().cpu().long()[loss_mask.detach().cpu() != 0]
    known = denom.sample_ids.cpu()
    if ids.numel() and (known.numel() == 0 or not torch.isin(ids, known).all()):
        raise ValueError("a masked-in token's sample id is not in the step's denominators")
