"""Weight sync: the trainer's Megatron weights -> HF names -> bucketed updates to every rollout engine.

The conversion is :func:`cod_megatron.sync.hf_map.hf_weight_stream` (TP shards gathered, fused q/k/v and gate/up
split into HF tensors), the one mapping the checkpoint converter uses too. It is streamed: parameters are gathered
one at a time into a bucket on their own device, the bucket is sent and dropped, so a rank holds at most one bucket
plus the parameter being gathered (its shards and its HF tensors) -- never a copy of the model; the stream flags its
final tensor, so closing the update needs no look-ahead. Buckets bound the bytes per call, as SGLang's
``update_weights_from_distributed`` / ``update_weights_from_tensor`` want; the engine serves the new version only
once the ``last`` bucket has arrived.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from cod_megatron.config import ModelConfig
from cod_megatron.engines.interface import InferenceEngine
from cod_megatron.sync.buckets import tensor_nbytes
from cod_megatron.sync.dist_transport import BroadcastReceiver, BroadcastSender
from cod_megatron.sync.hf_map import hf_weight_stream, iter_hf_weights
from cod_megatron.sync.stage_groups import StageGroups
from cod_megatron.sync.stages import stage_plan


class WeightSync:
    """Pushes the policy's weights to the engines; ``version`` is the trainer step they come from.

    Built on every rank (with pipeline parallelism the stage plan's groups are created here, collectively); only
    global rank 0 holds engines.
    """

    def __init__(self, model_cfg: ModelConfig, engines: Sequence[InferenceEngine], bucket_bytes: int = 64 << 20):
        self.model_cfg, self.engines, self.bucket_bytes = model_cfg, list(engines), bucket_bytes
        self.version = -1
        self.stages = stage_plan()
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
        engines only takes part."""
        t0 = time.perf_counter()
        targets = list(self.engines if engines is None else engines)
        plan = self.stages
        if plan is not None and engines is not None:
            raise RuntimeError(
                "with pipeline parallelism a weight sync is collective over every stage: a single engine restarted "
                "mid-rollout cannot be re-synced from rank 0 alone; resume the run from its last checkpoint"
            )
        device = "cuda" if torch.cuda.is_available() else "cpu"  # NCCL moves CUDA buffers, gloo CPU ones
        if plan is None:
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

        def send(group: list[tuple[str, torch.Tensor]], last: bool) -> None:
            for engine in targets:
                engine.update_weights(group, version=version, last=last and closes)

        bucket: list[tuple[str, torch.Tensor]] = []
        size = 0
        for name, tensor, last in hf_weight_stream(model, self.model_cfg):
            if bucket and size + tensor_nbytes(tensor) > self.bucket_bytes:
                send(bucket, last=False)
                bucket, size, n = [], 0, n + 1
            bucket.append((name, tensor))
            size += tensor_nbytes(tensor)
            nbytes += tensor_nbytes(tensor)
            if last:
                send(bucket, last=True)
                bucket, n = [], n + 1
        return nbytes, n


class _Forward:
    """Rank 0's stand-in engine for a received stage: passes each bucket on to the real engines; ``last`` only when
    this stage closes the update."""

    def __init__(self, targets: list, *, closes: bool):
        self.targets, self.closes = targets, closes

    def update_weights(self, named_tensors: list[tuple[str, torch.Tensor]], *, version: int, last: bool) -> None:
        for engine in self.targets:
            engine.update_weights(named_tensors, version=version, last=last and self.closes)
