"""The one place that reads the launcher's process environment (torchrun / srun): rank, world size, ranks per node.

Everything else takes these as arguments, so a module never decides its role from ``os.environ`` on its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessRank:
    """This process's place among the trainer ranks."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_first(self) -> bool:
        """Rank 0: the rank that owns the rollout engines, the metrics file and the evaluation."""
        return self.rank == 0

    @property
    def launched(self) -> bool:
        """Started by a launcher that set ``WORLD_SIZE`` (torchrun, srun), even with one rank."""
        return "WORLD_SIZE" in os.environ


def process_rank() -> ProcessRank:
    """Rank, world size and ranks per node as torchrun / srun export them (1 process when unset)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return ProcessRank(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )
