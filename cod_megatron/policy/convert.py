"""HF <-> megatron-core weight conversion for the project's Llama / Qwen2 / Qwen3 policies.

Mechanism: a small explicit name-and-layout mapping, not mbridge. mbridge 0.15.1 builds its own model and
TransformerConfig (TE spec, ``sequence_parallel = tp > 1``, ``hf_config.rope_theta`` that transformers 5 no longer
has), scatters from TP rank 0 and exports by broadcasting every parameter over the PP group and allocating on
``torch.cuda.current_device()``. Here the model is the one :func:`cod_megatron.policy.model.build_model` built, so
the mapping only has to know megatron's tensor layouts:

* ``embedding.word_embeddings`` / ``output_layer``: vocab rows split over TP (``[V/TP, H]`` per rank);
* ``linear_qkv``: grouped per query group, ``[ng, (q_per_group + 2) * hd, H]`` = q heads of the group, then its
  k head, then its v head; TP splits whole groups (the layout requires ``num_query_groups % tp == 0``); the qwen2
  bias follows the same layout;
* ``linear_fc1``: per TP rank ``cat(gate_shard, up_shard)``; ``linear_proj`` / ``linear_fc2``: row-parallel, split
  on the input dimension; norms (incl. the qwen3 per-head q/k norms) replicated;
* layers: megatron numbers them per stage; ``TransformerLayer.layer_number`` (1-based, global) gives the HF index,
  which also covers virtual pipeline chunks.

Both the local-spec names and Transformer Engine's fused-norm names (``linear_qkv.layer_norm_weight``,
``linear_fc1.layer_norm_weight``) are mapped, so the same code serves CPU tests and the GPU (TE) trainer.
Loading reads only this rank's slices from the safetensors files (no collective); export all-gathers TP shards and
writes one safetensors file per pipeline stage (plus an index when PP > 1), so no rank holds the whole model.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from safetensors import safe_open
from safetensors.torch import save_file

from cod_megatron.config import ModelConfig

logger = logging.getLogger(__name__)

_ARCHS = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
_HF_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
_SAFETENSORS = "model.safetensors"
_INDEX = "model.safetensors.index.json"
# megatron's llama3 RoPE scaling hard-codes these (RotaryEmbedding._apply_scaling); other values cannot be expressed.
_MCORE_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


# ---- config ------------------------------------------------------------------------------------------------------
def _rope(hf_config: Any) -> tuple[float, float | None]:
    """(theta, llama3 scaling factor or None); transformers 5 keeps both in ``rope_parameters``."""
    params = dict(getattr(hf_config, "rope_parameters", None) or {})
    legacy = getattr(hf_config, "rope_scaling", None) or {}
    params = {**legacy, **params}
    theta = params.get("rope_theta", getattr(hf_config, "rope_theta", None))
    if theta is None:
        raise ValueError("HF config has no rope_theta (neither in rope_parameters nor at the top level)")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return float(theta), None
    if rope_type != "llama3":
        raise NotImplementedError(f"RoPE type {rope_type!r} has no megatron-core equivalent here (only llama3)")
    for key, want in _MCORE_LLAMA3_ROPE.items():
        if key in params and float(params[key]) != want:
            raise NotImplementedError(f"llama3 RoPE {key}={params[key]}: megatron-core fixes it at {want}")
    return float(theta), float(params["factor"])


def model_config_from_hf(hf_config: Any, *, params_dtype: str = "float32") -> ModelConfig:
    """The :class:`ModelConfig` of an HF Llama / Qwen2 / Qwen3 config; rejects features the policy cannot express.

    ``params_dtype`` is the megatron parameter dtype (float32 on CPU); the HF checkpoint's dtype does not decide it.
    """
    model_type = getattr(hf_config, "model_type", None)
    if model_type not in _ARCHS:
        raise NotImplementedError(f"HF model_type {model_type!r} is not supported (llama, qwen2, qwen3)")
    arch = _ARCHS[model_type]
    act = getattr(hf_config, "hidden_act", "silu")
    if act != "silu":
        raise NotImplementedError(f"hidden_act {act!r}: the policy's SwiGLU uses silu")
    if getattr(hf_config, "mlp_bias", False):
        raise NotImplementedError("mlp_bias=True is not supported (megatron config has add_bias_linear=False)")
    if arch != "qwen2" and getattr(hf_config, "attention_bias", False):
        raise NotImplementedError(f"attention_bias=True is not supported for {arch} (it also adds an o_proj bias)")
    layer_types = getattr(hf_config, "layer_types", None) or []
    if getattr(hf_config, "use_sliding_window", False) or any(t != "full_attention" for t in layer_types):
        raise NotImplementedError("sliding-window attention layers are not supported")
    theta, factor = _rope(hf_config)
    heads = hf_config.num_attention_heads
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // heads
    return ModelConfig(
        arch=arch,
        num_layers=hf_config.num_hidden_layers,
        hidden_size=hf_config.hidden_size,
        ffn_hidden_size=hf_config.intermediate_size,
        num_attention_heads=heads,
        num_query_groups=getattr(hf_config, "num_key_value_heads", None) or heads,
        kv_channels=head_dim,
        vocab_size=hf_config.vocab_size,
        max_position_embeddings=hf_config.max_position_embeddings,
        rope_theta=theta,
        rope_scaling_factor=factor,
        norm_epsilon=hf_config.rms_norm_eps,
        tie_word_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
        params_dtype=params_dtype,
    )


def hf_config_from_model(cfg: ModelConfig) -> Any:
    """The HF config of a :class:`ModelConfig` (inverse of :func:`model_config_from_hf`).

    The embedded rollout engine builds its transformers model from it, so trainer and engine share one shape.
    """
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": float(cfg.rope_theta)}
    if cfg.rope_scaling_factor is not None:
        rope = {"rope_type": "llama3", "rope_theta": float(cfg.rope_theta), "factor": cfg.rope_scaling_factor}
        rope |= _MCORE_LLAMA3_ROPE
    common: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.ffn_hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_query_groups,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.norm_epsilon,
        tie_word_embeddings=cfg.tie_word_embeddings,
        rope_parameters=rope,
        dtype=cfg.params_dtype,
        architectures=[_HF_CLASSES[cfg.arch]],
    )
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[cfg.arch]
    return cls(**common)


# ---- the mapping -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    """How one megatron parameter is made of HF tensors."""

    kind: str
    """vocab | qkv | fc1 | row | replicated."""
    hf: tuple[str, ...]
    """HF tensor names (q/k/v for qkv, gate/up for fc1, else one)."""


_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
_LAYER_MAP: dict[str, tuple[str, tuple[str, ...]]] = {
    "input_layernorm.weight": ("replicated", ("input_layernorm.weight",)),
    "self_attention.linear_qkv.layer_norm_weight": ("replicated", ("input_layernorm.weight",)),  # TE fused norm
    "self_attention.linear_qkv.weight": (
        "qkv",
        ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    ),
    "self_attention.linear_qkv.bias": (
        "qkv",
        ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
    ),
    "self_attention.q_layernorm.weight": ("replicated", ("self_attn.q_norm.weight",)),
    "self_attention.k_layernorm.weight": ("replicated", ("self_attn.k_norm.weight",)),
    "self_attention.linear_proj.weight": ("row", ("self_attn.o_proj.weight",)),
    "pre_mlp_layernorm.weight": ("replicated", ("post_attention_layernorm.weight",)),
    "mlp.linear_fc1.layer_norm_weight": ("replicated", ("post_attention_layernorm.weight",)),  # TE fused norm
    "mlp.linear_fc1.weight": ("fc1", ("mlp.gate_proj.weight", "mlp.up_proj.weight")),
    "mlp.linear_fc2.weight": ("row", ("mlp.down_proj.weight",)),
}


def _targets(chunk: torch.nn.Module, cfg: ModelConfig) -> Iterator[tuple[str, torch.nn.Parameter, _Target]]:
    """Every parameter of one model chunk with its HF source; unknown parameters are an error, not a skip."""
    layers = chunk.decoder.layers
    for name, param in chunk.named_parameters():
        if name == "embedding.word_embeddings.weight":
            yield name, param, _Target("vocab", ("model.embed_tokens.weight",))
        elif name == "output_layer.weight":
            # tied: a PP>1 last stage keeps its own copy of the embedding (megatron syncs it at build time)
            src = "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"
            yield name, param, _Target("vocab", (src,))
        elif name == "decoder.final_layernorm.weight":
            yield name, param, _Target("replicated", ("model.norm.weight",))
        elif (m := _LAYER.match(name)) and m.group(2) in _LAYER_MAP:
            hf_layer = layers[int(m.group(1))].layer_number - 1
            kind, hf = _LAYER_MAP[m.group(2)]
            yield name, param, _Target(kind, tuple(f"model.layers.{hf_layer}.{n}" for n in hf))
        else:
            raise KeyError(f"no HF mapping for megatron parameter {name!r}")


def _tp() -> tuple[int, int]:
    if parallel_state.model_parallel_is_initialized():
        return parallel_state.get_tensor_model_parallel_rank(), parallel_state.get_tensor_model_parallel_world_size()
    return 0, 1


def _chunks(model: torch.nn.Module | Iterable[torch.nn.Module]) -> list[torch.nn.Module]:
    models = [model] if isinstance(model, torch.nn.Module) else list(model)
    chunks = []
    for m in models:
        while hasattr(m, "module"):  # DDP / Float16Module wrappers
            m = m.module
        chunks.append(m)
    return chunks


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


def _shard_from_hf(t: _Target, reader: HFSafetensors, cfg: ModelConfig, rank: int, size: int) -> torch.Tensor:
    """This TP rank's megatron tensor for one parameter."""
    if t.kind == "replicated":
        return reader.rows(t.hf[0])
    if t.kind == "vocab":
        rows = _split(reader.shape(t.hf[0])[0], size, t.hf[0])
        return reader.rows(t.hf[0], rank * rows, (rank + 1) * rows)
    if t.kind == "row":
        cols = _split(reader.shape(t.hf[0])[1], size, t.hf[0])
        return reader.cols(t.hf[0], rank * cols, (rank + 1) * cols)
    if t.kind == "fc1":
        rows = _split(reader.shape(t.hf[0])[0], size, t.hf[0])
        return torch.cat([reader.rows(n, rank * rows, (rank + 1) * rows) for n in t.hf])
    if t.kind == "qkv":
        hd, ng = cfg.head_dim, cfg.num_query_groups
        groups = _split(ng, size, "num_query_groups")
        q_rows = cfg.num_attention_heads // ng * hd
        g0 = rank * groups
        q = reader.rows(t.hf[0], g0 * q_rows, (g0 + groups) * q_rows)
        k, v = (reader.rows(n, g0 * hd, (g0 + groups) * hd) for n in t.hf[1:])
        tail = q.shape[1:]
        parts = [q.reshape(groups, q_rows, *tail), k.reshape(groups, hd, *tail), v.reshape(groups, hd, *tail)]
        return torch.cat(parts, dim=1).reshape(groups * (q_rows + 2 * hd), *tail)
    raise AssertionError(t.kind)


