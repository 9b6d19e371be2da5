"""One distillation teacher served by several engines (``parallel.teacher_engines``): scoring spread over them.

A step's samples of one domain go to that domain's teacher; with several engines each gets a contiguous share of the
batch, scored in parallel, answers put back in request order. The pool is healthy when every engine is; a restart
restarts the unhealthy ones (each reloads the teacher's weights itself: a teacher is never synced).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cod_megatron.engines.interface import ScoreRequest


class TeacherPool:
    """``engines`` (each with ``score_batch``, ``health``, ``restart``, ``shutdown``) behind one ``score_batch``."""

    def __init__(self, name: str, engines: Sequence[Any]):
        if not engines:
            raise ValueError(f"teacher {name}: no engine")
        self.name, self.engines = name, list(engines)

    def score_batch(self, requests: list[ScoreRequest]) -> list[list[float]]:
        """Contiguous shares of ``requests``, one per engine, scored in parallel; answers in request order."""
        n = len(self.engines)
        bounds = [len(requests) * i // n for i in range(n + 1)]
        shares = [(e, requests[a:b]) for e, a, b in zip(self.engines, bounds, bounds[1:], strict=False) if b > a]
        if len(shares) <= 1:
            return [s for e, part in shares for s in e.score_batch(part)]
        with ThreadPoolExecutor(len(shares), thread_name_prefix=f"teacher-{self.name}") as pool:
            parts = list(pool.map(lambda share: share[0].score_batch(share[1]), shares))
        return [s for part in parts for s in part]

    def health(self) -> dict[str, object]:
        """``ok`` when every engine answers ok."""
        each = [e.health() for e in self.engines]
        return {"ok": all(h.get("ok", False) for h in each), "engines": each}

    def restart(self) -> None:
        """Restart the engines that no longer answer their health probe."""
        for e in self.engines:
            if not e.health().get("ok", False):
                e.restart()

    def shutdown(self) -> None:
        """End every engine."""
        for e in self.engines:
            e.shutdown()
