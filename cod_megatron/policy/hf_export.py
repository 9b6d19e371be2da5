"""This rank's megatron weights as HF tensors, TP shards all-gathered: the stream weight sync buckets and the
tensors the HF checkpoint writer saves.

The names and layouts are :mod:`cod_megatron.models.hf_names`; this module adds what needs megatron's process
groups (the TP rank and size, the all-gather), so the map itself stays free of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist
from megatron.core import parallel_state

from cod_megatron.config import ModelConfig
from cod_megatron.models.hf_names import hf_from_shards, hf_targets, model_chunks


def tp_rank_and_size() -> tuple[int, int]:
    """This rank's tensor-parallel (rank, size); ``(0, 1)`` when megatron's groups are not initialised."""
    if parallel_state.model_parallel_is_initialized():
        return parallel_state.get_tensor_model_parallel_rank(), parallel_state.get_tensor_model_parallel_world_size()
    return 0, 1


def _gather_tp(shard: torch.Tensor, size: int) -> list[torch.Tensor]:
    if size == 1:
        return [shard]
    parts = [torch.empty_like(shard) for _ in range(size)]
    dist.all_gather(parts, shard.contiguous(), group=parallel_state.get_tensor_model_parallel_group())
    return parts


@torch.no_grad()
def hf_weight_stream(
    model: torch.nn.Module | Iterable[torch.nn.Module], cfg: ModelConfig, dtype: torch.dtype | None = None
) -> Iterator[tuple[str, torch.Tensor, bool]]:
    """HF tensors of this rank's pipeline stage one parameter at a time, TP shards gathered, on the parameters'
    device, each with ``True`` on the stream's final tensor: what a streamed weight sync buckets, so that no rank
    holds more than a bucket of them (the flag closes the update without a look-ahead that would hold a second one).

    Collective over the TP group: all its ranks must run the generator to the end (each parameter is one
    all-gather). A yielded tensor may be a view of a live parameter: copy it if it must outlive the next optimizer
    step. A tied last stage (PP > 1) contributes nothing: its output layer is a copy of the first stage's embedding.
    """
    _, size = tp_rank_and_size()
    todo = [
        (param, target)
        for chunk in model_chunks(model)
        for name, param, target in hf_targets(chunk, cfg)
        if not (name == "output_layer.weight" and cfg.tie_word_embeddings)
    ]
    for i, (param, target) in enumerate(todo):
        parts = _gather_tp(param.detach(), size)
        tensors = [t.to(dtype=dtype or t.dtype).contiguous() for t in hf_from_shards(target, parts, cfg)]
        del parts  # the gathered shards go before the consumer sends (an output may still alias one)
        final = i == len(todo) - 1
        for j, (hf_name, tensor) in enumerate(zip(target.hf, tensors, strict=True)):
            yield hf_name, tensor, final and j == len(tensors) - 1
        del tensors


def iter_hf_weights(
    model: torch.nn.Module | Iterable[torch.nn.Module], cfg: ModelConfig, dtype: torch.dtype | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """:func:`hf_weight_stream` without the final-tensor flag. Collective over the TP group."""
    for name, tensor, _ in hf_weight_stream(model, cfg, dtype):
        yield name, tensor


def export_hf_weights(
    model: torch.nn.Module | Iterable[torch.nn.Module], cfg: ModelConfig, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Every HF tensor of this rank's pipeline stage as CPU copies (the checkpoint writer; weight sync streams
    :func:`iter_hf_weights` instead). Collective over the TP group."""
    return {name: t.to("cpu", copy=True) for name, t in iter_hf_weights(model, cfg, dtype)}
