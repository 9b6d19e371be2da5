"""The trainer's side of SGLang's weight-update group: rank 0 of a process group outside the trainer's own world.

SGLang's ``/init_weights_update_group`` has every server rank join a torch process group named ``group_name`` through
a TCP rendezvous at ``master_address:master_port`` (``world_size`` = 1 trainer rank + the engine's TP ranks, the
server's at ``rank_offset ..``); ``/update_weights_from_distributed`` then receives each tensor of a bucket by
``broadcast(src=0)`` in that group. The trainer must build the same group the same way -- a TCP store hosted by rank
0, the group's keys under the ``group_name`` prefix, a backend made by torch's own group constructor -- because a
group made any other way would not find the server's keys in the store. The trainer's default world is untouched.

:func:`join_update_group` makes rank 0's member (it blocks until every server rank has joined, so it runs while the
engine's ``init_weights_update_group`` POST is in flight); :func:`tensor_broadcaster` is the ``broadcast`` callable an
:class:`~cod_megatron.engines.sglang.client.SGLangEngine` sends buckets with; :func:`connect_engine` does both for
one engine. A POST that fails while the join or a broadcast waits gives the group up (:func:`abort_update_group`,
through :mod:`.collective_post`). On CPU the backend is gloo (the stand-in server joins with
:func:`join_update_group` as its ranks).
"""

from __future__ import annotations

import inspect
import itertools
import socket
import threading
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import distributed_c10d as c10d

UPDATE_TIMEOUT = timedelta(minutes=10)


def free_port() -> int:
    """A TCP port free on this host right now (the rendezvous binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def node_address() -> str:
    """This node's address as other nodes reach it (Ray's view when Ray runs, else the host name's address)."""
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except ImportError:
        pass
    return socket.gethostbyname(socket.gethostname())


def join_update_group(
    master_address: str,
    master_port: int,
    world_size: int,
    group_name: str,
    *,
    rank: int = 0,
    backend: str = "nccl",
    timeout: timedelta = UPDATE_TIMEOUT,
) -> dist.ProcessGroup:
    """This process's member (``rank``; 0 = the trainer, which hosts the store) of the update group ``group_name``.

    Rendezvous over TCP, keys under ``group_name``, the backend from torch's group constructor (what SGLang's
    ``init_custom_process_group`` does on the server side), registered with identity ranks so that ``dist.broadcast(
    ..., group=pg)`` works outside the default world.
    """
    store, rank, world_size = next(
        c10d.rendezvous(f"tcp://{master_address}:{master_port}", rank, world_size, timeout=timeout)
    )
    store.set_timeout(timeout)
    options = (
        "backend_options"
        if "backend_options" in inspect.signature(c10d._new_process_group_helper).parameters
        else "pg_options"
    )
    group, _ = c10d._new_process_group_helper(
        world_size,
        rank,
        [],
        c10d.Backend(backend),
        dist.PrefixStore(group_name, store),
        group_name=group_name,
        timeout=timeout,
        **{options: None},
    )
    c10d._world.pg_group_ranks[group] = {i: i for i in range(world_size)}
    return group


def abort_update_group(group: dist.ProcessGroup) -> None:
    """Give ``group`` up after a failed update, while a collective may still wait in it (another thread's).

    NCCL aborts the communicator (a kernel waiting for the server returns, the GPU stream is free again). gloo has no
    usable abort (torch 2.14 crashes the process at exit after one), so a gloo group is destroyed: a thread blocked
    in it stays blocked until the peer goes away or the group's timeout. A group already given up is left alone.
    """
    if group not in c10d._world.pg_map:
        return
    if dist.get_backend(group) == "nccl":
        c10d._abort_process_group(group)
    else:
        dist.destroy_process_group(group)


