"""The Megatron <-> HF name and layout map of the project's Llama / Qwen2 / Qwen3 policies (the one owner).

Pure torch (no process groups): the per-layer names are the model family's
(:attr:`cod_megatron.models.decoder_family.ModelFamily.layer_names`), the layouts are megatron's. HF conversion
(:mod:`cod_megatron.policy.hf_weights`) loads with it (:func:`shard_from_hf`); the TP-gathered export
(:mod:`cod_megatron.policy.hf_export`) and weight sync's per-shard receivers reassemble with :func:`hf_from_shards`.

Mechanism: a small explicit name-and-layout mapping, not mbridge. mbridge 0.15.1 builds its own model and
TransformerConfig (TE spec, ``sequence_parallel = tp > 1``, ``hf_config.rope_theta`` that transformers 5 no longer
has), scatters from TP rank 0 and exports by broadcasting every parameter over the PP group and allocating on
``torch.cuda.current_device()``. Here the model is the one :func:`cod_megatron.policy.model.build_model` built, so
the mapping only has to know megatron's tensor layouts (:attr:`HFTarget.kind`):

* ``vocab``: ``embedding.word_embeddings`` / ``output_layer``, vocab rows split over TP (``[V/TP, H]`` per rank);
* ``qkv``: ``linear_qkv``, grouped per query group, ``[ng, (q_per_group + 2) * hd, H]`` = q heads of the group,
  then its k head, then its v head; TP splits whole groups (the layout requires ``num_query_groups % tp == 0``);
  the qwen2 bias follows the same layout;
* ``fc1``: ``linear_fc1``, per TP rank ``cat(gate_shard, up_shard)``;
* ``row``: ``linear_proj`` / ``linear_fc2``, row-parallel, split on the input dimension;
* ``replicated``: norms (incl. the qwen3 per-head q/k norms);
* layers: megatron numbers them per stage; ``TransformerLayer.layer_number`` (1-based, global) gives the HF index,
  which also covers virtual pipeline chunks.

Both the local-spec names and Transformer Engine's fused-norm names (``linear_qkv.layer_norm_weight``,
``linear_fc1.layer_norm_weight``) are mapped, so the same code serves CPU tests and the GPU (TE) trainer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from cod_megatron.config import ModelConfig
from cod_megatron.models.families import family
from cod_megatron.models.hybrid_layouts import HYBRID_KINDS, hybrid_shard, hybrid_unshard


@dataclass(frozen=True)
class HFTarget:
    """How one megatron parameter is made of HF tensors."""

    kind: str
    """vocab | qkv | fc1 | row | replicated, or a hybrid layer's (:mod:`cod_megatron.models.hybrid_layouts`)."""
    hf: tuple[str, ...]
    """HF tensor names (q/k/v for qkv, gate/up for fc1, else one)."""


_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")


def hf_targets(chunk: torch.nn.Module, cfg: ModelConfig) -> Iterator[tuple[str, torch.nn.Parameter, HFTarget]]:
    """Every parameter of one model chunk with its HF source (the per-layer names are the family's); unknown
    parameters are an error, not a skip."""
    layers, layer_names, pre = chunk.decoder.layers, family(cfg.arch).layer_names, cfg.hf_weight_prefix
    for name, param in chunk.named_parameters():
        if name == "embedding.word_embeddings.weight":
            yield name, param, HFTarget("vocab", (f"{pre}embed_tokens.weight",))
        elif name == "output_layer.weight":
            # tied: a PP>1 last stage keeps its own copy of the embedding (megatron syncs it at build time)
            src = f"{pre}embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"
            yield name, param, HFTarget("vocab", (src,))
        elif name == "decoder.final_layernorm.weight":
            yield name, param, HFTarget("replicated", (f"{pre}norm.weight",))
        elif (m := _LAYER.match(name)) and m.group(2) in layer_names:
            hf_layer = layers[int(m.group(1))].layer_number - 1
            kind, hf = layer_names[m.group(2)]
            yield name, param, HFTarget(kind, tuple(f"{pre}layers.{hf_layer}.{n}" for n in hf))
        else:
            raise KeyError(f"no HF mapping for megatron parameter {name!r}")


def carried_prefix(cfg: ModelConfig) -> str | None:
    """HF tensors outside the policy that an export copies unchanged (a vision-language checkpoint's tower)."""
    return "model.visual." if cfg.hf_weight_prefix == "model.language_model." else None


def model_chunks(model: torch.nn.Module | Iterable[torch.nn.Module]) -> list[torch.nn.Module]:
    """The bare model chunk(s) of a model or a list of virtual-pipeline chunks (DDP / Float16Module unwrapped)."""
    models = [model] if isinstance(model, torch.nn.Module) else list(model)
    chunks = []
    for m in models:
        while hasattr(m, "module"):  # DDP / Float16Module wrappers
            m = m.module
        chunks.append(m)
    return chunks


# ---- HF -> megatron ----------------------------------------------------------------------------------------------
class ShardReader(Protocol):
    """Slice access to HF tensors by name (:class:`cod_megatron.policy.hf_weights.HFSafetensors` is one)."""

    def shape(self, name: str) -> list[int]:
        """Shape without reading the data."""
        ...

    def rows(self, name: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """``tensor[start:stop]`` (rows of a matrix, entries of a vector)."""
        ...

    def cols(self, name: str, start: int, stop: int) -> torch.Tensor:
        """``tensor[:, start:stop]``."""
        ...


def shard_from_hf(t: HFTarget, reader: ShardReader, cfg: ModelConfig, rank: int, size: int) -> torch.Tensor:
    """TP rank ``rank`` of ``size``'s megatron tensor for one parameter, read slice by slice from ``reader``."""
    if t.kind in HYBRID_KINDS:
        return hybrid_shard(t.kind, t.hf, reader.rows, cfg, rank, size)
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


# ---- megatron -> HF ----------------------------------------------------------------------------------------------
def hf_from_shards(t: HFTarget, parts: list[torch.Tensor], cfg: ModelConfig) -> list[torch.Tensor]:
    """Inverse of :func:`shard_from_hf` over all TP shards (in TP order): the HF tensors named by ``t.hf``."""
    if t.kind in HYBRID_KINDS:
        return hybrid_unshard(t.kind, parts, cfg)
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
