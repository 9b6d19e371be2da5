"""HF checkpoints <-> megatron-core for the project's Llama / Qwen2 / Qwen3 policies: loading and writing.

The name and tensor-layout map is :mod:`cod_megatron.models.hf_names` and the config map
:mod:`cod_megatron.models.hf_config` (the model families own both); the TP-gathered export of HF tensors is
:mod:`cod_megatron.policy.hf_export`, which weight sync streams too. This module does the file side. Loading
reads only this rank's slices from the safetensors files (no collective); export all-gathers TP shards and writes
one safetensors file per pipeline stage (plus an index when PP > 1), so no rank holds the whole model.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from safetensors import safe_open
from safetensors.torch import save_file

from cod_megatron.config import ModelConfig
from cod_megatron.models.families import family
from cod_megatron.models.hf_names import carried_prefix, hf_targets, model_chunks, shard_from_hf
from cod_megatron.policy.hf_export import export_hf_weights, tp_rank_and_size

logger = logging.getLogger(__name__)

_SAFETENSORS = "model.safetensors"
_INDEX = "model.safetensors.index.json"


# ---- HF -> megatron ----------------------------------------------------------------------------------------------
class HFSafetensors:
    """Lazy reader of an HF safetensors directory (single file or sharded with an index); reads slices only."""

    def __init__(self, path: str):
        index = os.path.join(path, _INDEX)
        if os.path.exists(index):
            with open(index) as f:
                weight_map: dict[str, str] = json.load(f)["weight_map"]
        elif os.path.exists(os.path.join(path, _SAFETENSORS)):
            with safe_open(os.path.join(path, _SAFETENSORS), framework="pt") as f:
                weight_map = dict.fromkeys(f.keys(), _SAFETENSORS)
        else:
            raise FileNotFoundError(f"{path} has neither {_SAFETENSORS} nor {_INDEX} (only safetensors are read)")
        self.path, self.weight_map = path, weight_map
        self._files: dict[str, Any] = {}

    def names(self) -> list[str]:
        """Every tensor name in the checkpoint."""
        return list(self.weight_map)

    def _slice(self, name: str):
        if name not in self.weight_map:
            raise KeyError(f"{name!r} is not in the HF checkpoint {self.path}")
        file = self.weight_map[name]
        if file not in self._files:
            self._files[file] = safe_open(os.path.join(self.path, file), framework="pt")
        return self._files[file].get_slice(name)

    def shape(self, name: str) -> list[int]:
        """Shape without reading the data."""
        return list(self._slice(name).get_shape())

    def rows(self, name: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """``tensor[start:stop]`` (rows of a matrix, entries of a vector)."""
        return self._slice(name)[start:stop]

    def cols(self, name: str, start: int, stop: int) -> torch.Tensor:
        """``tensor[:, start:stop]``."""
        return self._slice(name)[:, start:stop]


@torch.no_grad()
def load_hf_weights(model: torch.nn.Module | Iterable[torch.nn.Module], hf_dir: str, cfg: ModelConfig) -> None:
    """Copy HF weights into this rank's model chunk(s): its TP slice of the layers of its pipeline stage.

    Every rank reads its own slices straight from the safetensors files, so loading needs no collective. HF tensors
    that no stage uses are an error (they would mean an architecture the mapping silently drops).
    """
    reader = HFSafetensors(hf_dir)
    rank, size = tp_rank_and_size()
    used: set[str] = set()
    for chunk in model_chunks(model):
        for name, param, target in hf_targets(chunk, cfg):
            shard = shard_from_hf(target, reader, cfg, rank, size)
            if shard.shape != param.shape:
                raise ValueError(
                    f"{name}: HF {target.hf} give a shard of shape {tuple(shard.shape)}, "
                    f"megatron expects {tuple(param.shape)} (tp rank {rank}/{size})"
                )
            param.copy_(shard)
            used.update(target.hf)
    _check_all_used(reader, used, cfg)


def _check_all_used(reader: HFSafetensors, used: set[str], cfg: ModelConfig) -> None:
    if dist.is_initialized() and parallel_state.model_parallel_is_initialized():
        per_stage: list[Any] = [None] * parallel_state.get_pipeline_model_parallel_world_size()
        dist.all_gather_object(per_stage, sorted(used), group=parallel_state.get_pipeline_model_parallel_group())
        used = set().union(*per_stage)
    ignorable = {"lm_head.weight"} if cfg.tie_word_embeddings else set()  # some tied checkpoints still store it
    carried = carried_prefix(cfg) or "\0"  # a vision tower: not the policy's, copied into exports instead
    unused = [
        n
        for n in reader.names()
        if n not in used and n not in ignorable and not n.endswith("rotary_emb.inv_freq") and not n.startswith(carried)
    ]
    if unused:
        raise ValueError(f"HF tensors not used by the megatron model: {unused[:8]}{' ...' if len(unused) > 8 else ''}")


# ---- megatron -> HF ----------------------------------------------------------------------------------------------
def _entry(file: str, tensors: dict[str, torch.Tensor]) -> tuple[str, list[str], int]:
    """(file, tensor names, bytes): one file's line of the safetensors index."""
    return file, sorted(tensors), sum(t.numel() * t.element_size() for t in tensors.values())