class GroupBroadcast:
    """The ``broadcast`` of an SGLang engine: each tensor of a bucket, in order, from rank 0 of ``group``; ``abort``
    gives the group up after a failed update (every later call refuses: join a new group)."""

    def __init__(self, group: dist.ProcessGroup, device: str | torch.device = "cpu"):
        self.group, self.aborted = group, False
        if str(device) == "cuda":  # this thread's GPU, by index: the broadcast may run in another thread
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device

    def __call__(self, named_tensors: list[tuple[str, torch.Tensor]]) -> None:
        if self.aborted:
            raise RuntimeError("this update group was aborted after a failed update; join a new one")
        for _, tensor in named_tensors:
            dist.broadcast(tensor.detach().to(self.device).contiguous(), src=0, group=self.group)

    def abort(self) -> None:
        """:func:`abort_update_group`, once."""
        if not self.aborted:
            self.aborted = True
            abort_update_group(self.group)


def tensor_broadcaster(group: dist.ProcessGroup, device: str | torch.device = "cpu") -> GroupBroadcast:
    """The ``broadcast`` of an SGLang engine into ``group`` (a :class:`GroupBroadcast`)."""
    return GroupBroadcast(group, device)


_GROUPS: dict[int, tuple[str, dist.ProcessGroup]] = {}
"""This process's update group per engine client (``id``), so that a re-connect leaves the old one first."""
_SERIAL = itertools.count()


def connect_engine(
    engine: Any, master_address: str, master_port: int, *, engine_tp: int = 1, backend: str = "nccl"
) -> dist.ProcessGroup:
    """Join a fresh update group with ``engine``'s server as its rank 0 and give the engine the broadcast into it.

    ``engine`` is an :class:`~cod_megatron.engines.sglang.client.SGLangEngine` with ``transport="distributed"``; its
    server ranks are ``1 .. engine_tp``. The trainer holds one group per engine, so each gets its own name (torch
    registers group names per process); call again after the engine restarts (a new server, a new group).
    """
    base = engine.group_name.split("#", 1)[0]
    engine.group_name = f"{base}#{next(_SERIAL)}"
    joined = PendingJoin(master_address, master_port, 1 + engine_tp, engine.group_name, backend)
    leave_update_group(engine)
    engine.init_weights_update_group(
        master_address, master_port, 1, 1 + engine_tp, join=joined.join, abort=joined.abort, backend=backend
    )
    group = joined.group()
    _GROUPS[id(engine)] = (engine.group_name, group)
    cast = tensor_broadcaster(group, "cuda" if backend == "nccl" else "cpu")
    engine.broadcast, engine.abort_group = cast, cast.abort
    return group


class PendingJoin:
    """This process's join of one update group (``join`` blocks, so it runs in a thread), which a failed
    ``/init_weights_update_group`` may abandon half-way (``abort``): a group made after it was abandoned is given up
    at once, and ``group()`` refuses."""

    def __init__(self, master_address: str, master_port: int, world_size: int, name: str, backend: str):
        self.args, self.backend = (master_address, master_port, world_size, name), backend
        self._lock, self._group, self._abandoned = threading.Lock(), None, False

    def join(self) -> None:
        """:func:`join_update_group`; blocks until every member joined."""
        group = join_update_group(*self.args, backend=self.backend)
        with self._lock:
            self._group = group
            if self._abandoned:
                abort_update_group(group)

    def abort(self) -> None:
        """Abandon the join; a group already made is given up (:func:`abort_update_group`)."""
        with self._lock:
            self._abandoned = True
            if self._group is not None:
                abort_update_group(self._group)

    def group(self) -> dist.ProcessGroup:
        """The joined group (raises if the join did not complete or was abandoned)."""
        if self._group is None or self._abandoned:
            raise RuntimeError(f"the update group {self.args[3]} was not joined")
        return self._group


def leave_update_group(engine: Any) -> None:
    """Destroy this process's member of ``engine``'s current update group, if it has one."""
    if (old := _GROUPS.pop(id(engine), None)) is not None and old[1] in c10d._world.pg_map:  # not aborted already
        dist.destroy_process_group(old[1])
