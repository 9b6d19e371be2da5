"""Weight sync: the trainer's Megatron weights -> HF names -> bucketed updates to every rollout engine.

The conversion is :func:`cod_megatron.sync.hf_map.export_hf_weights` (TP shards gathered, fused q/k/v and
gate/up split into HF tensors), the one mapping the checkpoint converter uses too. Buckets
(:mod:`cod_megatron.sync.buckets`) bound the bytes in flight per call, as SGLang's
``update_weights_from_distributed`` / ``update_weights_from_tensor`` want; the engine serves the new version only
once the ``last`` bucket has arrived.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from cod_megatron.config import ModelConfig
from cod_megatron.engines.interface import InferenceEngine
from cod_megatron.sync.buckets import buckets, tensor_nbytes, with_last
from cod_megatron.sync.hf_map import export_hf_weights


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
        """Export once, send every engine (default: all) all buckets; returns seconds, bytes and bucket count."""
        t0 = time.perf_counter()
        tensors = export_hf_weights(model, self.model_cfg)
        groups = list(buckets(tensors, self.bucket_bytes))
        for engine in self.engines if engines is None else engines:
            for group, last in with_last(groups):
                engine.update_weights(group, version=version, last=last)
        self.version = version
        return {
            "sync/seconds": time.perf_counter() - t0,
            "sync/bytes": float(sum(tensor_nbytes(t) for t in tensors.values())),
            "sync/buckets": float(len(groups)),
        }
