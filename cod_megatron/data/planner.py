"""Micro-batch planning: which segments go into which packed micro-batch on which data-parallel rank.

Three steps, all on segment lengths only (pure Python, no tensors):
1. over-long segments are truncated to the budget or dropped, and counted (never an error);
2. the number of micro-batches is the smallest multiple of ``dp`` that can hold the tokens (pipeline schedules
   need the same count on every rank); segments go largest first into the least-loaded micro-batch where they
   fit (longest-processing-time greedy, the first step of Karmarkar-Karp), one more micro-batch per rank when
   one does not fit. This balances micro-batches, not just fills them;
3. micro-batches are dealt to ranks the same way, largest first to the least-loaded rank with room. A
   micro-batch can stay empty (fewer segments than micro-batches); the packer fills it with one padding token
   that carries no loss.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class MicroBatchPlan:
    """``ranks[r][m]`` lists the segment indices of micro-batch ``m`` on DP rank ``r``."""

    ranks: list[list[list[int]]]
    lengths: list[int]
    """Length of every input segment after truncation (0 for a dropped one)."""
    truncated: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    @property
    def micro_batches_per_rank(self) -> int:
        """Equal on every rank."""
        return len(self.ranks[0])

    def rank_tokens(self) -> list[int]:
        """Tokens per DP rank (the balance the planner optimises)."""
        return [sum(self.lengths[i] for mb in rank for i in mb) for rank in self.ranks]


def plan_micro_batches(
    lengths: list[int], *, budget: int, dp: int = 1, overlong: Literal["truncate", "drop"] = "truncate"
) -> MicroBatchPlan:
    """Plan THD micro-batches of at most ``budget`` tokens for ``dp`` ranks (see the module docstring)."""
    if budget < 1 or dp < 1:
        raise ValueError(f"budget and dp must be >= 1, got budget={budget}, dp={dp}")
    if any(n < 0 for n in lengths):
        raise ValueError("segment lengths must be >= 0")
    kept, truncated, dropped = list(lengths), [], []
    for i, n in enumerate(lengths):
        if n > budget:
            if overlong == "truncate":
                kept[i] = budget
                truncated.append(i)
            else:
                kept[i] = 0
                dropped.append(i)
    order = sorted((i for i, n in enumerate(kept) if n > 0), key=lambda i: (-kept[i], i))
    per_rank = max(1, math.ceil(math.ceil(sum(kept) / budget) / dp))
    while (bins := _fill(order, kept, budget, dp * per_rank)) is None:
        per_rank += 1
    ranks: list[list[list[int]]] = [[] for _ in range(dp)]
    load = [0] * dp
    for b in sorted(bins, key=lambda b: -sum(kept[i] for i in b)):
        r = min((r for r in range(dp) if len(ranks[r]) < per_rank), key=lambda r: (load[r], r))
        ranks[r].append(b)
        load[r] += sum(kept[i] for i in b)
    return MicroBatchPlan(ranks=ranks, lengths=kept, truncated=truncated, dropped=dropped)


def _fill(order: list[int], kept: list[int], budget: int, n_bins: int) -> list[list[int]] | None:
    """Largest segment first into the least-loaded of ``n_bins`` bins; None if it does not fit there.

    The least-loaded bin has the most room, so if a segment does not fit there it fits nowhere: a heap suffices.
    """
    bins: list[list[int]] = [[] for _ in range(n_bins)]
    heap = [(0, b) for b in range(n_bins)]
    for i in order:
        load, b = heapq.heappop(heap)
        if load + kept[i] > budget:
            return None
        bins[b].append(i)
        heapq.heappush(heap, (load + kept[i], b))
    return bins
