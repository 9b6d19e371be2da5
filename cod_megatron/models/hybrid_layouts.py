"""The Megatron <-> HF tensor layouts only Qwen3.5's hybrid layers have (kinds of
:class:`cod_megatron.models.hf_names.HFTarget`), both directions, TP shard by TP shard:

* ``qkv_gated``: attention's ``linear_qkv`` with the output gate, per query group ``[q heads, their gates, k, v]``;
  HF's ``q_proj`` interleaves per head ``[q_h, gate_h]``;
* ``gdn_in``: GDN's ``in_proj``, per TP rank ``[q, k, v, z, beta, alpha]`` (each section's TP slice); HF splits it
  into ``in_proj_qkv`` (q, k, v), ``in_proj_z``, ``in_proj_b``, ``in_proj_a``;
* ``gdn_conv``: ``conv1d.weight`` ``[q; k; v channels, 1, K]``, each section sliced over TP;
* ``rows``: a per-head vector (``A_log``, ``dt_bias``) split over TP;
* ``scale_minus_one``: GDN's ``out_norm``, zero-centred in megatron, a plain scale in HF (replicated).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from cod_megatron.config import ModelConfig

HYBRID_KINDS = ("qkv_gated", "gdn_in", "gdn_conv", "rows", "scale_minus_one")

Rows = Callable[[str, int, int], torch.Tensor]
"""``rows(hf_name, start, stop)``: a slice of an HF tensor's first dim."""


def _gdn_sections(cfg: ModelConfig) -> tuple[list[int], list[int]]:
    """(in_proj sections q, k, v, z, beta, alpha; conv sections q, k, v) in full (unsharded) rows."""
    qk = cfg.linear_num_key_heads * cfg.linear_key_head_dim
    v, nv = cfg.linear_num_value_heads * cfg.linear_value_head_dim, cfg.linear_num_value_heads
    return [qk, qk, v, v, nv, nv], [qk, qk, v]


def _sources(kind: str, hf: Sequence[str], cfg: ModelConfig) -> list[tuple[str, int]]:
    """Each section of a GDN tensor as (HF tensor, first row in it)."""
    sec, conv = _gdn_sections(cfg)
    if kind == "gdn_conv":
        return [(hf[0], 0), (hf[0], conv[0]), (hf[0], conv[0] + conv[1])]
    qkv, z, b, a = hf
    return [(qkv, 0), (qkv, sec[0]), (qkv, sec[0] + sec[1]), (z, 0), (b, 0), (a, 0)]


def hybrid_shard(kind: str, hf: Sequence[str], rows: Rows, cfg: ModelConfig, rank: int, size: int) -> torch.Tensor:
    """TP rank ``rank`` of ``size``'s megatron tensor for a hybrid-layer parameter."""
    if kind == "scale_minus_one":
        return rows(hf[0], 0, cfg.linear_value_head_dim) - 1.0
    if kind == "rows":
        n = cfg.linear_num_value_heads // size
        return rows(hf[0], rank * n, (rank + 1) * n)
    if kind in ("gdn_in", "gdn_conv"):
        sec = _gdn_sections(cfg)[kind == "gdn_conv"]
        parts = [
            rows(name, s0 + rank * n // size, s0 + (rank + 1) * n // size)
            for (name, s0), n in zip(_sources(kind, hf, cfg), sec, strict=True)
        ]
        return torch.cat(parts)
    if kind == "qkv_gated":
        hd, ng = cfg.head_dim, cfg.num_query_groups
        per, groups = cfg.num_attention_heads // ng, ng // size
        g0 = rank * groups
        qg = rows(hf[0], g0 * per * 2 * hd, (g0 + groups) * per * 2 * hd)
        tail = qg.shape[1:]
        q, gate = qg.reshape(groups, per, 2, hd, *tail).unbind(2)
        k, v = (rows(n, g0 * hd, (g0 + groups) * hd).reshape(groups, hd, *tail) for n in hf[1:])
        flat = [x.reshape(groups, per * hd, *tail) for x in (q, gate)]
        return torch.cat([*flat, k, v], dim=1).reshape(-1, *tail)
    raise AssertionError(kind)


def hybrid_unshard(kind: str, parts: list[torch.Tensor], cfg: ModelConfig) -> list[torch.Tensor]:
    """Inverse of :func:`hybrid_shard` over all TP shards (in TP order): the HF tensors, in ``HFTarget.hf`` order."""
    if kind == "scale_minus_one":
        return [parts[0] + 1.0]
    if kind == "rows":
        return [torch.cat(parts)]
    if kind in ("gdn_in", "gdn_conv"):
        sec = _gdn_sections(cfg)[kind == "gdn_conv"]
        local = [n // len(parts) for n in sec]
        full = [torch.cat(s) for s in zip(*(p.split(local) for p in parts), strict=True)]
        return [torch.cat(full[:3]), *full[3:]] if kind == "gdn_in" else [torch.cat(full)]
    if kind == "qkv_gated":
        hd, ng = cfg.head_dim, cfg.num_query_groups
        per = cfg.num_attention_heads // ng
        full = torch.cat(parts)
        tail = full.shape[1:]
        q, gate, k, v = full.reshape(ng, 2 * per * hd + 2 * hd, *tail).split([per * hd, per * hd, hd, hd], dim=1)
        qg = torch.stack([q.reshape(ng, per, hd, *tail), gate.reshape(ng, per, hd, *tail)], dim=2)
        return [qg.reshape(-1, *tail), k.reshape(-1, *tail), v.reshape(-1, *tail)]
    raise AssertionError(kind)
