"""Byte-bounded buckets: the one bucketing of weight sync.

Used by :class:`~cod_megatron.sync.weight_sync.WeightSync` and by the torch.distributed transports
(:mod:`cod_megatron.sync.dist_transport`).

Buckets bound the bytes in flight per call, as SGLang's ``update_weights_from_distributed`` /
``update_weights_from_tensor`` want. They are consecutive (the order of the tensors is kept) and hold at most
``bucket_bytes`` each, except that a tensor larger than the bound goes alone. The engine serves the new weights
only once the ``last`` bucket has arrived, which :func:`with_last` marks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch


def tensor_nbytes(t: torch.Tensor) -> int:
    """Bytes of one tensor's data."""
    return t.numel() * t.element_size()


def bucketed[T](items: Iterable[T], bucket_bytes: int, nbytes: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive groups of ``items`` of at most ``bucket_bytes`` each by ``nbytes`` (a larger item goes alone)."""
    bucket: list[T] = []
    size = 0
    for item in items:
        n = nbytes(item)
        if bucket and size + n > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append(item)
        size += n
    if bucket:
        yield bucket


def buckets(tensors: Mapping[str, torch.Tensor], bucket_bytes: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Consecutive groups of named tensors of at most ``bucket_bytes`` each (a larger tensor goes alone)."""
    yield from bucketed(tensors.items(), bucket_bytes, lambda item: tensor_nbytes(item[1]))


def with_last(it: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """Each item with ``True`` on the final one (one item of look-ahead, so a stream needs no length)."""
    it = iter(it)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, False
        prev = item
    yield prev, True
