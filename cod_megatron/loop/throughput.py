"""Per-step throughput: tokens per second of generation and training, and the trainer's model FLOPs utilisation.

MFU counts the model's own FLOPs (megatron's convention, recompute excluded): ``6 N T`` for the weights' GEMMs
forward and backward plus causal attention, ``6 L d_q sum_s len_s^2`` over the packed segments (QK^T and AV,
forward + backward, half the square being masked). The peak is the dense bf16 tensor-core rate of the GPU by name;
on a CPU, or a GPU not in the table, MFU is not reported (no made-up peak).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cod_megatron.cod.episode import Lifecycle
from cod_megatron.config import ModelConfig, ParallelLayout
from cod_megatron.data import PackedBatch

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "B200": 2250e12}
"""Dense bf16 peak per GPU (NVIDIA datasheets, SXM parts), matched against ``torch.cuda.get_device_name()``."""


def device_peak_flops() -> float | None:
    """This process's GPU peak from :data:`PEAK_BF16_FLOPS`; None on CPU or an unknown GPU."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def model_flops(model: ModelConfig, segment_lengths: Iterable[int]) -> float:
    """Forward + backward FLOPs of one optimizer step over packed segments of these lengths."""
    lengths = list(segment_lengths)
    tokens = sum(lengths)
    attention = 6 * model.num_layers * model.num_attention_heads * model.head_dim * sum(n * n for n in lengths)
    return 6.0 * model.num_parameters() * tokens + attention


def throughput_metrics(
    metrics: dict[str, float],
    *,
    generated_tokens: int,
    model: ModelConfig,
    segment_lengths: list[int],
    gpus: int,
    peak_flops: float | None,
) -> dict[str, float]:
    """``perf/...`` from a step's timings (``time/generate_s``, ``time/train_s`` in ``metrics``)."""
    out: dict[str, float] = {"perf/generated_tokens": float(generated_tokens)}
    if metrics.get("time/generate_s", 0) > 0:
        out["perf/generate_tokens_per_s"] = generated_tokens / metrics["time/generate_s"]
    train_s = metrics.get("time/train_s", 0)
    if train_s > 0 and segment_lengths:
        out["perf/train_tokens_per_s"] = sum(segment_lengths) / train_s
        flops = model_flops(model, segment_lengths)
        out["perf/model_tflops_per_gpu"] = flops / train_s / gpus / 1e12
        if peak_flops:
            out["perf/mfu"] = flops / train_s / gpus / peak_flops
    return out


def step_throughput(
    metrics: dict[str, float],
    model: ModelConfig,
    layout: ParallelLayout,
    lifecycles: list[Lifecycle],
    ranks: list[list[PackedBatch]],
) -> dict[str, float]:
    """:func:`throughput_metrics` of one CoD step: its lifecycles' generated tokens (update branches included),
    every DP rank's segments."""
    return throughput_metrics(
        metrics,
        generated_tokens=sum(e.num_generated for lc in lifecycles for e in lc.all_episodes()),
        model=model,
        segment_lengths=[n for rank in ranks for mb in rank for n in mb.cu_seqlens.diff().tolist()],
        gpus=layout.trainer_world_size,
        peak_flops=device_peak_flops(),
    )
