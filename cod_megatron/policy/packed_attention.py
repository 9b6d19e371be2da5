"""Core attention for megatron-core's local spec that understands packed THD input.

megatron-core's local ``DotProductAttention`` asserts ``packed_seq_params is None``; only Transformer Engine's
attention takes packed sequences. This module fills that gap on CPU (and anywhere TE is missing): with
``PackedSeqParams(qkv_format="thd", cu_seqlens_q=...)`` each segment attends causally to itself only, so many
episodes can share one sequence without seeing each other. It is the reference the GPU path (TE) is checked against.

Shapes (megatron's notation): t packed tokens, s sequence, b batch, np/ng query/key-value heads per TP partition,
hn head dim. THD input: q ``[t, np, hn]``, k/v ``[t, ng, hn]``; output ``[t, np * hn]``. SBHD input:
q ``[s, b, np, hn]``; output ``[s, b, np * hn]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

from cod_megatron.data.context_parallel import local_positions


class _GatherContextParallel(torch.autograd.Function):
    """All-gather along a new leading dim over the CP group; backward sums the gradient and keeps this rank's part."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group, ctx.rank = group, dist.get_rank(group)
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.rank], None


class SegmentPlan:
    """The segments of one packed micro-batch, read on the host once per micro-batch (not once per layer).

    ``starts`` (padded offsets on a CP shard), ``lengths`` (real) and ``padded`` (CP shard: padded lengths, else None)
    are Python ints; :meth:`length_groups` gives the token indices of each group of equal-length segments on a device,
    built once per device from pinned host memory (a non-blocking copy: no sync, unlike ``cu_seqlens.tolist()``).
    """

    def __init__(self, cu_seqlens: Sequence[int], cu_seqlens_padded: Sequence[int] | None = None):
        cu = [int(x) for x in cu_seqlens]
        self.lengths = [b - a for a, b in zip(cu[:-1], cu[1:], strict=True)]
        padded = None if cu_seqlens_padded is None else [int(x) for x in cu_seqlens_padded]
        self.starts = (padded or cu)[:-1]
        self.padded = None if padded is None else [b - a for a, b in zip(padded[:-1], padded[1:], strict=True)]
        self._groups: dict[torch.device, list[tuple[int, int, torch.Tensor]]] = {}

    @classmethod
    def from_params(cls, params: PackedSeqParams) -> SegmentPlan:
        """The plan a :class:`PlannedSeqParams` carries, else read from megatron's tensors (a host read)."""
        if isinstance(params, PlannedSeqParams) and params.plan is not None:
            return params.plan
        padded = params.cu_seqlens_q_padded
        return cls(params.cu_seqlens_q.tolist(), None if padded is None else padded.tolist())

    def length_groups(self, device: torch.device) -> list[tuple[int, int, torch.Tensor]]:
        """``(length, count, token indices [count * length] int64 on device)`` per distinct segment length."""
        if device not in self._groups:
            by_length: dict[int, list[int]] = {}
            for start, length in zip(self.starts, self.lengths, strict=True):
                by_length.setdefault(length, []).append(start)
            host = [(torch.tensor(st)[:, None] + torch.arange(n)[None, :]).reshape(-1) for n, st in by_length.items()]
            flat = torch.cat(host) if host else torch.zeros(0, dtype=torch.long)
            pin = device.type == "cuda"
            flat = (flat.pin_memory() if pin else flat).to(device, non_blocking=pin)
            parts = flat.split([len(st) * n for n, st in by_length.items()])
            self._groups[device] = [(n, len(st), i) for (n, st), i in zip(by_length.items(), parts, strict=True)]
        return self._groups[device]


@dataclass
class PlannedSeqParams(PackedSeqParams):
    """megatron's ``PackedSeqParams`` plus the host :class:`SegmentPlan` of the same micro-batch (the trainer builds
    it from the host copy of ``cu_seqlens``), so that no layer reads ``cu_seqlens`` back from the device."""

    plan: SegmentPlan | None = field(default=None, repr=False, compare=False)


