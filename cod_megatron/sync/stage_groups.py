"""Pipeline stages straight to SGLang engines: one update group per (stage, engine), hosted by the stage's source.

With PP > 1 every stage's source rank holds its own layers. Rank 0 owns the engines' HTTP clients, so for stage
s > 0 it has each server join a second update group whose rank 0 is that stage's source (another process, maybe
another node): SGLang keeps its update groups by name, so a server holds one per stage. Per bucket the source tells
rank 0 the tensors' names, dtypes and shapes over the stage's two-rank group (:mod:`.stages`); rank 0 POSTs them to
each engine (``/update_weights_from_distributed`` with that group's name) while the source broadcasts the tensors
in it. The bytes go source -> engine; rank 0 only carries the metadata. Engines without such groups (the embedded
one, test doubles) get the stage forwarded by rank 0 instead (:class:`~cod_megatron.sync.weight_sync.WeightSync`).

After each join and each bucket rank 0 tells the source how its POSTs went, and the source waits on that verdict, not
on its own collective (which runs in a thread, :mod:`cod_megatron.engines.sglang.collective_post`): a server that
answered an error never takes part, so the source gives the group up and raises the server's message at once instead
of waiting for the group's timeout. Rank 0 raises the same error; both forget the stage's groups (joined again).

Groups are made lazily, at the first sync that needs them, and again for an engine whose server changed (a
restart gives a new URL). Every exchange here is between rank 0 and one stage source; other ranks take no part.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist

from cod_megatron.engines.sglang.collective_post import collective_until_verdict
from cod_megatron.engines.sglang.update_group import (
    UPDATE_TIMEOUT,
    PendingJoin,
    free_port,
    node_address,
    tensor_broadcaster,
)
from cod_megatron.sync.buckets import bucketed, tensor_nbytes, with_last
from cod_megatron.sync.stages import StagePlan

_WAIT_S = UPDATE_TIMEOUT.total_seconds()
"""How long a source waits for its join or broadcast once rank 0's POSTs succeeded (the group's own timeout)."""


def accepts_stage_groups(targets: Sequence[Any]) -> bool:
    """Every target is an SGLang engine whose weights come by update-group broadcast."""
    return bool(targets) and all(
        getattr(getattr(e, "client", None), "transport", None) == "distributed" for e in targets
    )


def _exchange(obj: Any, src: int, group: dist.ProcessGroup) -> Any:
    """``obj`` from global rank ``src`` to the other member of a two-rank group."""
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=group)
    return box[0]


def _posted(group: dist.ProcessGroup, post: Callable[[], object]) -> None:
    """Rank 0: ``post()``, then its outcome to the stage's source (None, or the error it re-raises here)."""
    try:
        post()
    except Exception as exc:
        _exchange(f"{type(exc).__name__}: {exc}", 0, group)
        raise
    _exchange(None, 0, group)


