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
from cod_megatron.sync.hf_map import hf_weight_stream


class WeightSync:
    """Pushes the policy's weights to the engines; ``version`` is the trainer step they come from."""

    def __init__(self, model_cfg: ModelConfig, engines: Sequence[InferenceEngine], bucket_bytes: int = 64 << 20):
        self.model_cfg, self.engines, self.bucket_bytes = model_cfg, list(engines), bucket_bytes
        self.version = -1

    def sync(
        self,
        model: torch.nn.Module | Sequence[torch.nn.Module],
        version: int,
        engines: Sequence[InferenceEngine] | None = None,
    ) -> dict[str, float]:
        """Stream the export once, each bucket to every engine (default: all) before the next is gathered; returns
        seconds, bytes and bucket count. Every rank of the TP group runs it (the gathers are collective); a rank
        without engines only takes part in them."""
        t0, nbytes, n = time.perf_counter(), 0, 0
        targets = self.engines if engines is None else engines

        def send(group: list[tuple[str, torch.Tensor]], last: bool) -> None:
            for engine in targets:
                engine.update_weights(group, version=version, last=last)

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
        self.version = version
        return {"sync/seconds": time.perf_counter() - t0, "sync/bytes": float(nbytes), "sync/buckets": float(n)}
