"""The project's packed core attention: per-segment causal softmax attention, GQA, no cross-segment leakage."""

import math

import pytest
import torch
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.transformer_config import TransformerConfig

from cod_megatron.policy.packed_attention import PackedDotProductAttention

NP, NG, HN = 4, 2, 8


def module() -> PackedDotProductAttention:
    cfg = TransformerConfig(
        num_layers=1,
        hidden_size=NP * HN,
        num_attention_heads=NP,
        num_query_groups=NG,
        kv_channels=HN,
        attention_dropout=0.0,
        use_cpu_initialization=True,
    )
    return PackedDotProductAttention(cfg, layer_number=1, attn_mask_type=AttnMaskType.causal, attention_type="self")


def naive(q, k, v):
    """Explicit softmax(q k^T / sqrt(d) + causal) v for one sequence; q [s, np, hn], k/v [s, ng, hn]."""
    s = q.shape[0]
    k = k.repeat_interleave(NP // NG, dim=1)
    v = v.repeat_interleave(NP // NG, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(HN)
    scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(s, NP * HN)


def packed(lengths):
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return PackedSeqParams(
        qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=max(lengths), max_seqlen_kv=max(lengths)
    )


@pytest.mark.parametrize("lengths", [[7], [5, 1, 9], [3, 3, 3, 3], [1, 1]])
def test_thd_equals_each_segment_alone(lengths):
    torch.manual_seed(0)
    t = sum(lengths)
    q, k, v = torch.randn(t, NP, HN), torch.randn(t, NG, HN), torch.randn(t, NG, HN)
    out = module()(q, k, v, None, packed_seq_params=packed(lengths))
    start = 0
    for n in lengths:
        sl = slice(start, start + n)
        torch.testing.assert_close(out[sl], naive(q[sl], k[sl], v[sl]), rtol=1e-5, atol=1e-6)
        start += n


def test_no_attention_across_segment_boundaries():
    torch.manual_seed(1)
    lengths = [6, 5]
    q, k, v = torch.randn(11, NP, HN), torch.randn(11, NG, HN), torch.randn(11, NG, HN)
    base = module()(q, k, v, None, packed_seq_params=packed(lengths))
    k2, v2 = k.clone(), v.clone()
    k2[:6] += 5.0
    v2[:6] -= 3.0  # change only the first segment's keys/values
    moved = module()(q, k2, v2, None, packed_seq_params=packed(lengths))
    torch.testing.assert_close(moved[6:], base[6:], rtol=0, atol=0)
    assert not torch.allclose(moved[:6], base[:6])


def test_sbhd_causal_matches_naive_and_respects_a_mask():
    torch.manual_seed(2)
    s, b = 6, 2
    q, k, v = torch.randn(s, b, NP, HN), torch.randn(s, b, NG, HN), torch.randn(s, b, NG, HN)
    out = module()(q, k, v, None)
    for i in range(b):
        torch.testing.assert_close(out[:, i], naive(q[:, i], k[:, i], v[:, i]), rtol=1e-5, atol=1e-6)
    causal = torch.ones(s, s, dtype=torch.bool).triu(1).view(1, 1, s, s).expand(b, 1, s, s)
    torch.testing.assert_close(module()(q, k, v, causal), out, rtol=1e-6, atol=1e-6)


def test_context_parallel_needs_packed_input():
    cfg = TransformerConfig(
        num_layers=1, hidden_size=32, num_attention_heads=4, context_parallel_size=2, use_cpu_initialization=True
    )
    attn = PackedDotProductAttention(cfg, layer_number=1, attn_mask_type=AttnMaskType.causal, attention_type="self")
    q = torch.randn(4, 1, 4, 8)
    with pytest.raises(ValueError, match="packed THD"):
        attn(q, q, q, None)


def test_thd_layers_read_no_value_back_to_the_host():
    """Issue 31 item 5: the segment bounds are read once per micro-batch, on the host, by the trainer's
    ``packed_seq_params``; each layer's forward and backward then reads nothing (a device sync per layer on a GPU)."""
    from cod_megatron.data import synthetic_packed_batch
    from cod_megatron.policy.trainer import packed_seq_params
    from tests.host_reads import count_host_reads

    batch = synthetic_packed_batch(seed=3, n_segments=7, vocab_size=50, min_len=2, max_len=5)  # lengths repeat
    params = packed_seq_params(batch)
    t = batch.num_tokens
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(t, n, HN, generator=g).requires_grad_() for n in (NP, NG, NG))
    attention = module()
    with count_host_reads() as reads:
        for _ in range(2):  # two layers of one micro-batch
            attention(q, k, v, None, packed_seq_params=params).square().sum().backward()
    assert not reads, dict(reads)