class StageGroups:
    """Rank 0's and the stage sources' halves of the per-stage update groups (built on every rank, used by two)."""

    def __init__(self, plan: StagePlan, *, backend: str):
        self.plan, self.backend = plan, backend
        self.device = "cuda" if backend == "nccl" else "cpu"
        self._names: dict[tuple[int, str], str] = {}
        """Rank 0: (stage, server URL) -> the name of that engine's group with the stage's source."""
        self._members: dict[str, dist.ProcessGroup] = {}
        """A source: group name -> its own member (rank 0 of the group)."""
        self._serial = itertools.count()

    # ---- rank 0 ----
    def connect(self, stage: int, targets: Sequence[Any]) -> list[str] | None:
        """Rank 0, before stage ``stage`` is sent: the group names to use, one per engine (None: forward instead).
        Servers that have no group with this stage's source yet join one now, together with the source."""
        src, group = self.plan.sources[stage], self.plan.groups[stage]
        if not accepts_stage_groups(targets):
            _exchange({"names": None, "joins": []}, 0, group)
            return None
        joins, names = [], []
        for e in targets:
            name = self._names.get((stage, e.client.url))
            if name is None:  # a new server (or the first sync): it joins a group with this stage's source
                name = f"cod-stage{stage}#{next(self._serial)}"
                joins.append((e, name, 1 + int(e.client.server_info().get("tp_size", 1))))
            names.append(name)
        _exchange({"names": names, "joins": [(name, world) for _, name, world in joins]}, 0, group)
        for e, name, world in joins:
            address, port = _exchange(None, src, group)

            def post(e=e, name=name, world=world, address=address, port=port) -> None:
                e.client.init_weights_update_group(address, port, 1, world, backend=self.backend, group_name=name)

            _posted(group, post)
            self._names[(stage, e.client.url)] = name
        return names

    def receive(
        self, stage: int, targets: Sequence[Any], names: list[str], version: int, *, closes: bool
    ) -> tuple[int, int]:
        """Rank 0: each bucket's metadata from the source, POSTed to every engine while the source broadcasts;
        returns the stage's bytes and buckets."""
        src, group, nbytes, n = self.plan.sources[stage], self.plan.groups[stage], 0, 0
        while True:
            header = _exchange(None, src, group)

            def post(header=header) -> None:
                for e, name in zip(targets, names, strict=True):
                    e.client.update_weights_broadcast_elsewhere(
                        header["meta"], version=version, last=header["last"] and closes, group_name=name
                    )

            try:
                _posted(group, post)
            except Exception:
                for e in targets:  # the source gave every group of this stage up: joined again at the next sync
                    self._names.pop((stage, e.client.url), None)
                raise
            n += 1
            nbytes += sum(math.prod(shape) * getattr(torch, dtype).itemsize for _, dtype, shape in header["meta"])
            if header["last"]:
                return nbytes, n

    # ---- a stage source ----
    def join(self) -> list[str] | None:
        """The source's side of :meth:`connect`: the groups to broadcast in (None: send to rank 0 to forward)."""
        me, group = self.plan.sources[self.plan.stage], self.plan.groups[self.plan.stage]
        spec = _exchange(None, 0, group)
        if spec["names"] is None:
            return None
        for name, world in spec["joins"]:
            port = free_port()
            _exchange((node_address(), port), me, group)
            pending = PendingJoin(node_address(), port, world, name, self.backend)
            collective_until_verdict(
                pending.join, lambda: _exchange(None, 0, group), abort=pending.abort, timeout_s=_WAIT_S, what=name
            )
            self._members[name] = pending.group()
        return spec["names"]

    def send(self, stream: Iterator[tuple[str, torch.Tensor]], names: list[str], bucket_bytes: int) -> tuple[int, int]:
        """The source: its stage in buckets, each named to rank 0, then broadcast in every engine's group."""
        me, group = self.plan.sources[self.plan.stage], self.plan.groups[self.plan.stage]
        casts = [tensor_broadcaster(self._members[name], self.device) for name in names]

        def give_up() -> None:  # rank 0 forgets every group of this stage too
            for name, cast in zip(names, casts, strict=True):
                cast.abort()
                self._members.pop(name, None)

        nbytes, n = 0, 0
        for bucket, last in with_last(bucketed(stream, bucket_bytes, lambda item: tensor_nbytes(item[1]))):
            meta = [(name, str(t.dtype).removeprefix("torch."), list(t.shape)) for name, t in bucket]
            _exchange({"meta": meta, "last": last}, me, group)

            def cast_all(bucket=bucket) -> None:
                for cast in casts:
                    cast(bucket)

            collective_until_verdict(
                cast_all, lambda: _exchange(None, 0, group), abort=give_up, timeout_s=_WAIT_S, what=f"stage {me}"
            )
            nbytes, n = nbytes + sum(tensor_nbytes(t) for _, t in bucket), n + 1
        return nbytes, n
