"""The trainer side of ``/update_weights_from_tensor``: one engine TP rank's payload in SGLang 0.5.23's wire format.

The format (``python/sglang/srt/utils/common.py`` ``MultiprocessingSerializer.serialize(obj, output_str=True)``):
``base64(ForkingPickler(buf).dump(obj))`` with ``obj`` the bucket as a list of ``(name, tensor)``. The server decodes
it (``pybase64.b64decode(validate=True)``) and loads it with ``SafeUnpickler``, an allowlist of torch's rebuild
functions, storages, dtypes and a few builtins (anything else: ``RuntimeError("Blocked unsafe global ...")``); each
engine TP rank loads only its own entry, ``serialized_named_tensors[tp_rank]`` (``tp_worker.deserialize_own_rank``).

What travels is a handle, not the data, so a payload only works while its tensors live and only on one host:

* CUDA tensors become CUDA-IPC handles (torch's reductions). By default they name the device by the producer's
  index, which is right only when trainer and engine see the same devices (same ``CUDA_VISIBLE_DEVICES``). When
  ``sglang`` is importable (a cluster install) its ``monkey_patch_torch_reductions`` is applied first: the device is
  named by UUID, and the server (which applies the same patch) finds it under its own numbering. Each payload must be
  loaded exactly once: torch counts the consumers of a sent block, and one never opened keeps it allocated.
* CPU tensors (CPU tests) go through shared memory. torch's default ``file_descriptor`` strategy hands the fd over
  ``multiprocessing.resource_sharer``, whose connection is authenticated with the producer's ``authkey``, so an
  unrelated process (a server launched on its own) fails with ``AuthenticationError``. The ``file_system`` strategy
  names a shared-memory file instead, which any process on the host can open; it is set only while pickling (under a
  lock, the previous strategy restored) and the tensors are copied first, so parameters are not moved to shared
  memory. SGLang's patch is not applied then: it rewrites argument 6 of every reduction and breaks CPU tensors
  (``IndexError``). The files are served by a ``torch_shm_manager`` daemon the producer starts; it inherits the
  producer's open descriptors and lives until every process that opened one of its files has ended.

The caller keeps the tensors alive until the engine answered (:class:`~cod_megatron.sync.weight_sync.WeightSync` holds
its bucket until rank 0's POSTs returned).
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.reduction import ForkingPickler

import torch
import torch.multiprocessing

log = logging.getLogger(__name__)

_STRATEGY_LOCK = threading.Lock()
_PATCHED: list[bool] = []


def sglang_reductions_patched() -> bool:
    """Apply SGLang's device-UUID reductions if sglang is importable; True when they are in place."""
    if not _PATCHED:
        try:
            from sglang.srt.utils.patch_torch import monkey_patch_torch_reductions

            monkey_patch_torch_reductions()
            _PATCHED.append(True)
        except Exception as exc:  # no sglang on this machine (or a broken install): device indices it is
            log.info("sglang's torch reductions unavailable (%r); CUDA-IPC handles name devices by index", exc)
            _PATCHED.append(False)
    return _PATCHED[0]


@contextmanager
def _file_system_sharing() -> Iterator[None]:
    """torch's ``file_system`` sharing strategy for the duration of the block (it is process-wide, hence the lock)."""
    with _STRATEGY_LOCK:
        before = torch.multiprocessing.get_sharing_strategy()
        torch.multiprocessing.set_sharing_strategy("file_system")
        try:
            yield
        finally:
            torch.multiprocessing.set_sharing_strategy(before)


def serialize_named_tensors(named_tensors: list[tuple[str, torch.Tensor]]) -> str:
    """One engine TP rank's entry of ``serialized_named_tensors``, made from this process's tensors.

    All tensors of a bucket must be on CUDA or all on CPU (one weight sync exports from one device).
    """
    devices = {t.device.type for _, t in named_tensors}
    if not devices <= {"cuda", "cpu"} or len(devices) > 1:
        raise ValueError(f"a payload holds CUDA or CPU tensors, not a mix or others: {sorted(devices)}")
    buf = io.BytesIO()
    if devices == {"cuda"}:
        sglang_reductions_patched()
        ForkingPickler(buf).dump([(name, t.detach()) for name, t in named_tensors])
    else:
        copies = [(name, t.detach().clone(memory_format=torch.contiguous_format)) for name, t in named_tensors]
        with _file_system_sharing():
            ForkingPickler(buf).dump(copies)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def serializer_for(engine_tp: int) -> Callable[[list[tuple[str, torch.Tensor]]], list[str]]:
    """``SGLangEngine(serializer=...)``: the whole ``serialized_named_tensors`` list when this one process feeds the
    engine, which holds only for ``engine_tp == 1``; a larger engine takes one payload per TP rank, each made by the
    trainer rank on that GPU (``WeightSync``'s colocated path sends those with ``update_weights_serialized``)."""

    def one_rank(named_tensors: list[tuple[str, torch.Tensor]]) -> list[str]:
        if engine_tp != 1:
            raise ValueError(
                f"an engine at TP {engine_tp} takes {engine_tp} payloads, each from the trainer rank on its GPU; "
                "sync colocated engines with WeightSync(engine_ranks=run_parts.ipc_engine_ranks(cfg, layout, engines))"
            )
        return [serialize_named_tensors(named_tensors)]

    return one_rank


__all__ = ["serialize_named_tensors", "serializer_for", "sglang_reductions_patched"]
