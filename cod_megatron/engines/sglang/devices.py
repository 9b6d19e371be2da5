"""GPU UUIDs as the engines and the trainer ranks see them, and the colocated engine -> trainer ranks match built from
them (:func:`~cod_megatron.config.device_map.engine_ranks_by_device`).

* An engine's GPUs are named as its server sees them: ``CUDA_VISIBLE_DEVICES`` entries (Ray's ids: NVML indices, or
  UUIDs when the node lists them so) from ``base_gpu_id`` on, one per TP rank (:func:`.actor.server_devices`);
  indices are turned into UUIDs with ``nvidia-smi`` on the engine's node (it ignores ``CUDA_VISIBLE_DEVICES``, as
  Ray's ids do). The engine's owner (the actor) does this, so no CUDA context is made for it.
* A trainer rank's GPU is its current CUDA device, whose UUID torch reports (:func:`local_gpu_uuid`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from typing import Protocol

from cod_megatron.config.device_map import ColocationError, engine_ranks_by_device


class PlacedEngine(Protocol):
    """An engine whose owner can say which GPUs its TP ranks run on."""

    def device_uuids(self) -> list[str]:
        """The UUID of each engine TP rank's GPU, in TP-rank order."""
        ...


def parse_uuid_table(text: str) -> dict[str, str]:
    """``nvidia-smi --query-gpu=index,uuid --format=csv,noheader`` -> ``{index: uuid}``."""
    table = {}
    for line in text.splitlines():
        if "," in line:
            index, uuid = (part.strip() for part in line.split(",", 1))
            table[index] = uuid
    return table


def nvidia_smi_uuids() -> dict[str, str]:
    """NVML index -> UUID of every GPU of this node."""
    argv = ["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ColocationError(f"cannot list this node's GPU UUIDs with {' '.join(argv)}: {exc!r}") from exc
    return parse_uuid_table(out)


def resolve_uuids(entries: Sequence[str], table: Callable[[], dict[str, str]] = nvidia_smi_uuids) -> list[str]:
    """Each device entry (an NVML index or a ``GPU-``/``MIG-`` UUID) as a UUID; the table is read only if needed."""
    names = [str(e).strip() for e in entries]
    if all(n.lower().startswith(("gpu-", "mig-")) for n in names):
        return names
    known = table()
    missing = [n for n in names if not n.lower().startswith(("gpu-", "mig-")) and n not in known]
    if missing:
        raise ColocationError(f"GPU(s) {missing} are not on this node (nvidia-smi lists {sorted(known)})")
    return [n if n.lower().startswith(("gpu-", "mig-")) else known[n] for n in names]


def local_gpu_uuid() -> str:
    """The UUID of this process's current CUDA device (bare, as torch writes it)."""
    import torch

    return str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)


def colocated_engine_ranks(engines: Sequence[PlacedEngine]) -> list[list[int]]:
    """The trainer ranks on each engine's GPUs, in engine-TP-rank order, matched by UUID; collective over the trainer's
    world (every rank calls it; ``engines`` only on rank 0, ``[]`` elsewhere), the same answer on every rank.

    A mismatch (an engine GPU with no trainer rank) raises :class:`ColocationError` on every rank.
    """
    import torch.distributed as dist

    world = dist.is_available() and dist.is_initialized()
    mine = local_gpu_uuid()
    every: list[str | None] = [None] * dist.get_world_size() if world else [mine]
    if world:
        dist.all_gather_object(every, mine)
    answer: list[object] = [None]
    if not world or dist.get_rank() == 0:
        try:
            answer[0] = engine_ranks_by_device([e.device_uuids() for e in engines], [str(u) for u in every])
        except Exception as exc:  # every rank must hear of it (an engine that cannot answer, too)
            answer[0] = str(exc) if isinstance(exc, ColocationError) else f"{type(exc).__name__}: {exc}"
    if world:
        dist.broadcast_object_list(answer, src=0)
    if isinstance(answer[0], str):
        raise ColocationError(answer[0])
    return answer[0]  # type: ignore[return-value]


__all__ = [
    "PlacedEngine",
    "colocated_engine_ranks",
    "local_gpu_uuid",
    "nvidia_smi_uuids",
    "parse_uuid_table",
    "resolve_uuids",
]
