"""This rank's share of the step's packed micro-batches, shaped for the pipeline schedule that will run them."""

from __future__ import annotations

from megatron.core import parallel_state

from cod_megatron.config import ParallelLayout
from cod_megatron.data import PackedBatch, pad_to_length, pad_to_multiple, padding_batch
from cod_megatron.data.context_parallel import split_for_context_parallel


def local_share(batch: PackedBatch, layout: ParallelLayout) -> PackedBatch:
    """The part of a micro-batch this rank runs: its CP share (load-balanced), padded to a TP multiple under SP."""
    sp_multiple = layout.tp if layout.sequence_parallel else 1
    if layout.cp > 1:
        return split_for_context_parallel(batch, layout.cp, parallel_state.get_context_parallel_rank(), sp_multiple)
    return pad_to_multiple(batch, sp_multiple)


def fixed_shape_microbatches(
    items: list[tuple[PackedBatch, int]], pp: int
) -> tuple[list[tuple[PackedBatch, int]], int]:
    """``(batch, segment offset)`` pairs for the interleaved (VPP) schedule, and their common length.

    megatron-core's interleaved schedule needs a micro-batch count that is a multiple of pp, and we run it with
    one activation shape: its ``variable_seq_lengths`` shape exchange posts a stage's sends to prev and next in one
    batch, and with pp = 2 (prev = next) the peer pairs them the other way round (seen on gloo: a micro-batch
    received with another's length). So every micro-batch is padded to the longest, and all-padding micro-batches
    fill the last group. Padding is its own segment with no loss tokens: the loss and gradients do not change.
    """
    length = max(b.num_tokens for b, _ in items)
    free_offset = max(o + b.num_segments for b, o in items)  # filler sample ids collide with no real one
    padded = [(pad_to_length(b, length), o) for b, o in items]
    count = max(pp, -(-len(items) // pp) * pp)
    return padded + [(padding_batch(length), free_offset)] * (count - len(items)), length