def _split(n: int, size: int, what: str) -> int:
    if n % size:
        raise ValueError(f"{what}: {n} is not divisible by tensor-parallel size {size}")
    return n // size


@torch.no_grad()
def load_hf_weights(model: torch.nn.Module | Iterable[torch.nn.Module], hf_dir: str, cfg: ModelConfig) -> None:
    """Copy HF weights into this rank's model chunk(s): its TP slice of the layers of its pipeline stage.

    Every rank reads its own slices straight from the safetensors files, so loading needs no collective. HF tensors
    that no stage uses are an error (they would mean an architecture the mapping silently drops).
    """
    reader = HFSafetensors(hf_dir)
    rank, size = _tp()
    used: set[str] = set()
    for chunk in _chunks(model):
        for name, param, target in _targets(chunk, cfg):
            shard = _shard_from_hf(target, reader, cfg, rank, size)
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
    unused = [
        n for n in reader.names() if n not in used and n not in ignorable and not n.endswith("rotary_emb.inv_freq")
    ]
    if unused:
        raise ValueError(f"HF tensors not used by the megatron model: {unused[:8]}{' ...' if len(unused) > 8 else ''}")


# ---- megatron -> HF ----------------------------------------------------------------------------------------------
def _gather_tp(shard: torch.Tensor, size: int) -> list[torch.Tensor]:
    if size == 1:
        return [shard]
    parts = [torch.empty_like(shard) for _ in range(size)]
    dist.all_gather(parts, shard.contiguous(), group=parallel_state.get_tensor_model_parallel_group())
    return parts


