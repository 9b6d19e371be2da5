"""Counting host reads of tensor values on any device: each one is a device-to-host sync on a GPU.

The CPU suite has no device to sync with, so the hot-path tests count the calls that would sync there instead.
Two hooks, because neither sees everything: Python-level methods (``tolist``, ``item``, ``__bool__`` ... -- a dispatch
mode never sees ``.tolist()``, which reads memory in C++) are patched on ``torch.Tensor``; ops whose output size
depends on the values (``nonzero``, boolean-mask indexing, ``unique`` ...) are seen by a dispatch mode, also where
they run inside another op. GPU tests use ``torch.cuda.set_sync_debug_mode("error")`` for the same question.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

READ_METHODS = ("tolist", "item", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy")
"""Tensor methods that hand values (or a host copy) to Python."""
SIZE_FROM_VALUES = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
}
"""Ops whose output shape is only known after reading the input's values."""


class _ValueSizedOps(TorchDispatchMode):
    def __init__(self, counts: collections.Counter):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SIZE_FROM_VALUES and not (func is aten.repeat_interleave.Tensor and "output_size" in kwargs):
            self.counts[str(func)] += 1
        elif func is aten.index.Tensor and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
        ):  # x[mask]
            self.counts["index by a bool mask"] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_host_reads() -> Iterator[collections.Counter]:
    """A Counter of host reads (by method or op name) made inside the block, forward and backward alike."""
    counts: collections.Counter = collections.Counter()
    saved = {name: torch.Tensor.__dict__.get(name) for name in READ_METHODS}

    inside = threading.local()

    def counting(name: str):
        original = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            if getattr(inside, "read", False):  # a torch-function mode (cpu_compat's) calls the method again
                return original(self, *args, **kwargs)
            counts[name] += 1
            inside.read = True
            try:
                return original(self, *args, **kwargs)
            finally:
                inside.read = False

        return method

    for name in READ_METHODS:
        setattr(torch.Tensor, name, counting(name))
    try:
        with _ValueSizedOps(counts):
            yield counts
    finally:
        for name, original in saved.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)
