"""Helpers for the model-parallel equality tests: a tiny recipe, fixed batches, grads under global names."""

from __future__ import annotations

import dataclasses
import re

import torch
from megatron.core import parallel_state

from cod_megatron.config import RunConfig
from cod_megatron.data import PackedBatch, synthetic_packed_batch
from cod_megatron.infra.cli import resolve_recipe


def tiny_cfg(*overrides: str) -> RunConfig:
    """debug_cpu with the overrides, resolved and validated as the command line does (``model.hf_path`` too)."""
    cfg, _ = resolve_recipe("debug_cpu", ["optimizer.lr=1e-2", "optimizer.clip_grad=0.0", *overrides])
    return cfg


def batches(vocab: int, n: int = 4) -> list[PackedBatch]:
    """n packed micro-batches, each with 3 segments of different lengths."""
    return [
        synthetic_packed_batch(seed=100 + i, n_segments=3, vocab_size=vocab, min_len=5, max_len=19) for i in range(n)
    ]


def with_token_values(batch: PackedBatch, seed: int, *, terms: bool = True) -> PackedBatch:
    """``batch`` with per-token advantage terms (unless ``terms`` is False) and teacher log-probs on its loss tokens
    (0 elsewhere, as packing leaves them): the inputs of ``cod_megatron.cod.token_advantages``."""
    g = torch.Generator().manual_seed(seed)
    mask, n = batch.loss_mask, batch.num_tokens
    return dataclasses.replace(
        batch,
        token_advantage_terms=torch.randn(n, generator=g) * mask if terms else None,
        teacher_logprobs=(-1.0 - 3.0 * torch.rand(n, generator=g)) * mask,
    )


def token_batches(vocab: int, n: int = 4) -> list[PackedBatch]:
    """:func:`batches` with teacher log-probs on every micro-batch and per-token advantage terms on every other one
    (a micro-batch without them joins others as zeros, as padding does)."""
    return [with_token_values(b, seed=200 + i, terms=i % 2 == 0) for i, b in enumerate(batches(vocab, n))]


def local_grads(trainer) -> dict[str, torch.Tensor]:
    """This rank's main grads keyed by the name they would have in a TP=1/PP=1 model (global layer numbers)."""
    layers = trainer.cfg.model.num_layers
    stage, stages = (
        parallel_state.get_pipeline_model_parallel_rank(),
        parallel_state.get_pipeline_model_parallel_world_size(),
    )
    offset = stage * layers // stages
    out = {}
    for name, p in trainer.model[0].module.named_parameters():
        name = re.sub(r"layers\.(\d+)\.", lambda m: f"layers.{int(m.group(1)) + offset}.", name)
        out[name] = p.main_grad.detach().clone()
    return out


def assemble_tp(shards: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Full grads from the TP ranks' shards (in TP-rank order)."""
    if len(shards) == 1:
        return shards[0]
    full = {}
    for name in shards[0]:
        parts = [s[name] for s in shards]
        if "linear_fc1.weight" in name:  # each shard is [gate_r; up_r]
            halves = [p.chunk(2, dim=0) for p in parts]
            full[name] = torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)
        elif any(k in name for k in ("linear_qkv", "word_embeddings", "output_layer")):
            full[name] = torch.cat(parts, dim=0)
        elif any(k in name for k in ("linear_proj.weight", "linear_fc2.weight")):
            full[name] = torch.cat(parts, dim=1)
        else:  # replicated (norms): every rank must agree
            for p in parts[1:]:
                torch.testing.assert_close(p, parts[0], rtol=0, atol=1e-6)
            full[name] = parts[0]
    return full
