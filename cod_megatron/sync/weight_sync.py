"""Weight sync: the trainer's Megatron weights -> HF names -> bucketed updates to every rollout engine.

The conversion is :func:`cod_megatron.policy.hf_export.hf_weight_stream` (TP shards gathered, fused q/k/v and gate/up
split into HF tensors), the one mapping the checkpoint converter uses too. It is streamed: parameters are gathered
one at a time into a bucket on their own device, the bucket is sent and dropped, so a rank holds at most one bucket
plus the parameter being gathered (its shards and its HF tensors) -- never a copy of the model; the stream flags its
final tensor, so closing the update needs no look-ahead. Buckets bound the bytes per call, as SGLang's
``update_weights_from_distributed`` / ``update_weights_from_tensor`` want; the engine serves the new version only
once the ``last`` bucket has arrived.

Colocated SGLang engines (``engine_ranks``) load CUDA-IPC handles, which only the process owning a tensor can make,
and each engine TP rank loads from its own GPU: so EVERY rank streams the export (the TP all-gathers leave the full HF
tensors on every TP rank, and DP replicas hold the same weights), serializes each bucket from its own device
(:mod:`cod_megatron.engines.sglang.ipc`), the payloads are gathered to rank 0, and rank 0 POSTs to engine ``e`` the
payloads of the ranks on its GPUs in engine-TP order. Rank 0 then broadcasts its outcome, which doubles as the
barrier: no rank frees its bucket before the engines loaded it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist

from cod_megatron.config import ModelConfig
from cod_megatron.engines.interface import InferenceEngine, SerializedWeightsEngine
from cod_megatron.engines.sglang.ipc import serialize_named_tensors
from cod_megatron.policy.hf_export import hf_weight_stream, iter_hf_weights
from cod_megatron.sync.buckets import tensor_nbytes
from cod_megatron.sync.dist_transport import BroadcastReceiver, BroadcastSender
from cod_megatron.sync.stage_groups import StageGroups
from cod_megatron.sync.stages import stage_plan


class WeightSync:
    """Pushes the policy's weights to the engines; ``version`` is the trainer step they come from.

    Built on every rank (with pipeline parallelism the stage plan's groups are created here, collectively); only
    global rank 0 holds engines. ``engine_ranks`` (``run_parts.ipc_engine_ranks``: matched by GPU UUID, the same on
    every rank) selects the colocated CUDA-IPC path: engine ``e`` then has ``update_weights_serialized`` and takes the
    payloads of ranks ``engine_ranks[e]``.
    """

    def __init__(
        self,
        model_cfg: ModelConfig,
        engines: Sequence[InferenceEngine],
        bucket_bytes: int = 64 << 20,
        engine_ranks: Sequence[Sequence[int]] | None = None,
    ):
        self.model_cfg, self.engines, self.bucket_bytes = model_cfg, list(engines), bucket_bytes
        self.engine_ranks = None if engine_ranks is None else [list(r) for r in engine_ranks]
        self.version = -1
        self.stages = stage_plan()
        if self.engine_ranks is not None and self.stages is not None:
            raise RuntimeError("colocated CUDA-IPC weight sync needs pp=1: a rank must hold every HF tensor")
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        self.stage_groups = None if self.stages is None else StageGroups(self.stages, backend=backend)

    def sync(
        self,
        model: torch.nn.Module | Sequence[torch.nn.Module],
        version: int,
        engines: Sequence[InferenceEngine] | None = None,
    ) -> dict[str, float]:
        """Stream the export once, each bucket to every engine (default: all) before the next is gathered; returns
        seconds, bytes and bucket count. Every rank runs it: the TP gathers are collective. With pipeline
        parallelism each stage's source broadcasts its stage straight to SGLang engines in its own update groups
        (:mod:`.stage_groups`; rank 0 names the tensors in the POSTs), or, for other engines, sends it to rank 0,
        which forwards it; stage after stage, only the last stage's final bucket is ``last``. A rank without
        engines only takes part. With ``engine_ranks`` every rank serializes its own copy of each bucket and rank 0
        sends them (the colocated path, module docstring)."""
        t0 = time.perf_counter()
        targets = list(self.engines if engines is None else engines)
        plan = self.stages
        if plan is not None and engines is not None:
            raise RuntimeError(
                "with pipeline parallelism a weight sync is collective over every stage: a single engine restarted "
                "mid-rollout cannot be re-synced from rank 0 alone; resume the run from its last checkpoint"
            )
        device = "cuda" if torch.cuda.is_available() else "cpu"  # NCCL moves CUDA buffers, gloo CPU ones
        if self.engine_ranks is not None:
            nbytes, n = self._stream_ipc(model, targets, version, chosen=engines is not None)
        elif plan is None:
            nbytes, n = self._stream(model, targets, version, closes=True)
        elif plan.stage != 0:
            stream = iter_hf_weights(model, self.model_cfg)
            names = self.stage_groups.join() if plan.is_source else None
            if names is not None:  # straight to the SGLang engines, in this stage's own update groups
                nbytes, n = self.stage_groups.send(stream, names, self.bucket_bytes)
            elif plan.is_source:
                sender = BroadcastSender(plan.groups[plan.stage], bucket_bytes=self.bucket_bytes, device=device)
                stats = sender.send(stream, version)
                nbytes, n = int(stats["sync/bytes"]), int(stats["sync/buckets"])
            else:
                nbytes, n = sum(tensor_nbytes(t) for _, t in stream), 0  # only the TP all-gathers
        else:
            nbytes, n = self._stream(model, targets, version, closes=False)
            for s in range(1, plan.num_stages) if plan.is_source else ():
                closes = s == plan.num_stages - 1
                names = self.stage_groups.connect(s, targets)
                if names is not None:  # the stage's source broadcasts to the engines; rank 0 names the tensors
                    stage_bytes, stage_buckets = self.stage_groups.receive(s, targets, names, version, closes=closes)
                    nbytes, n = nbytes + stage_bytes, n + stage_buckets
                    continue
                forward = _Forward(targets, closes=closes)
                stats = BroadcastReceiver(forward, plan.groups[s], plan.sources[s], device=device).receive()
                nbytes, n = nbytes + int(stats["sync/bytes"]), n + int(stats["sync/buckets"])
        self.version = version
        return {"sync/seconds": time.perf_counter() - t0, "sync/bytes": float(nbytes), "sync/buckets": float(n)}

    def _stream(
        self, model: torch.nn.Module | Sequence[torch.nn.Module], targets: list, version: int, *, closes: bool
    ) -> tuple[int, int]:
        """This rank's stage, bucket by bucket, to ``targets``; ``closes``: its final bucket is the update's last."""
        nbytes, n = 0, 0
        for bucket, last in self._buckets(model):
            for engine in targets:
                engine.update_weights(bucket, version=version, last=last and closes)
            nbytes, n = nbytes + sum(tensor_nbytes(t) for _, t in bucket), n + 1
            del bucket  # before the stream gathers the next one: one bucket alive at a time
        return nbytes, n

    def _buckets(self, model: torch.nn.Module | Sequence[torch.nn.Module]) -> Iterator[tuple[list, bool]]:
        """The streamed export cut into buckets of at most ``bucket_bytes`` (or one tensor), the final one flagged."""
        bucket: list[tuple[str, torch.Tensor]] = []
        size = 0
        for name, tensor, last in hf_weight_stream(model, self.model_cfg):
            if bucket and size + tensor_nbytes(tensor) > self.bucket_bytes:
                yield bucket, False
                bucket, size = [], 0
            bucket.append((name, tensor))
            size += tensor_nbytes(tensor)
            if last:
                yield bucket, True
                bucket = []

    def _stream_ipc(
        self, model: torch.nn.Module | Sequence[torch.nn.Module], targets: list, version: int, *, chosen: bool
    ) -> tuple[int, int]:
        """The colocated path (module docstring): every rank serializes each bucket, rank 0 sends all payloads;
        ``chosen``: only some engines are synced (a restarted one), which a single process can do alone."""
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        ranks = self.engine_ranks or []
        if chosen and world > 1:
            raise RuntimeError(
                "a colocated weight sync is collective over every trainer rank: a single engine restarted "
                "mid-rollout cannot be re-synced from rank 0 alone; resume the run from its last checkpoint"
            )
        if any(not 0 <= r < world for per in ranks for r in per):  # the same on every rank: all raise
            raise ValueError(f"engine_ranks {ranks} name ranks outside the trainer's {world}")
        mismatch, need = None, []
        if rank == 0 and len(self.engines) != len(ranks):  # only rank 0 holds engines: say it with the outcome
            mismatch = f"engine_ranks {ranks} do not fit {len(self.engines)} engine(s)"
        elif rank == 0:
            need = [ranks[self.engines.index(e)] for e in targets]
        nbytes, n = 0, 0
        for bucket, last in self._buckets(model):
            mine = (serialize_named_tensors(bucket), [name for name, _ in bucket])
            every = [None] * world if rank == 0 else None
            if world > 1:
                dist.gather_object(mine, every, dst=0)
            else:
                every = [mine]
            error = None
            if rank == 0:
                try:
                    if mismatch:
                        raise ValueError(mismatch)
                    _post_payloads(every, targets, need, version=version, last=last)
                except Exception as exc:  # every rank must hear of it, or they would wait here forever
                    error = exc
            outcome = [None if error is None else f"{type(error).__name__}: {error}"]
            if world > 1:
                dist.broadcast_object_list(outcome, src=0)  # also the barrier before the bucket is freed
            if error is not None:
                raise error
            if outcome[0] is not None:
                raise RuntimeError(f"rank 0 could not load a weight bucket into the engines: {outcome[0]}")
            nbytes, n = nbytes + sum(tensor_nbytes(t) for _, t in bucket), n + 1
            del bucket, mine, every  # before the stream gathers the next one: one bucket alive at a time
        return nbytes, n


def _post_payloads(
    every: list, targets: Sequence[SerializedWeightsEngine], need: list[list[int]], *, version: int, last: bool
) -> None:
    """Rank 0: check that all ranks cut the same bucket, then each engine gets its ranks' payloads in TP order."""
    names = every[0][1]
    for r, (_, theirs) in enumerate(every):
        if theirs != names:
            raise RuntimeError(f"rank {r} exported another bucket than rank 0: {theirs[:3]}... vs {names[:3]}...")
    for engine, ranks in zip(targets, need, strict=True):
        engine.update_weights_serialized([every[r][0] for r in ranks], version=version, last=last)


class _Forward:
    """Rank 0's stand-in engine for a received stage: passes each bucket on to the real engines; ``last`` only when
    this stage closes the update."""

    def __init__(self, targets: list, *, closes: bool):
        self.targets, self.closes = targets, closes

    def update_weights(self, named_tensors: list[tuple[str, torch.Tensor]], *, version: int, last: bool) -> None:
        for engine in self.targets:
            engine.update_weights(named_tensors, version=version, last=last and self.closes)
