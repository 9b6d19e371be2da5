"""Who sends which pipeline stage's weights: one source rank per stage, and a group joining it to the engine owner.

With pipeline parallelism each stage holds its own layers, so each stage exports them under their HF names (global
layer numbers) from one source rank -- its TP rank 0 of data-parallel replica 0, after the TP all-gather -- and the
rank that owns the rollout engines (global rank 0, the source of stage 0) forwards them. Stage s > 0 talks to rank 0
through its own two-rank group, built once at start (``new_group`` is collective over the world, so every rank
builds every group, in the same order). This is the embedded-engine form of the per-stage update groups that
SGLang's ``init_weights_update_group`` builds on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist
from megatron.core import parallel_state


@dataclass(frozen=True)
class StagePlan:
    """The stage of this rank, whether it sends its stage, and every stage's source rank and group to rank 0."""

    stage: int
    is_source: bool
    sources: tuple[int, ...]
    """Global rank of each stage's source, stage order; ``sources[0]`` owns the engines."""
    groups: tuple[dist.ProcessGroup | None, ...]
    """``groups[s]`` joins ``sources[s]`` and ``sources[0]`` (None for stage 0)."""

    @property
    def num_stages(self) -> int:
        """PP."""
        return len(self.sources)


def stage_plan() -> StagePlan | None:
    """The plan of this rank; None without pipeline parallelism. Collective over the world: every rank calls it."""
    if not (dist.is_initialized() and parallel_state.model_parallel_is_initialized()):
        return None
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    if pp == 1:
        return None
    stage = parallel_state.get_pipeline_model_parallel_rank()
    is_source = (
        parallel_state.get_tensor_model_parallel_rank() == 0
        and parallel_state.get_data_parallel_rank(with_context_parallel=True) == 0
    )
    every: list[tuple[int, bool] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(every, (stage, is_source))
    sources = tuple(next(r for r, e in enumerate(every) if e == (s, True)) for s in range(pp))
    if sources[0] != 0:
        raise RuntimeError(f"the engines live on global rank 0, but stage 0 is sent by rank {sources[0]}")
    groups = tuple(None if s == 0 else dist.new_group(ranks=[sources[0], sources[s]]) for s in range(pp))
    return StagePlan(stage=stage, is_source=is_source, sources=sources, groups=groups)