def _carry(src: str, prefix: str, out_dir: str, file: str) -> tuple[str, list[str], int]:
    """Copy the tensors of ``src`` under ``prefix`` unchanged into ``out_dir/file``; its index entry."""
    reader = HFSafetensors(src)
    tensors = {n: reader.rows(n) for n in reader.names() if n.startswith(prefix)}
    if not tensors:
        raise ValueError(f"carry_from={src}: no {prefix}* tensors to carry")
    save_file(tensors, os.path.join(out_dir, file), metadata={"format": "pt"})
    return _entry(file, tensors)


def save_hf(
    model: torch.nn.Module | Iterable[torch.nn.Module],
    cfg: ModelConfig,
    hf_config: Any,
    out_dir: str,
    dtype: torch.dtype | None = None,
    carry_from: str | None = None,
) -> str:
    """Write a ``from_pretrained``-loadable directory: config.json and the safetensors of every stage.

    Collective over all ranks. PP=1 writes ``model.safetensors``; PP>1 writes one file per stage (by its first TP
    and DP rank) and an index. ``dtype`` (default: the parameters' dtype) is also recorded in config.json.
    ``carry_from``: the source HF checkpoint of a vision-language model; its tensors outside the policy (the vision
    tower, :func:`~cod_megatron.models.hf_names.carried_prefix`) are copied unchanged into one more file (the
    last, written by global rank 0), so the export loads as the full vision-language model.
    """
    tensors = export_hf_weights(model, cfg, dtype)
    distributed = dist.is_initialized() and parallel_state.model_parallel_is_initialized()
    pp_rank = parallel_state.get_pipeline_model_parallel_rank() if distributed else 0
    pp_size = parallel_state.get_pipeline_model_parallel_world_size() if distributed else 1
    writer = not distributed or (
        parallel_state.get_tensor_model_parallel_rank() == 0
        and parallel_state.get_data_parallel_rank(with_context_parallel=True) == 0
    )
    global_rank0 = not distributed or dist.get_rank() == 0
    prefix = carried_prefix(cfg) if carry_from else None
    files = pp_size + (prefix is not None)
    file = _SAFETENSORS if files == 1 else f"model-{pp_rank + 1:05d}-of-{files:05d}.safetensors"
    os.makedirs(out_dir, exist_ok=True)
    if writer:
        save_file(tensors, os.path.join(out_dir, file), metadata={"format": "pt"})
    if files > 1:
        entries: list[Any] = [None] * (dist.get_world_size() if distributed else 1)
        if distributed:
            dist.all_gather_object(entries, _entry(file, tensors) if writer else None)
        else:
            entries = [_entry(file, tensors)]
        if global_rank0 and prefix is not None and carry_from is not None:
            entries.append(_carry(carry_from, prefix, out_dir, f"model-{files:05d}-of-{files:05d}.safetensors"))
        if global_rank0:
            entries = [e for e in entries if e is not None]
            weight_map = {n: f for f, ns, _ in entries for n in ns}
            index = {
                "metadata": {"total_size": sum(b for _, _, b in entries)},
                "weight_map": dict(sorted(weight_map.items())),
            }
            with open(os.path.join(out_dir, _INDEX), "w") as f:
                json.dump(index, f, indent=2)
    if global_rank0:
        config = copy.deepcopy(hf_config)
        config.dtype = dtype or next(p for c in model_chunks(model) for p in c.parameters()).dtype
        config.architectures = config.architectures or [family(cfg.arch).hf_causal_lm]
        config.save_pretrained(out_dir)
        logger.info("wrote HF checkpoint %s (%d pipeline file(s))", out_dir, pp_size)
    if distributed:
        dist.barrier()
    return out_dir
