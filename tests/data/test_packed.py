"""Packed THD batches: packing rules, concatenation, padding and the context-parallel split."""

import dataclasses

import pytest
import torch

from cod_megatron.data import concat_packed, pack_segments, pad_to_multiple, synthetic_packed_batch
from cod_megatron.data.context_parallel import local_positions, padded_lengths, split_for_context_parallel


def test_pack_segments_labels_and_mask():
    b = pack_segments([[1, 2, 3, 4], [5, 6, 7]], [2, 1], [0.5, -1.0])
    assert b.tokens.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert b.labels.tolist() == [2, 3, 4, 0, 6, 7, 0]
    # segment 0: prompt [1, 2] -> positions 1, 2 predict response tokens 3, 4; segment 1: prompt [5]
    assert b.loss_mask.tolist() == [0, 1, 1, 0, 1, 1, 0]
    assert b.cu_seqlens.tolist() == [0, 4, 7]
    assert b.token_advantages().tolist() == [0.5] * 4 + [-1.0] * 3


@pytest.mark.parametrize(
    "segs,plens,adv", [([], [], []), ([[1]], [2], [0.0]), ([[]], [0], [0.0]), ([[1, 2]], [1], [0.0, 1.0])]
)
def test_pack_segments_rejects_bad_input(segs, plens, adv):
    with pytest.raises(ValueError):
        pack_segments(segs, plens, adv)


def test_concat_then_pad_keeps_every_segment():
    a, b = (
        synthetic_packed_batch(seed=1, n_segments=3, vocab_size=50),
        synthetic_packed_batch(seed=2, n_segments=2, vocab_size=50),
    )
    c = pad_to_multiple(concat_packed([a, b]), 8)
    assert c.num_tokens % 8 == 0
    n = a.num_tokens + b.num_tokens
    assert torch.equal(c.tokens[:n], torch.cat([a.tokens, b.tokens]))
    assert c.loss_mask[n:].sum() == 0 and c.loss_mask.sum() == a.loss_mask.sum() + b.loss_mask.sum()
    assert c.segment_ids[: a.num_tokens].max() == 2 and c.segment_ids[a.num_tokens : n].min() == 3


def test_local_positions_cover_each_position_once_and_balance_work():
    cp, plen = 3, 18
    parts = [local_positions(plen, cp, r) for r in range(cp)]
    assert sorted(torch.cat(parts).tolist()) == list(range(plen))
    # causal work ~ sum of positions: equal on every rank with the 2*cp chunking
    assert len({int(p.sum()) for p in parts}) == 1


@pytest.mark.parametrize("cp,multiple", [(2, 1), (3, 1), (2, 2)])
def test_context_parallel_shards_reassemble_the_batch(cp, multiple):
    b = synthetic_packed_batch(seed=3, n_segments=4, vocab_size=64, min_len=3, max_len=13)
    shards = [split_for_context_parallel(b, cp, r, multiple) for r in range(cp)]
    plens = padded_lengths(b.cu_seqlens, cp, multiple)
    assert all(int(p) % (2 * cp * multiple) == 0 for p in plens)
    assert len({s.num_tokens for s in shards}) == 1
    # every real token, label and mask value lands exactly once on some rank
    assert sum(int(s.loss_mask.sum()) for s in shards) == int(b.loss_mask.sum())
    real_tokens = sorted(sum((s.tokens[s.loss_mask > 0].tolist() for s in shards), []))
    assert real_tokens == sorted(b.tokens[b.loss_mask > 0].tolist())
    assert all(torch.equal(s.cu_seqlens, b.cu_seqlens) for s in shards)


@pytest.mark.parametrize("cp,multiple", [(2, 1), (3, 2)])
def test_context_parallel_shards_keep_each_tokens_per_token_values(cp, multiple):
    """Per-token advantage terms and teacher log-probs land on the rank of their token, next to it."""
    b = synthetic_packed_batch(seed=4, n_segments=5, vocab_size=64, min_len=3, max_len=13)
    g = torch.Generator().manual_seed(5)
    b = dataclasses.replace(
        b,
        token_advantage_terms=torch.randn(b.num_tokens, generator=g) * b.loss_mask,
        teacher_logprobs=-torch.rand(b.num_tokens, generator=g) * b.loss_mask,
    )

    def rows(x):
        keep = x.loss_mask > 0
        cols = (x.tokens, x.labels, x.token_advantage_terms, x.teacher_logprobs, x.token_advantages())
        return sorted(zip(*(c[keep].tolist() for c in cols), strict=True))

    shards = [split_for_context_parallel(b, cp, r, multiple) for r in range(cp)]
    assert sorted(sum((rows(s) for s in shards), [])) == rows(b)
