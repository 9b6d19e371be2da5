"""Weight sync: the trainer's Megatron weights -> HF names -> bucketed updates to every rollout engine.

The conversion is :func:`cod_megatron.sync.hf_map.export_hf_weights` (TP shards gathered, fused q/k/v and
gate/up split into HF tensors), the one mapping the checkpoint converter uses too. Buckets bound the bytes in
flight per call, as SGLang's ``update_weights_from_distributed`` / ``update_weights_from_tensor`` want; the engine
serves the new version only once the ``last`` bucket has arrived.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch

from cod_megatron.config import ModelConfig
from cod_megatron.rollout.engine import InferenceEngine
from cod_megatron.sync.hf_map import export_hf_weights


def buckets(tensors: dict[str, torch.Tensor], bucket_bytes: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Consecutive groups of tensors of at most ``bucket_bytes`` each (a larger tensor goes alone)."""
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, t))
        size += nbytes
    if bucket:
        yield bucket


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
            for i, group in enumerate(groups):
                engine.update_weights(group, version=version, last=i == len(groups) - 1)
        self.version = version
        return {
            "sync/seconds": time.perf_counter() - t0,
            "sync/bytes": float(sum(t.numel() * t.element_size() for t in tensors.values())),
            "sync/buckets": float(len(groups)),
        }