class PackedDotProductAttention(MegatronModule):
    """Causal softmax attention over padded-batch (sbhd) or packed (thd) input, with GQA; no context parallelism."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
    ):
        super().__init__(config=config)
        self.cp = config.context_parallel_size
        if attn_mask_type not in (AttnMaskType.causal, AttnMaskType.padding_causal):
            raise ValueError(f"only causal attention is supported, got {attn_mask_type}")
        self.head_dim = config.kv_channels
        self.softmax_scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(self.head_dim)
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """q ``[b, np, s, hn]``, k/v ``[b, ng, s, hn]`` -> ``[b, np, s, hn]``; causal unless ``mask`` is given."""
        groups = q.shape[1] // k.shape[1]
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        p = self.dropout_p if self.training else 0.0
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None, scale=self.softmax_scale
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params: PackedSeqParams | None = None,
    ) -> torch.Tensor:
        """Attention output, heads flattened into the last dimension."""
        if attention_bias is not None:
            raise ValueError("attention_bias is not supported")
        if self.cp > 1:
            if packed_seq_params is None or packed_seq_params.qkv_format != "thd":
                raise ValueError("context parallelism needs packed THD input (PackedSeqParams with cu_seqlens)")
            return self._forward_context_parallel(query, key, value, packed_seq_params)
        if packed_seq_params is not None and packed_seq_params.qkv_format == "thd":
            # Segments of equal length attend as one batch: a few SDPA calls instead of one per episode.
            out = torch.zeros_like(query)
            for length, count, idx in SegmentPlan.from_params(packed_seq_params).length_groups(query.device):
                q, k, v = (
                    x.index_select(0, idx).unflatten(0, (count, length)).transpose(1, 2) for x in (query, key, value)
                )
                out.index_copy_(0, idx, self._attend(q, k, v, None).transpose(1, 2).flatten(0, 1))
            return out.reshape(out.shape[0], -1)
        if packed_seq_params is not None:
            raise ValueError(f"unsupported qkv_format {packed_seq_params.qkv_format!r}")
        s, b = query.shape[:2]
        q, k, v = (x.permute(1, 2, 0, 3) for x in (query, key, value))
        # megatron masks are True where attention is NOT allowed; SDPA wants True where it is.
        mask = None if attention_mask is None else ~attention_mask.bool()
        out = self._attend(q, k, v, mask)
        return out.permute(2, 0, 1, 3).reshape(s, b, -1)

    def _forward_context_parallel(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, params: PackedSeqParams
    ) -> torch.Tensor:
        """THD attention when each rank holds chunks ``r`` and ``2cp-1-r`` of every (padded) segment.

        Keys and values are all-gathered over the CP group and put back in sequence order; each local query then
        attends causally by its global position, and padding keys (position >= real length) are masked out.
        Reference semantics for the CPU; TE's ring attention does the same without materialising full K/V.
        """
        group = parallel_state.get_context_parallel_group()
        rank = dist.get_rank(group)
        k_all, v_all = _GatherContextParallel.apply(key, group), _GatherContextParallel.apply(value, group)
        plan = SegmentPlan.from_params(params)
        real, padded = plan.lengths, plan.padded
        out = torch.zeros_like(query)
        offset = 0
        for length, plen in zip(real, padded, strict=True):
            n = plen // self.cp
            sl = slice(offset, offset + n)
            order = torch.cat([local_positions(plen, self.cp, r) for r in range(self.cp)]).argsort()
            k = k_all[:, sl].reshape(plen, *key.shape[1:])[order]
            v = v_all[:, sl].reshape(plen, *value.shape[1:])[order]
            q_pos, k_pos = local_positions(plen, self.cp, rank), torch.arange(plen)
            mask = (k_pos[None, :] <= q_pos[:, None]) & (k_pos[None, :] < length)
            q, k, v = (x.transpose(0, 1).unsqueeze(0) for x in (query[sl], k, v))
            out[sl] = self._attend(q, k, v, mask.to(query.device)).squeeze(0).transpose(0, 1)
            offset += n
        return out.reshape(out.shape[0], -1)
