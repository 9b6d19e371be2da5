"""Fused LM head -> target log-prob and entropy, tiled over the vocabulary: the [T, V/TP] logits never exist.

Legend: T packed tokens, Tm of them in the loss (``mask``), H hidden size, Vl = V/TP this rank's vocab shard that
starts at global id ``vocab_start``. The math is the one of ``fused_linear_logprob_reference`` (the reference):

    logZ = m + log sum_v exp(z_v - m)      log p(y) = z_y - logZ      H = logZ - sum_v p_v z_v
    dz_v = g_logp (1[v=y] - p_v) - g_H p_v (log p_v + H)

Forward: one program per (row block, vocab split) walks its vocab tiles, computes ``z = h @ W_tile^T`` in fp32 and
keeps four per-row numbers online: the max m, s = sum exp(z - m), u = sum exp(z - m) (z - m) (entropy relative to
the running max, so it does not cancel at large logits) and the target logit. Splits and TP ranks combine those
[Tm]-sized partials in torch (TP: one MAX and one SUM all-reduce per row, as the reference). Backward: one program
per (row block, vocab tile) recomputes its z tile, forms dz in registers and adds ``dz @ W`` / ``dz^T @ h`` into fp32
grad buffers with atomics (Cut-Cross-Entropy style): FLOPs 8 T H V per step instead of 6, memory O(T H + V H).

Masked-out rows are dropped before any GEMM (their outputs are 0 and get no gradient). The hidden gradient is this
rank's vocab shard's contribution: with TP it must be summed over the group, which megatron's
``copy_to_tensor_model_parallel_region`` (or ``gather_from_sequence_parallel_region`` with SP) does in its
backward; ``reduce_hidden_grad=True`` all-reduces it here instead for callers without that wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import triton
import triton.language as tl


@dataclass(frozen=True)
class KernelConfig:
    """Tile sizes and launch knobs (GPU defaults are untuned first guesses for H100; see bench_fused_linear_logprob)."""

    block_m: int = 128
    block_n: int = 128
    block_k: int = 64
    num_warps: int = 8
    num_stages: int = 3
    bwd_block_m: int = 128
    bwd_block_n: int = 128
    bwd_block_k: int = 64
    bwd_num_warps: int = 8
    bwd_num_stages: int = 2
    vocab_splits: int | None = None
    """Forward programs along the vocab per row block; None: enough to give every SM about four programs."""


CPU_CONFIG = KernelConfig(16, 32, 16, 1, 1, 16, 32, 16, 1, 1, vocab_splits=1)
"""Interpreter sizes: tl.dot needs blocks >= 16, and every extra program costs Python time."""


def default_config(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> KernelConfig:
    """GPU defaults on CUDA (half the K tile for fp32, whose tiles take twice the shared memory), small blocks under
    the Triton interpreter."""
    if device.type != "cuda":
        return CPU_CONFIG
    return KernelConfig(block_k=32, bwd_block_k=32) if dtype == torch.float32 else KernelConfig()


@triton.jit
def _fwd_kernel(
    h_ptr,
    w_ptr,
    y_ptr,
    m_ptr,
    s_ptr,
    u_ptr,
    zy_ptr,
    n_rows,
    n_vocab,
    hidden_size,
    stride_h,
    stride_w,
    tiles_per_split,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    r64 = rows.to(tl.int64)  # addresses in int64: V/TP x H passes 2**31 at large vocabularies
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    m = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    s = tl.zeros([BLOCK_M], dtype=tl.float32)
    u = tl.zeros([BLOCK_M], dtype=tl.float32)
    zy = tl.zeros([BLOCK_M], dtype=tl.float32)
    v_begin = pid_s * tiles_per_split * BLOCK_N
    for t in range(0, tiles_per_split):
        cols = v_begin + t * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < n_vocab
        c64 = cols.to(tl.int64)
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, hidden_size, BLOCK_K):
            ks = k + tl.arange(0, BLOCK_K)
            k_ok = ks < hidden_size
            a = tl.load(h_ptr + r64[:, None] * stride_h + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(w_ptr + c64[None, :] * stride_w + ks[:, None], mask=col_ok[None, :] & k_ok[:, None], other=0.0)
            if UPCAST:
                a, b = a.to(tl.float32), b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
        z = tl.where(col_ok[None, :], acc, float("-inf"))
        m_new = tl.maximum(m, tl.max(z, axis=1))  # finite: the first tile of every split has a valid column
        alpha = tl.exp(m - m_new)
        e = tl.exp(z - m_new[:, None])  # 0 on columns past the shard
        d = tl.where(col_ok[None, :], acc - m_new[:, None], 0.0)
        # u is relative to the running max: sum e (z - m_new) = alpha (u_old + s_old (m_old - m_new)) + new terms
        u = alpha * (u + s * (tl.where(s > 0.0, m, m_new) - m_new)) + tl.sum(e * d, axis=1)  # s = 0: m = -inf
        s = s * alpha + tl.sum(e, axis=1)
        zy += tl.sum(tl.where(cols[None, :] == y[:, None], acc, 0.0), axis=1)
        m = m_new
    out = pid_s * n_rows + rows
    tl.store(m_ptr + out, m, mask=row_ok)
    tl.store(s_ptr + out, s, mask=row_ok)
    tl.store(u_ptr + out, u, mask=row_ok)
    tl.store(zy_ptr + out, zy, mask=row_ok)


@triton.jit
def _bwd_kernel(
    h_ptr,
    w_ptr,
    y_ptr,
    lse_ptr,
    ent_ptr,
    g_lp_ptr,
    g_ent_ptr,
    gh_ptr,
    gw_ptr,
    n_rows,
    n_vocab,
    hidden_size,
    stride_h,
    stride_w,
    stride_gh,
    stride_gw,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    HAS_ENT: tl.constexpr,
    GRAD_H: tl.constexpr,
    GRAD_W: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < n_vocab
    r64, c64 = rows.to(tl.int64), cols.to(tl.int64)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k in range(0, hidden_size, BLOCK_K):
        ks = k + tl.arange(0, BLOCK_K)
        k_ok = ks < hidden_size
        a = tl.load(h_ptr + r64[:, None] * stride_h + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(w_ptr + c64[None, :] * stride_w + ks[:, None], mask=col_ok[None, :] & k_ok[:, None], other=0.0)
        if UPCAST:
            a, b = a.to(tl.float32), b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    g = tl.load(g_lp_ptr + rows, mask=row_ok, other=0.0)
    logp = acc - lse[:, None]
    p = tl.where(row_ok[:, None] & col_ok[None, :], tl.exp(logp), 0.0)
    coef = g[:, None] + tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    if HAS_ENT:
        ent = tl.load(ent_ptr + rows, mask=row_ok, other=0.0)
        g_ent = tl.load(g_ent_ptr + rows, mask=row_ok, other=0.0)
        coef += g_ent[:, None] * (logp + ent[:, None])
    dz = tl.where(cols[None, :] == y[:, None], g[:, None], 0.0) - p * coef
    dz_c = dz.to(h_ptr.dtype.element_ty)  # the GEMM input dtype, as megatron's bf16 logits gradient
    if UPCAST:
        dz_c = dz_c.to(tl.float32)
    for k in range(0, hidden_size, BLOCK_K):
        ks = k + tl.arange(0, BLOCK_K)
        k_ok = ks < hidden_size
        w_mask = col_ok[:, None] & k_ok[None, :]
        h_mask = row_ok[:, None] & k_ok[None, :]
        if GRAD_H:
            wk = tl.load(w_ptr + c64[:, None] * stride_w + ks[None, :], mask=w_mask, other=0.0)
            if UPCAST:
                wk = wk.to(tl.float32)
            gh = tl.dot(dz_c, wk, input_precision=PRECISION)
            tl.atomic_add(gh_ptr + r64[:, None] * stride_gh + ks[None, :], gh, mask=h_mask, sem="relaxed")
        if GRAD_W:
            hk = tl.load(h_ptr + r64[:, None] * stride_h + ks[None, :], mask=h_mask, other=0.0)
            if UPCAST:
                hk = hk.to(tl.float32)
            gw = tl.dot(tl.trans(dz_c), hk, input_precision=PRECISION)
            tl.atomic_add(gw_ptr + c64[:, None] * stride_gw + ks[None, :], gw, mask=w_mask, sem="relaxed")


def _precision(dtype: torch.dtype) -> str:
    """fp32 inputs get exact fp32 products (tf32 would miss the 1e-5 checks); bf16/fp16 ignore the flag."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _upcast(h: torch.Tensor) -> bool:
    """The interpreter keeps bf16 as raw uint16 and its tl.dot would multiply the bits: feed it fp32 there."""
    return h.device.type != "cuda" and h.dtype != torch.float32


