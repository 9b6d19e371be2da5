"""LM head + policy-gradient loss gradient in ONE forward: per row chunk, logits GEMM, one Triton row pass, the
caller's per-token loss gradient, dz in place, and the two backward GEMMs; the autograd backward only rescales.

Legend: T packed tokens, Tm of them in the loss (``rows``), c rows per chunk, H hidden size, Vl = V/TP this rank's
vocab shard starting at global id ``vocab_start``. Per row (``fused_linear_logprob_reference`` has the same math):

    logZ = m + log sum_v exp(z_v - m)      log p(y) = z_y - logZ      H = logZ - sum_v p_v z_v
    dz_v = g_logp (1[v=y] - p_v) - g_H p_v (log p_v + H)

Why in the forward (docs/linear_pg_head.md): an RL loss is a sum of per-token terms, so dLoss/dlogp_t and
dLoss/dH_t depend only on token t's own log-prob and entropy (plus detached data: old/ref log-probs, advantages,
the step's denominators). Once a chunk's (logp, H) are known the caller's ``grad_fn`` gives those two numbers and
the chunk's logits are turned into dz and consumed at once: 6 Tm H Vl GEMM FLOPs (no recompute), all in
torch.matmul (cuBLAS on GPU), deterministic (no atomics), one [c, Vl] fp32 block alive (on GPU with bf16
weights plus its bf16 copy, the GEMM operand). Per chunk:

    Z = h_c W^T (fp32)  ->  Triton row pass (max, sum-exp, target logit, entropy sum)  ->  one TP all-gather of
    [4, c]  ->  (g_logp, g_H) = grad_fn(rows_c, logp_c, H_c)  ->  Triton row pass writes dz over Z  ->
    dH_c = dz W   and   dW += dz^T h_c  (fp32, into megatron's ``main_grad`` when given)

The op returns ``(logp, entropy, surrogate)``: ``surrogate`` is a 0-valued scalar whose gradient is the loss
gradient. The caller adds it to its (detached) loss value; the backward receives the scalar that megatron's
schedule multiplies the loss by (the optimizer's loss scale; without per-token loss also 1/num_microbatches and
1/num_tokens) and scales the stored dH by it. dW cannot wait for that scalar when it goes straight into
``main_grad``: pass it as ``grad_scale`` (see ``linear_pg_head``). Without a buffer, dW is returned by the
backward and scaled there like dH.

Rows: only loss rows enter any GEMM. ``rows`` (int64 token indices, e.g. built once by the data packer) costs no
host sync; a bool ``mask`` costs exactly one (``nonzero``), because the chunk loop needs Tm on the host.
Temperature: pass ``hidden / T`` (``logits / T = (hidden / T) W^T``), as the callers of the first kernel do.
Tied embeddings: the op only accumulates into the buffer it is given; with a tied output layer that buffer is the
shared embedding's ``main_grad`` (megatron then all-reduces the embedding grads of the first and last stage).
TP: the returned / stored dH is this shard's part; megatron's ``copy_to_tensor_model_parallel_region`` (or the SP
gather) sums it in its backward, ``reduce_hidden_grad=True`` all-reduces it here instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist

from cod_kernels.linear_pg_head_rows import CPU_ROW_PASS, RowPassConfig, row_grad_, row_stats

ChunkGrad = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
"""``grad_fn(rows_c [c] int64 token indices, logp_c [c] fp32, entropy_c [c] fp32) -> (g_logp_c, g_entropy_c)``:
dLoss/dlogp and dLoss/dentropy of the chunk's tokens (``g_entropy_c`` None: the loss ignores entropy). Called on
every TP rank with the same, already reduced, values; ``rows_c`` lets it index its own per-token data. ``logp_c``
is this forward's log-prob: the hook through which a per-token advantage formed from the current log-probs
(``A_t = teacher_t - sg(logp_t)``, on-policy distillation) enters the gradient, exactly, since it is per token."""


def token_loss_grad(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n_tokens: int, fill: torch.Tensor | None = None
) -> ChunkGrad:
    """A ``ChunkGrad`` from ``loss_fn(logp [T], entropy [T]) -> scalar`` by ``torch.autograd.grad`` on the chunk.

    So a loss written over whole ``[T]`` vectors (``cod_megatron.cod.losses.policy_loss``: every loss type,
    aggregation and rollout correction) needs no hand-written gradient. Exact whenever the loss is a sum of
    per-token terms, i.e. token t's term reads only logp_t and H_t besides detached data (sequence-level weights
    from old / rollout log-probs are fine; a sequence-level ratio of the current log-probs would not be).

    The chunk's values are placed at their rows of [T] vectors (other rows: ``fill``, default 0; with a
    token-separable loss they do not change the chunk's gradient) and differentiated with respect to the chunk's
    [c] vectors only. Costs one loss evaluation over T per chunk: cheap next to the c x V/TP GEMMs.
    """

    def grad_fn(rows: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor):
        lp_c = logp.detach().requires_grad_(True)
        en_c = entropy.detach().requires_grad_(True)
        base = torch.zeros(n_tokens, dtype=logp.dtype, device=logp.device) if fill is None else fill.detach()
        with torch.enable_grad():
            lp_full = base.index_put((rows,), lp_c)
            en_full = base.index_put((rows,), en_c)
            loss = loss_fn(lp_full, en_full)
            g_lp, g_en = torch.autograd.grad(loss, (lp_c, en_c), allow_unused=True, materialize_grads=True)
        return g_lp, g_en

    return grad_fn


class PGHeadOutput(NamedTuple):
    """``logp``, ``entropy``: fp32 with the labels' shape, 0 outside the loss rows, no gradient of their own.
    ``surrogate``: 0-valued fp32 scalar carrying the loss gradient (add it to the loss value)."""

    logp: torch.Tensor
    entropy: torch.Tensor
    surrogate: torch.Tensor


def _combine(stats: torch.Tensor, group: dist.ProcessGroup | None) -> tuple[torch.Tensor, ...]:
    """``(logZ, logp, entropy)`` [c] from per-shard ``(m, s, u, z_y)``; with TP one all-gather of [4, c] per chunk (one
    collective instead of a MAX then a SUM all-reduce), merged on every rank in the same order."""
    if group is not None:
        world = dist.get_world_size(group)
        parts = torch.empty(world * stats.shape[0], stats.shape[1], dtype=stats.dtype, device=stats.device)
        dist.all_gather_single(parts, stats.contiguous(), group=group)  # ranks concatenated along dim 0
        m_p, s_p, u_p, zy_p = parts.view(world, *stats.shape).unbind(1)
        m = m_p.max(0).values
        scale = torch.exp(m_p - m)
        s, u, zy = (s_p * scale).sum(0), (scale * (u_p + s_p * (m_p - m))).sum(0), zy_p.sum(0)
    else:
        m, s, u, zy = stats.unbind(0)
    log_s = torch.log(s)
    lse = m + log_s
    return lse, zy - lse, log_s - u / s


def _logits(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """[c, Vl] fp32 logits: cuBLAS with fp32 output on GPU (no bf16 rounding of z), fp32 operands on CPU."""
    if h.dtype == torch.float32 or h.device.type != "cuda":
        return h @ w.T
    return torch.mm(h, w.T, out_dtype=torch.float32)


def _add_dw_(buf: torch.Tensor, dz: torch.Tensor, h: torch.Tensor, scale: float) -> None:
    """``buf += scale dz^T h`` in fp32, in place (beta=1: megatron's gradient-accumulation contract)."""
    if dz.dtype == torch.float32 or dz.device.type != "cuda":
        torch.addmm(buf, dz.T, h, alpha=scale, out=buf)
    else:
        torch.addmm(buf, dz.T, h, torch.float32, alpha=scale, out=buf)


@dataclass(frozen=True)
class _Plan:
    """Everything but the differentiable inputs: what to compute and where the results go."""

    rows: torch.Tensor  # [Tm] int64 loss rows of the flattened tokens
    grad_fn: ChunkGrad | None
    main_grad: torch.Tensor | None
    grad_scale: float
    vocab_start: int
    group: dist.ProcessGroup | None
    reduce_hidden_grad: bool
    chunk_rows: int
    cfg: RowPassConfig


@dataclass
class _Chunks:
    """Results of the chunk loop over the Tm loss rows."""

    logp: torch.Tensor  # [T] fp32
    entropy: torch.Tensor  # [T] fp32
    grad_rows: torch.Tensor | None = None  # [Tm, H] dLoss/dh of the loss rows (this shard's part)
    grad_weight: torch.Tensor | None = None  # [Vl, H] fp32 dLoss/dW when no main_grad buffer was given


def _run_chunks(
    h_all: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, plan: _Plan, grads: tuple[bool, bool]
) -> _Chunks:
    """The per-chunk pipeline of the module docstring; ``grads`` = (dH wanted, dW wanted); without ``grad_fn`` or
    either gradient only the GEMM and the stats pass run."""
    rows, grad_fn, cfg = plan.rows, plan.grad_fn if any(grads) else None, plan.cfg
    out = _Chunks(*torch.zeros(2, labels.numel(), dtype=torch.float32, device=h_all.device))
    # CPU bf16: no mixed-dtype GEMM there, so fp32 operands (a test path; GPUs keep bf16 operands, fp32 outputs)
    upcast = h_all.device.type != "cuda" and h_all.dtype != torch.float32
    w = weight.float() if upcast else weight
    dw_buf = plan.main_grad
    if grad_fn is not None:
        if grads[0]:
            out.grad_rows = torch.empty(rows.numel(), h_all.shape[1], dtype=h_all.dtype, device=h_all.device)
        if dw_buf is None and grads[1]:
            dw_buf = out.grad_weight = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
    for start in range(0, rows.numel(), plan.chunk_rows):
        rows_c = rows[start : start + plan.chunk_rows]
        h_c = h_all.index_select(0, rows_c)
        h_c = h_c.float() if upcast else h_c
        y_c = (labels.index_select(0, rows_c) - plan.vocab_start).to(torch.int32)
        z = _logits(h_c, w)
        lse, logp_c, ent_c = _combine(row_stats(z, y_c, cfg), plan.group)
        out.logp.index_copy_(0, rows_c, logp_c)
        out.entropy.index_copy_(0, rows_c, ent_c)
        if grad_fn is None:
            continue
        g_lp, g_ent = grad_fn(rows_c, logp_c, ent_c)
        if g_lp.shape != logp_c.shape or (g_ent is not None and g_ent.shape != ent_c.shape):
            raise ValueError(f"grad_fn must return [{rows_c.numel()}] gradients for the chunk, got {g_lp.shape}")
        g_lp = g_lp.detach().float().contiguous()
        g_ent = None if g_ent is None else g_ent.detach().float().contiguous()
        row_grad_(z, y_c, lse, ent_c, g_lp, g_ent, cfg)
        dz = z if z.dtype == w.dtype else z.to(w.dtype)  # bf16 GEMM operand on GPU, as megatron's logits grad
        if out.grad_rows is not None:
            out.grad_rows[start : start + rows_c.numel()] = dz @ w
        if dw_buf is not None:
            _add_dw_(dw_buf, dz, h_c, plan.grad_scale if dw_buf is plan.main_grad else 1.0)
        del z, dz  # the [c, Vl] block is dead before the next chunk's GEMM allocates its own
    if out.grad_rows is not None and plan.reduce_hidden_grad and plan.group is not None:
        dist.all_reduce(out.grad_rows, group=plan.group)
    return out


class _LinearPGHead(torch.autograd.Function):
    """Forward does all the work (see the module docstring); backward scales the stored gradients."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, plan: _Plan):
        res = _run_chunks(
            hidden.reshape(-1, hidden.shape[-1]), weight, labels.reshape(-1), plan, ctx.needs_input_grad[:2]
        )
        ctx.save_for_backward(res.grad_rows, plan.rows, res.grad_weight)
        ctx.hidden_shape, ctx.weight_dtype = hidden.shape, weight.dtype
        logp, entropy = res.logp.view(labels.shape), res.entropy.view(labels.shape)
        ctx.mark_non_differentiable(logp, entropy)
        return logp, entropy, torch.zeros((), dtype=torch.float32, device=hidden.device)

    @staticmethod
    def backward(ctx, _g_logp, _g_entropy, g_surrogate):
        grad_rows, rows, grad_weight = ctx.saved_tensors
        d_hidden = d_weight = None
        if grad_rows is not None:
            d_hidden = grad_rows.new_zeros(ctx.hidden_shape).view(-1, grad_rows.shape[1])
            d_hidden.index_copy_(0, rows, grad_rows * g_surrogate.to(grad_rows.dtype))
            d_hidden = d_hidden.view(ctx.hidden_shape)
        if grad_weight is not None:
            d_weight = (grad_weight * g_surrogate).to(ctx.weight_dtype)
        return d_hidden, d_weight, None, None


def linear_pg_head(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    rows: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    grad_fn: ChunkGrad | None = None,
    main_grad: torch.Tensor | None = None,
    grad_scale: float = 1.0,
    vocab_start: int = 0,
    group: dist.ProcessGroup | None = None,
    reduce_hidden_grad: bool = False,
    chunk_rows: int = 2048,
    config: RowPassConfig | None = None,
) -> PGHeadOutput:
    """Per-token ``(logp, entropy)`` of ``labels`` under softmax(hidden W^T) and, with ``grad_fn``, the loss gradient.

    ``hidden`` ``[..., H]`` (already divided by the sampling temperature); ``weight`` ``[V/TP, H]`` this rank's shard
    from global id ``vocab_start``, same dtype; ``labels`` global ids, ``hidden``'s shape without H. Loss rows:
    ``rows`` (int64 indices into the flattened tokens; no host sync) or a bool ``mask`` (one sync); neither: all.

    ``grad_fn`` (see ``ChunkGrad``) is called once per chunk of ``chunk_rows`` rows ([chunk_rows, V/TP] fp32 is the
    largest temporary: 1 GiB at 2048 x 128K; on GPU with bf16 weights plus a bf16 copy of it). Without it, or under
    no_grad, or when neither hidden nor weight requires grad, only the logits GEMM and the stats pass run and
    ``surrogate`` is a plain 0.

    ``main_grad``: fp32 ``[V/TP, H]`` buffer (megatron's ``weight.main_grad``) that receives ``grad_scale * dL/dW``
    during this call; the backward then returns None for the weight. ``grad_scale`` must equal the scalar the
    backward will receive for ``surrogate`` (megatron with ``calculate_per_token_loss``: the optimizer's loss
    scale, 1.0 in bf16; see docs/linear_pg_head.md) since dW cannot be rescaled afterwards. Without ``main_grad``
    it is unused: dW and dH are both scaled by the incoming scalar in the backward.
    """
    if hidden.shape[-1] != weight.shape[-1] or hidden.dtype != weight.dtype:
        raise ValueError(f"hidden {tuple(hidden.shape)} {hidden.dtype} vs weight {tuple(weight.shape)} {weight.dtype}")
    if labels.shape != hidden.shape[:-1]:
        raise ValueError("labels must have the shape of hidden without its last dim")
    if main_grad is not None and (main_grad.shape != weight.shape or main_grad.dtype != torch.float32):
        raise ValueError(
            f"main_grad must be fp32 {tuple(weight.shape)}, got {main_grad.dtype} {tuple(main_grad.shape)}"
        )
    if rows is not None and mask is not None:
        raise ValueError("give the loss rows as rows or mask, not both")
    if rows is None and mask is None:
        rows = torch.arange(labels.numel(), device=labels.device)
    elif rows is None:
        rows = (mask.reshape(-1) != 0).nonzero().squeeze(1)  # the one host sync; pass ``rows`` to avoid it
    if group is not None and dist.get_world_size(group) == 1:
        group = None
    cfg = config or (RowPassConfig() if hidden.device.type == "cuda" else CPU_ROW_PASS)
    weight = weight if weight.stride(-1) == 1 else weight.contiguous()
    plan = _Plan(rows, grad_fn, main_grad, grad_scale, vocab_start, group, reduce_hidden_grad, chunk_rows, cfg)
    if grad_fn is not None and torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return PGHeadOutput(*_LinearPGHead.apply(hidden, weight, labels, plan))
    h_all = hidden.detach().reshape(-1, hidden.shape[-1])
    res = _run_chunks(h_all, weight.detach(), labels.reshape(-1), plan, (False, False))
    zero = torch.zeros((), dtype=torch.float32, device=hidden.device)
    return PGHeadOutput(res.logp.view(labels.shape), res.entropy.view(labels.shape), zero)
