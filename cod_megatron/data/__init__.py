"""Sequence packing: episodes -> THD micro-batches with per-segment advantages (pure torch, no megatron)."""

from cod_megatron.data.packed import (
    PackedBatch,
    concat_packed,
    pack_segments,
    pad_to_length,
    pad_to_multiple,
    padding_batch,
    synthetic_packed_batch,
)
from cod_megatron.data.planner import MicroBatchPlan, plan_micro_batches

__all__ = [
    "MicroBatchPlan",
    "plan_micro_batches",
    "PackedBatch",
    "concat_packed",
    "pack_segments",
    "pad_to_length",
    "pad_to_multiple",
    "padding_batch",
    "synthetic_packed_batch",
]