def _num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of the device (1 under the interpreter)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def _forward_stats(
    h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, cfg: KernelConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row ``(m, s, u, z_y)`` over this shard, with the vocab splits already combined ([Tm] fp32 each)."""
    n_rows, hidden = h.shape
    n_vocab = w.shape[0]
    n_tiles = triton.cdiv(n_vocab, cfg.block_n)
    row_blocks = triton.cdiv(n_rows, cfg.block_m)
    splits = cfg.vocab_splits or triton.cdiv(4 * _num_sms(h.device), row_blocks)
    tiles_per_split = triton.cdiv(n_tiles, max(1, min(splits, n_tiles)))
    splits = triton.cdiv(n_tiles, tiles_per_split)  # every split starts on a tile with a valid column
    part = torch.empty(4, splits, n_rows, dtype=torch.float32, device=h.device)
    _fwd_kernel[(row_blocks, splits)](
        h,
        w,
        y,
        part[0],
        part[1],
        part[2],
        part[3],
        n_rows,
        n_vocab,
        hidden,
        h.stride(0),
        w.stride(0),
        tiles_per_split,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k,
        PRECISION=_precision(h.dtype),
        UPCAST=_upcast(h),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    m_p, s_p, u_p, zy_p = part
    if splits == 1:
        return m_p[0], s_p[0], u_p[0], zy_p[0]
    return _merge(m_p, s_p, u_p, zy_p.sum(0), m_p.max(0).values)


def _merge(
    m_p: torch.Tensor, s_p: torch.Tensor, u_p: torch.Tensor, zy: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rebase partial ``(s, u)`` of rows with maxima ``m_p`` onto the common max ``m`` and sum over dim 0."""
    scale = torch.exp(m_p - m)
    return m, (s_p * scale).sum(0), (scale * (u_p + s_p * (m_p - m))).sum(0), zy


class _FusedLinearLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, mask, vocab_start, group, reduce_hidden_grad, cfg):
        ctx.set_materialize_grads(False)
        h_all = hidden.reshape(-1, hidden.shape[-1])
        n_tokens = h_all.shape[0]
        rows = torch.arange(n_tokens, device=hidden.device) if mask is None else mask.reshape(-1).nonzero().squeeze(1)
        logp = torch.zeros(n_tokens, dtype=torch.float32, device=hidden.device)
        entropy = torch.zeros_like(logp)
        ctx.shape, ctx.group, ctx.reduce, ctx.cfg = hidden.shape, group, reduce_hidden_grad, cfg
        if rows.numel() == 0:  # the same rows on every TP rank, so no rank waits in a collective
            ctx.save_for_backward(rows)
            ctx.empty = True
            return logp.view(hidden.shape[:-1]), entropy.view(hidden.shape[:-1])
        ctx.empty = False
        w = weight if weight.stride(-1) == 1 else weight.contiguous()
        h = h_all.index_select(0, rows)
        y = (labels.reshape(-1).index_select(0, rows) - vocab_start).to(torch.int32)
        m, s, u, zy = _forward_stats(h, w, y, cfg)
        if group is not None:
            m_g = m.clone()
            dist.all_reduce(m_g, op=dist.ReduceOp.MAX, group=group)
            stats = torch.stack(_merge(m[None], s[None], u[None], zy, m_g)[1:])
            dist.all_reduce(stats, group=group)
            m, (s, u, zy) = m_g, stats
        log_s = torch.log(s)
        lse = m + log_s
        ent = log_s - u / s
        logp.index_copy_(0, rows, zy - lse)
        entropy.index_copy_(0, rows, ent)
        ctx.save_for_backward(hidden, w, y, rows, lse, ent)
        return logp.view(hidden.shape[:-1]), entropy.view(hidden.shape[:-1])

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        if ctx.empty or (g_logp is None and g_ent is None):
            return (None,) * 8
        hidden, w, y, rows, lse, ent = ctx.saved_tensors
        cfg = ctx.cfg
        h_all = hidden.reshape(-1, hidden.shape[-1])
        h = h_all.index_select(0, rows)
        n_rows, size = h.shape
        zeros = torch.zeros(n_rows, dtype=torch.float32, device=h.device)
        g_lp = zeros if g_logp is None else g_logp.reshape(-1).index_select(0, rows).float()
        g_en = zeros if g_ent is None else g_ent.reshape(-1).index_select(0, rows).float()
        grad_h, grad_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gh = torch.zeros(n_rows if grad_h else 1, size, dtype=torch.float32, device=h.device)
        gw = torch.zeros(w.shape[0] if grad_w else 1, size, dtype=torch.float32, device=h.device)
        grid = (triton.cdiv(n_rows, cfg.bwd_block_m), triton.cdiv(w.shape[0], cfg.bwd_block_n))
        _bwd_kernel[grid](
            h,
            w,
            y,
            lse,
            ent,
            g_lp,
            g_en,
            gh,
            gw,
            n_rows,
            w.shape[0],
            size,
            h.stride(0),
            w.stride(0),
            gh.stride(0),
            gw.stride(0),
            BLOCK_M=cfg.bwd_block_m,
            BLOCK_N=cfg.bwd_block_n,
            BLOCK_K=cfg.bwd_block_k,
            HAS_ENT=g_ent is not None,
            GRAD_H=grad_h,
            GRAD_W=grad_w,
            PRECISION=_precision(h.dtype),
            UPCAST=_upcast(h),
            num_warps=cfg.bwd_num_warps,
            num_stages=cfg.bwd_num_stages,
        )
        d_hidden = d_weight = None
        if grad_h:
            if ctx.reduce and ctx.group is not None:
                dist.all_reduce(gh, group=ctx.group)
            d_hidden = torch.zeros(h_all.shape, dtype=hidden.dtype, device=h.device)
            d_hidden.index_copy_(0, rows, gh.to(hidden.dtype))
            d_hidden = d_hidden.view(ctx.shape)
        if grad_w:
            d_weight = gw.to(w.dtype)
        return d_hidden, d_weight, None, None, None, None, None, None


