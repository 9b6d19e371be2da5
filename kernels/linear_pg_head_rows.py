"""The two row passes of ``linear_pg_head`` over a chunk's fp32 logits block ``z`` [c, V/TP]: statistics (max,
sum-exp, entropy sum, target logit) and the in-place logits gradient, as Triton kernels (GPU; CPU tests under the
interpreter) or as the same math in torch ops (``TORCH_ROW_PASS``: the trainer's CPU path). See
``linear_pg_head``'s module docstring for the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import triton
import triton.language as tl


@dataclass(frozen=True)
class RowPassConfig:
    """Tile of the Triton row pass: ``block_rows`` rows x ``block_vocab`` columns per step (memory-bound pass).

    ``backend="torch"`` runs the same two passes as torch ops instead (``_row_stats_torch``, ``_row_grad_torch_``):
    the trainer's path on CPU, where the Triton interpreter costs Python time per program; one more [c, V/TP] fp32
    block alive than the kernels."""

    block_rows: int = 1
    block_vocab: int = 2048
    num_warps: int = 8
    backend: Literal["triton", "torch"] = "triton"


CPU_ROW_PASS = RowPassConfig(block_rows=16, block_vocab=64, num_warps=1)
"""Interpreter sizes: few programs (each costs Python time), small tiles (the kernels' CPU tests)."""

TORCH_ROW_PASS = RowPassConfig(backend="torch")
"""The row passes as torch ops: CPU training runs (no interpreter needed)."""


@triton.jit
def _row_stats_kernel(z_ptr, y_ptr, out_ptr, n_rows, n_vocab, stride_z, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr):
    """Per row: max m, s = sum exp(z - m), u = sum exp(z - m)(z - m) (relative to the running max: no cancellation
    at large logits), z_y (0 when the label is on another shard). ``out`` is [4, n_rows]."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    r64 = rows.to(tl.int64)
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    m = tl.zeros([BLOCK_R], dtype=tl.float32) - float("inf")
    s = tl.zeros([BLOCK_R], dtype=tl.float32)
    u = tl.zeros([BLOCK_R], dtype=tl.float32)
    zy = tl.zeros([BLOCK_R], dtype=tl.float32)
    for v0 in range(0, n_vocab, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        ok = row_ok[:, None] & (cols < n_vocab)[None, :]
        z = tl.load(z_ptr + r64[:, None] * stride_z + cols[None, :], mask=ok, other=float("-inf"))
        m_new = tl.maximum(m, tl.max(z, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # padded rows stay finite
        alpha = tl.exp(m - m_safe)
        e = tl.exp(z - m_safe[:, None])
        d = tl.where(ok, z - m_safe[:, None], 0.0)
        u = alpha * (u + s * (tl.where(s > 0.0, m, m_safe) - m_safe)) + tl.sum(e * d, axis=1)
        s = s * alpha + tl.sum(e, axis=1)
        zy += tl.sum(tl.where(ok & (cols[None, :] == y[:, None]), z, 0.0), axis=1)
        m = m_new
    tl.store(out_ptr + rows, m, mask=row_ok)
    tl.store(out_ptr + n_rows + rows, s, mask=row_ok)
    tl.store(out_ptr + 2 * n_rows + rows, u, mask=row_ok)
    tl.store(out_ptr + 3 * n_rows + rows, zy, mask=row_ok)


@triton.jit
def _row_grad_kernel(
    z_ptr,
    y_ptr,
    lse_ptr,
    ent_ptr,
    g_lp_ptr,
    g_ent_ptr,
    n_rows,
    n_vocab,
    stride_z,
    BLOCK_R: tl.constexpr,
    BLOCK_V: tl.constexpr,
    HAS_ENT: tl.constexpr,
):
    """Overwrites each logit z_v with dz_v (each element is read once, then written: in place is safe)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    r64 = rows.to(tl.int64)
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    g = tl.load(g_lp_ptr + rows, mask=row_ok, other=0.0)
    if HAS_ENT:
        ent = tl.load(ent_ptr + rows, mask=row_ok, other=0.0)
        g_ent = tl.load(g_ent_ptr + rows, mask=row_ok, other=0.0)
    for v0 in range(0, n_vocab, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        ok = row_ok[:, None] & (cols < n_vocab)[None, :]
        ptrs = z_ptr + r64[:, None] * stride_z + cols[None, :]
        logp = tl.load(ptrs, mask=ok, other=0.0) - lse[:, None]
        p = tl.exp(logp)
        coef = g[:, None] + tl.zeros([BLOCK_R, BLOCK_V], dtype=tl.float32)
        if HAS_ENT:
            coef += g_ent[:, None] * (logp + ent[:, None])
        dz = tl.where(cols[None, :] == y[:, None], g[:, None], 0.0) - p * coef
        tl.store(ptrs, dz, mask=ok)


def _row_stats_torch(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``_row_stats_kernel`` as torch ops: ``(m, s, u, z_y)`` [4, c], ``z_y`` 0 for a label on another shard."""
    m = z.amax(dim=1)
    d = z - m[:, None]
    e = torch.exp(d)
    s = e.sum(dim=1)
    u = e.mul_(d).sum(dim=1)
    inside = (y >= 0) & (y < z.shape[1])
    zy = z.gather(1, y.clamp(0, z.shape[1] - 1).long()[:, None]).squeeze(1)
    return torch.stack([m, s, u, torch.where(inside, zy, 0.0)])


def _row_grad_torch_(z, y, lse, ent, g_lp, g_ent) -> None:
    """``_row_grad_kernel`` as torch ops: ``dz = g_logp 1[v=y] - p (g_logp + g_H (log p + H))`` written over ``z``."""
    z.sub_(lse[:, None])  # log p
    p = torch.exp(z)
    if g_ent is None:
        z.copy_(g_lp[:, None].expand_as(z))
    else:
        z.add_(ent[:, None]).mul_(g_ent[:, None]).add_(g_lp[:, None])
    z.mul_(p).neg_()
    rows = ((y >= 0) & (y < z.shape[1])).nonzero().squeeze(1)
    z.index_put_((rows, y[rows].long()), g_lp[rows], accumulate=True)


def row_stats(z: torch.Tensor, y: torch.Tensor, cfg: RowPassConfig) -> torch.Tensor:
    """[4, c] fp32 ``(m, s, u, z_y)`` of this shard's fp32 logits ``z`` [c, Vl]."""
    if cfg.backend == "torch":
        return _row_stats_torch(z, y)
    out = torch.empty(4, z.shape[0], dtype=torch.float32, device=z.device)
    grid = (triton.cdiv(z.shape[0], cfg.block_rows),)
    _row_stats_kernel[grid](
        z, y, out, z.shape[0], z.shape[1], z.stride(0), cfg.block_rows, cfg.block_vocab, num_warps=cfg.num_warps
    )
    return out


def row_grad_(z, y, lse, ent, g_lp, g_ent, cfg: RowPassConfig) -> None:
    """dz written over ``z`` in place (see ``_row_grad_kernel``)."""
    if cfg.backend == "torch":
        return _row_grad_torch_(z, y, lse, ent, g_lp, g_ent)
    grid = (triton.cdiv(z.shape[0], cfg.block_rows),)
    has_ent = g_ent is not None
    _row_grad_kernel[grid](
        z,
        y,
        lse,
        ent,
        g_lp,
        g_ent if has_ent else g_lp,
        z.shape[0],
        z.shape[1],
        z.stride(0),
        cfg.block_rows,
        cfg.block_vocab,
        has_ent,
        num_warps=cfg.num_warps,
    )
