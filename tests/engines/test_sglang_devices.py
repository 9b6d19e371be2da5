"""Colocated SGLang engines get the CUDA-IPC payloads of the trainer ranks on THEIR GPUs (issue 26, item 6).

The loop's ``run_parts.ipc_engine_ranks`` asks each engine's owner for its GPUs' UUIDs and every trainer rank for its
own, and matches them; the placement here is shuffled (engine 0 on trainer rank 1's GPU), which the index rule gets
wrong. The engine side names its GPUs as Ray assigned them (indices resolved with ``nvidia-smi``, or UUIDs); the real
queries on a GPU are checked by ``test_device_uuids_agree_between_torch_and_nvidia_smi`` (marked ``gpu``).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import cod_recipes
from cod_megatron.config import ParallelLayout
from cod_megatron.config.device_map import ColocationError, normalize_uuid
from cod_megatron.engines.sglang.actor import plan_gpus, server_devices
from cod_megatron.engines.sglang.devices import parse_uuid_table, resolve_uuids
from tests.dist import init_method, spawn

GPU_A, GPU_B, GPU_C = (f"GPU-{c * 8}-0000-0000-0000-{c * 12}" for c in "abc")


class PlacedAt:
    """An engine whose owner reports the given GPUs."""

    def __init__(self, *uuids: str):
        self.uuids = list(uuids)

    def device_uuids(self) -> list[str]:
        return self.uuids


def _match_worker(rank: int, world: int):
    import torch.distributed as dist

    import cod_megatron.engines.sglang.devices as devices
    from cod_megatron.loop.run_parts import ipc_engine_ranks

    devices.local_gpu_uuid = lambda: [GPU_B, GPU_A][rank].removeprefix("GPU-")  # torch's spelling: bare
    dist.init_process_group("gloo", init_method=init_method(), rank=rank, world_size=world)
    cfg = cod_recipes.get("debug_cpu")
    cfg.rollout.engine, cfg.run.device = "sglang", "cuda"
    layout = ParallelLayout(
        tp=1, pp=1, cp=1, ep=1, dp=2, vpp=None, sequence_parallel=False,
        engines=2, engine_tp=1, colocated=True, gpus_per_node=8,
    )  # fmt: skip
    try:
        shuffled = [PlacedAt(GPU_A), PlacedAt(GPU_B)] if rank == 0 else []
        got = ipc_engine_ranks(cfg, layout, shuffled)
        foreign = [PlacedAt(GPU_A), PlacedAt(GPU_C)] if rank == 0 else []
        try:
            ipc_engine_ranks(cfg, layout, foreign)
            refused = None
        except ColocationError as exc:
            refused = str(exc)
        return got, layout.colocated_engine_ranks(), refused
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_the_loop_gives_each_colocated_engine_the_trainer_rank_on_its_gpu():
    """Trainer rank 0 on GPU B, rank 1 on GPU A; Ray put engine 0 on GPU A and engine 1 on GPU B."""
    for got, by_index, refused in spawn(_match_worker, 2):
        assert got == [[1], [0]] and by_index == [[0], [1]]  # every rank has the same answer, not the index guess
        assert refused is not None and "engine 1 TP rank 0 runs on GPU " + GPU_C in refused, refused


@pytest.mark.parametrize(
    "ray_ids,visible,want",
    [
        (["5", "2"], "5,2", ["5", "2"]),  # Ray's own mask, in its order: TP rank 0 on GPU 5
        (["3", "1"], None, ["1", "3"]),  # not contiguous: the server is narrowed to "1,3"
        (["6", "7"], "4,5,6,7", ["6", "7"]),  # a node-level mask: local ordinals 2 and 3
        ([GPU_B, GPU_A], f"{GPU_B},{GPU_A}", [GPU_B, GPU_A]),  # a node that lists its GPUs by UUID
    ],
)
def test_an_engine_names_its_gpus_as_its_server_sees_them(ray_ids, visible, want):
    base, narrowed = plan_gpus(ray_ids, 2, visible)
    assert server_devices(base, narrowed if narrowed is not None else visible, 2) == want


def test_gpu_indices_become_uuids_through_the_nodes_table():
    table = parse_uuid_table(f"0, {GPU_A}\n1, {GPU_B}\n2, {GPU_C}\n")
    assert resolve_uuids(["2", "0"], lambda: table) == [GPU_C, GPU_A]
    assert resolve_uuids([GPU_B], lambda: {}) == [GPU_B]  # UUIDs need no table
    with pytest.raises(ColocationError, match=r"\['7'\] are not on this node"):
        resolve_uuids(["7"], lambda: table)


@pytest.mark.gpu
def test_device_uuids_agree_between_torch_and_nvidia_smi():
    """Issue 26 item 6 on a GPU: the trainer's UUID (torch) and the engine's (nvidia-smi, by the index the process
    sees) name one GPU alike, so the match of colocated engines to trainer ranks holds on real devices."""
    import torch

    from cod_megatron.engines.sglang.devices import local_gpu_uuid, nvidia_smi_uuids

    # the engine side resolves Ray's GPU indices with nvidia-smi: without it colocated engines cannot be matched here
    assert shutil.which("nvidia-smi") is not None, "nvidia-smi is not on PATH: colocated engines cannot name their GPUs"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entry = server_devices(torch.cuda.current_device(), visible, 1)
    (engine_side,) = resolve_uuids(entry, nvidia_smi_uuids)
    assert normalize_uuid(engine_side) == normalize_uuid(local_gpu_uuid())
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    assert engine_side in listed
