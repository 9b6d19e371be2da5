"""Gated DeltaNet's two sequence mixers in plain torch, per segment: the short causal convolution and the gated
delta-rule recurrence. Both restart at every segment start, so packed episodes (THD, ``cu_seqlens``) never see each
other.

Segments come as ``groups``: ``(length, count, token indices [count * length])`` per distinct segment length
(:meth:`cod_megatron.policy.packed_attention.SegmentPlan.length_groups`), so equal-length segments run as one batch
and tokens outside every segment (THD alignment padding) get a zero output. The recurrence is megatron-core's
torch reference (``torch_chunk_gated_delta_rule``, which takes no ``cu_seqlens``) run on each batch of segments.

Shapes: t tokens, C conv channels, K kernel width, H value heads, dk/dv key/value head dims.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.ssm.gated_delta_net import torch_chunk_gated_delta_rule

Groups = list[tuple[int, int, torch.Tensor]]
"""``(segment length, number of segments, token indices)`` per distinct length."""


def whole_batch_groups(batch: int, seq_len: int, device: torch.device) -> Groups:
    """The groups of a padded batch flattened batch-major (``[b * s]``): each row is one segment."""
    return [(seq_len, batch, torch.arange(batch * seq_len, device=device))]


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x / sqrt(sum(x^2) + eps)`` over the last dim: FLA's and transformers' definition (q and k of the rule)."""
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + eps)


def causal_conv1d_segments(x: torch.Tensor, weight: torch.Tensor, groups: Groups) -> torch.Tensor:
    """Depthwise causal convolution then SiLU, restarted at each segment start.

    ``x`` ``[t, C]``, ``weight`` ``[C, 1, K]`` (``nn.Conv1d`` layout) -> ``[t, C]``: position ``p`` of a segment sees
    positions ``max(0, p - K + 1) .. p`` of the same segment only (zero padding before its start).
    """
    out = x.new_zeros(x.shape)
    k = weight.shape[-1]
    for length, count, idx in groups:
        seg = x.index_select(0, idx).unflatten(0, (count, length)).transpose(1, 2)  # [n, C, L]
        y = F.conv1d(seg, weight, padding=k - 1, groups=seg.shape[1])[..., :length]
        out = out.index_copy(0, idx, F.silu(y).transpose(1, 2).flatten(0, 1))
    return out


def gated_delta_rule_segments(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor, groups: Groups
) -> torch.Tensor:
    """The gated delta rule (state ``S_t = exp(g_t) S_{t-1} + beta_t k_t (v_t - k_t^T exp(g_t) S_{t-1})``, output
    ``q_t^T S_t / sqrt(dk)``), with the state zeroed at each segment start.

    ``q``/``k`` ``[t, H, dk]`` (already l2-normalised and repeated to the value heads), ``v`` ``[t, H, dv]``,
    ``g`` (log decay) and ``beta`` ``[t, H]`` -> ``[t, H, dv]``.
    """
    out = v.new_zeros(v.shape)
    for length, count, idx in groups:
        seg = [x.index_select(0, idx).unflatten(0, (count, length)) for x in (q, k, v, g, beta)]
        y, _ = torch_chunk_gated_delta_rule(*seg)
        out = out.index_copy(0, idx, y.flatten(0, 1).to(v.dtype))
    return out
