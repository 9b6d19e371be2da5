"""Run a function in N spawned gloo ranks and collect what each returns (torch-saved through a temp dir)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_method(tag: str = "default") -> str:
    """A file-store rendezvous private to this spawn (no port to reserve, so no race with other sockets)."""
    return f"file://{os.environ['COD_TEST_STORE_DIR']}/store_{tag}"


@contextmanager
def gloo_group(rank: int, world_size: int) -> Iterator[None]:
    """This spawned rank joins the spawn's gloo group (``init_method``) for the block; the group is destroyed after."""
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world_size, init_method=init_method())
    try:
        yield
    finally:
        dist.destroy_process_group()


def vocab_shard(weight: torch.Tensor, rank: int, world_size: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Rank ``rank``'s rows of a vocab-parallel ``[V, H]`` LM-head weight (``chunk``'s split: uneven for odd V) and
    the TP keywords of the fused kernels for it: its first vocab row, the world group, the hidden gradient reduced."""
    import torch.distributed as dist

    shards = weight.chunk(world_size)
    start = sum(s.shape[0] for s in shards[:rank])
    return shards[rank], dict(vocab_start=start, group=dist.group.WORLD, reduce_hidden_grad=True)


def _entry(rank: int, fn: Callable, world_size: int, port: int, out_dir: str, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        COD_TEST_STORE_DIR=out_dir,
    )
    torch.set_num_threads(1)
    result = fn(rank, world_size, *args)
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def spawn(fn: Callable, world_size: int, *args: Any) -> list[Any]:
    """Call ``fn(rank, world_size, *args)`` in ``world_size`` processes; returns the per-rank results."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_entry, args=(fn, world_size, free_port(), out_dir, args), nprocs=world_size, join=True)
        return [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=False) for r in range(world_size)]
