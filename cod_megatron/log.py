"""Logging conventions: one logger per module; INFO from global rank 0 only unless asked; warnings from all ranks."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path


class _RankFilter(logging.Filter):
    def __init__(self, rank: int, all_ranks: bool):
        super().__init__()
        self.rank, self.all_ranks = rank, all_ranks

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank_prefix = f"[r{self.rank}] "
        return self.all_ranks or self.rank == 0 or record.levelno >= logging.WARNING


def setup_logging(level: str = "INFO", *, rank: int | None = None, all_ranks: bool = False) -> None:
    """Configure the root logger once per process (idempotent)."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_cod", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stdout)
    handler._cod = True  # type: ignore[attr-defined]
    handler.addFilter(_RankFilter(rank, all_ranks))
    handler.setFormatter(logging.Formatter("%(asctime)s %(rank_prefix)s%(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
    # megatron-core logs its whole optimizer config and every bucket at INFO; keep it for DEBUG runs.
    logging.getLogger("megatron").setLevel(level if level == "DEBUG" else "WARNING")


class MetricsWriter:
    """Appends one JSON line of flat ``part/name`` metrics per step."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Append ``{"step": step, **metrics}``."""
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
