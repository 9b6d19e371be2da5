"""The interleaved schedule's micro-batches: one length, a multiple of pp, and the same loss tokens."""

import pytest
import torch

from cod_megatron.data import synthetic_packed_batch
from cod_megatron.data.denominators import segment_offsets
from cod_megatron.policy.microbatches import fixed_shape_microbatches


@pytest.mark.parametrize(("count", "pp", "want"), [(3, 2, 4), (4, 2, 4), (1, 2, 2), (5, 4, 8), (2, 4, 4)])
def test_padded_to_the_longest_and_filled_to_a_multiple_of_pp(count, pp, want):
    batches = [synthetic_packed_batch(seed=i, n_segments=3, vocab_size=50, max_len=19) for i in range(count)]
    items = list(zip(batches, segment_offsets(batches), strict=True))
    out, length = fixed_shape_microbatches(items, pp)
    assert length == max(b.num_tokens for b in batches)
    assert len(out) == want and all(b.num_tokens == length for b, _ in out)
    for (orig, offset), (padded, got_offset) in zip(items, out, strict=False):
        n = orig.num_tokens
        assert got_offset == offset
        assert torch.equal(padded.tokens[:n], orig.tokens) and torch.equal(padded.loss_mask[:n], orig.loss_mask)
        assert padded.loss_mask[n:].sum() == 0  # padding is its own segment without loss tokens
        assert torch.equal(padded.cu_seqlens[: orig.num_segments + 1], orig.cu_seqlens)
    total_segments = sum(b.num_segments for b in batches)
    for filler, offset in out[count:]:
        assert filler.loss_mask.sum() == 0 and offset == total_segments  # no sample id of the step
