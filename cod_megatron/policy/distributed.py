"""Process-group setup for the trainer: torch.distributed, then megatron's model-parallel groups from the layout."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

from cod_megatron.config import ParallelLayout
from cod_megatron.infra.process_env import process_rank
from cod_megatron.policy import cpu_compat


def init_distributed(
    layout: ParallelLayout,
    *,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 1234,
    master_addr: str = "127.0.0.1",
    master_port: int | None = None,
    init_method: str | None = None,
) -> None:
    """Start gloo (CPU) or NCCL (GPU), build megatron's groups, seed the model-parallel RNG.

    The layout must account for exactly ``world_size`` trainer ranks. ``init_method`` (e.g. ``file:///tmp/x``)
    replaces the MASTER_ADDR/PORT rendezvous; tests use a file store so that no port has to be reserved ahead.
    """
    if layout.trainer_world_size != world_size:
        raise ValueError(f"layout needs {layout.trainer_world_size} trainer ranks (tp*cp*dp*pp), got {world_size}")
    cpu = not torch.cuda.is_available()
    # One process not started by a launcher (torchrun sets WORLD_SIZE): an in-memory store, no port to collide on,
    # even when a MASTER_PORT is inherited from a parent process.
    lone = world_size == 1 and init_method is None and master_port is None and not process_rank().launched
    if not dist.is_initialized() and lone:
        if not cpu:
            torch.cuda.set_device(0)
        dist.init_process_group("gloo" if cpu else "nccl", store=dist.HashStore(), rank=0, world_size=1)
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", master_addr)
        if master_port is not None:
            os.environ["MASTER_PORT"] = str(master_port)
        os.environ.setdefault("MASTER_PORT", "29500")
        if not cpu:
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group("gloo" if cpu else "nccl", rank=rank, world_size=world_size, init_method=init_method)
    parallel_state.initialize_model_parallel(**layout.megatron_kwargs(), create_gloo_process_groups=cpu)
    if cpu:
        cpu_compat.install(seed)
    else:
        model_parallel_cuda_manual_seed(seed)
    torch.manual_seed(seed)


def destroy_distributed() -> None:
    """Tear down megatron's groups and the default group (safe to call twice)."""
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
    cpu_compat.uninstall()


def broadcast_from_rank0(obj: object) -> object:
    """Rank 0's ``obj`` on every rank (pickled over the default group): the step's packed micro-batches."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def data_parallel_rank() -> int:
    """This rank's index among the data-parallel replicas (0 without process groups)."""
    if not parallel_state.model_parallel_is_initialized():
        return 0
    return parallel_state.get_data_parallel_rank()