def _hf_from_shards(t: _Target, parts: list[torch.Tensor], cfg: ModelConfig) -> list[torch.Tensor]:
    """Inverse of :func:`_shard_from_hf` over all TP shards: the HF tensors named by ``t.hf``."""
    if t.kind == "replicated":
        return [parts[0]]
    if t.kind == "vocab":
        return [torch.cat(parts)]
    if t.kind == "row":
        return [torch.cat(parts, dim=1)]
    if t.kind == "fc1":
        halves = [p.chunk(2) for p in parts]
        return [torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves])]
    if t.kind == "qkv":
        hd, ng = cfg.head_dim, cfg.num_query_groups
        q_rows = cfg.num_attention_heads // ng * hd
        full = torch.cat(parts)  # TP shards hold consecutive groups
        tail = full.shape[1:]
        q, k, v = full.reshape(ng, q_rows + 2 * hd, *tail).split([q_rows, hd, hd], dim=1)
        return [x.reshape(-1, *tail) for x in (q, k, v)]
    raise AssertionError(t.kind)


@torch.no_grad()
def export_hf_weights(
    model: torch.nn.Module | Iterable[torch.nn.Module], cfg: ModelConfig, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """HF tensors of this rank's pipeline stage, TP shards gathered (every TP rank gets them), on CPU.

    Collective over the TP group: all its ranks must call it. A tied last stage (PP > 1) contributes nothing: its
    output layer is a copy of the first stage's embedding.
    """
    _, size = _tp()
    out: dict[str, torch.Tensor] = {}
    for chunk in _chunks(model):
        for name, param, target in _targets(chunk, cfg):
            if name == "output_layer.weight" and cfg.tie_word_embeddings:
                continue
            parts = _gather_tp(param.detach(), size)
            for hf_name, tensor in zip(target.hf, _hf_from_shards(target, parts, cfg), strict=True):
                out[hf_name] = tensor.to("cpu", dtype=dtype or tensor.dtype).contiguous().clone()
    return out


def save_hf(
    model: torch.nn.Module | Iterable[torch.nn.Module],
    cfg: ModelConfig,
    hf_config: Any,
    out_dir: str,
    dtype: torch.dtype | None = None,
) -> str:
    """Write a ``from_pretrained``-loadable directory: config.json and the safetensors of every stage.

    Collective over all ranks. PP=1 writes ``model.safetensors``; PP>1 writes one file per stage (by its first TP
    and DP rank) and an index. ``dtype`` (default: the parameters' dtype) is also recorded in config.json.
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
    file = _SAFETENSORS if pp_size == 1 else f"model-{pp_rank + 1:05d}-of-{pp_size:05d}.safetensors"
    os.makedirs(out_dir, exist_ok=True)
    if writer:
        save_file(tensors, os.path.join(out_dir, file), metadata={"format": "pt"})
    if pp_size > 1:
        entries: list[Any] = [None] * dist.get_world_size()
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        dist.all_gather_object(entries, (file, sorted(tensors), nbytes) if writer else None)
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
        config.dtype = dtype or next(p for c in _chunks(model) for p in c.parameters()).dtype
        config.architectures = config.architectures or [_HF_CLASSES[cfg.arch]]
        config.save_pretrained(out_dir)
        logger.info("wrote HF checkpoint %s (%d pipeline file(s))", out_dir, pp_size)
    if distributed:
        dist.barrier()
    return out_dir