def fused_linear_logprob(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    vocab_start: int = 0,
    group: dist.ProcessGroup | None = None,
    reduce_hidden_grad: bool = False,
    config: KernelConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logp, entropy)`` fp32 with the shape of ``labels``: log softmax(hidden @ weight^T)[label] and its entropy.

    ``hidden``: ``[..., H]`` final hidden states; ``weight``: ``[V/TP, H]`` this rank's output-layer shard starting at
    global id ``vocab_start`` (same dtype as ``hidden``); ``labels``: global ids; ``mask``: bool, rows outside it give
    0 and no gradient (None: every row). ``group``: the tensor-parallel group (None for TP=1); the hidden gradient
    is this shard's part unless ``reduce_hidden_grad`` (see the module docstring).
    """
    if hidden.shape[-1] != weight.shape[-1] or hidden.dtype != weight.dtype:
        raise ValueError(f"hidden {tuple(hidden.shape)} {hidden.dtype} vs weight {tuple(weight.shape)} {weight.dtype}")
    if labels.shape != hidden.shape[:-1] or (mask is not None and mask.shape != labels.shape):
        raise ValueError("labels (and mask) must have the shape of hidden without its last dim")
    if group is not None and dist.get_world_size(group) == 1:
        group = None
    cfg = config or default_config(hidden.device, hidden.dtype)
    mask = None if mask is None else mask != 0
    return _FusedLinearLogProb.apply(hidden, weight, labels, mask, vocab_start, group, reduce_hidden_grad, cfg)
