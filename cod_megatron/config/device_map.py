"""Which trainer rank feeds which colocated engine TP rank: matched by GPU UUID, the placement as it happened.

A colocated SGLang engine loads CUDA-IPC payloads, and a payload only opens on the GPU that made it, so engine ``e``'s
TP rank ``k`` must get the payload of the trainer rank on ITS GPU. Ray decides where each engine's bundle lands (and
the trainer's ranks are placed by the launcher), so engine ``e`` need not sit on GPUs ``e * engine_tp ..``: the index
rule of :meth:`~cod_megatron.config.layout.ParallelLayout.colocated_engine_ranks` is a guess, this is the match.
Pure: the UUIDs come from the engines' owners and the trainer ranks (``engines/sglang/devices.py``).
"""

from __future__ import annotations

from collections.abc import Sequence


class ColocationError(RuntimeError):
    """A colocated engine's GPU and the trainer ranks' GPUs do not pair up one to one."""


def normalize_uuid(uuid: str) -> str:
    """One spelling: nvidia-smi and Ray write ``GPU-<uuid>``, torch's device properties the bare UUID."""
    text = str(uuid).strip().lower()
    return text.removeprefix("gpu-")


def engine_ranks_by_device(engine_devices: Sequence[Sequence[str]], rank_devices: Sequence[str]) -> list[list[int]]:
    """``out[e][k]``: the trainer rank on the GPU of engine ``e``'s TP rank ``k``.

    ``engine_devices[e][k]`` is the UUID of that TP rank's GPU; ``rank_devices[r]`` the UUID of trainer rank ``r``'s.
    Refuses (:class:`ColocationError`, naming the GPU) an engine GPU that hosts no trainer rank, two trainer ranks on
    one GPU, and two engine TP ranks on one GPU.
    """
    by_uuid: dict[str, int] = {}
    for rank, uuid in enumerate(rank_devices):
        key = normalize_uuid(uuid)
        if key in by_uuid:
            raise ColocationError(f"trainer ranks {by_uuid[key]} and {rank} both run on GPU {uuid}")
        by_uuid[key] = rank
    taken: dict[str, tuple[int, int]] = {}
    out: list[list[int]] = []
    for e, devices in enumerate(engine_devices):
        ranks = []
        for k, uuid in enumerate(devices):
            key = normalize_uuid(uuid)
            if key in taken:
                raise ColocationError(
                    f"engine {e} TP rank {k} runs on GPU {uuid}, also the GPU of engine {taken[key][0]} "
                    f"TP rank {taken[key][1]}"
                )
            if key not in by_uuid:
                raise ColocationError(
                    f"engine {e} TP rank {k} runs on GPU {uuid}, which hosts no trainer rank (the trainer's GPUs: "
                    f"{list(rank_devices)}): a colocated engine must share its GPUs with trainer ranks"
                )
            taken[key] = (e, k)
            ranks.append(by_uuid[key])
        out.append(ranks)
    return out


__all__ = ["ColocationError", "engine_ranks_by_device", "normalize_uuid"]
