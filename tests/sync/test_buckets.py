"""Byte-bounded buckets, shared by WeightSync and the distributed transports."""

import torch

from cod_megatron.sync.buckets import buckets


def test_buckets_bound_bytes_and_keep_every_tensor():
    tensors = {f"t{i}": torch.zeros(i + 1) for i in range(10)}  # 4 .. 40 bytes
    groups = list(buckets(tensors, bucket_bytes=48))
    assert [n for g in groups for n, _ in g] == list(tensors)
    assert all(sum(t.numel() * 4 for _, t in g) <= 48 or len(g) == 1 for g in groups)
