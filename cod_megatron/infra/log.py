"""Logging conventions: one logger per module; INFO from global rank 0 only unless asked; warnings from all ranks."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cod_megatron.infra.process_env import process_rank


class _RankFilter(logging.Filter):
    def __init__(self, rank: int, all_ranks: bool):
        super().__init__()
        self.rank, self.all_ranks = rank, all_ranks

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank_prefix = f"[r{self.rank}] "
        return self.all_ranks or self.rank == 0 or record.levelno >= logging.WARNING


def setup_logging(level: str = "INFO", *, rank: int | None = None, all_ranks: bool = False) -> None:
    """Configure the root logger once per process (idempotent); ``rank``: this process's (``None``: the launcher's)."""
    rank = process_rank().rank if rank is None else rank
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
    """Appends one JSON line of flat ``part/name`` metrics per step, and TensorBoard scalars when it is installed."""

    def __init__(self, path: str | Path | None, tensorboard: bool = True, resumed_at: int = 0):
        """``resumed_at``: the checkpoint step a run resumed from (0: a fresh start); rows of later steps are dropped,
        since those steps run again (a run killed between checkpoints would otherwise log them twice)."""
        self.path = Path(path) if path else None
        self._tb = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resumed_at > 0 and self.path.exists():
                rows = self.path.read_text().splitlines(keepends=True)
                self.path.write_text("".join(r for r in rows if json.loads(r)["step"] <= resumed_at))
            if tensorboard:
                try:  # needs the optional `tensorboard` package; JSONL is the record either way
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))
                except ImportError:
                    self._tb = None

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Append ``{"step": step, **metrics}``."""
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()


class StepProgress:
    """A rich progress bar over trainer steps showing the CoD curve (only on a terminal; logs go on regardless)."""

    def __init__(self, total: int, start: int = 0, enabled: bool | None = None):
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self._bar = None
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]CoD"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
            )
            self._task = self._bar.add_task("", total=total, completed=start)

    def __enter__(self) -> StepProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, step: int, metrics: dict[str, float]) -> None:
        """Advance to ``step`` and show reward by position and the gap."""
        if self._bar is None:
            return
        pos = " ".join(f"{metrics[k]:.2f}" for k in sorted(metrics) if k.startswith("rollout/reward_pos_"))
        self._bar.update(
            self._task, completed=step, description=f"reward [{pos}] gap {metrics.get('rollout/gap', 0):+.2f}"
        )


@contextmanager
def timed(into: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's wall time to ``into["time/<name>_s"]``."""
    t0 = time.perf_counter()
    yield
    into[f"time/{name}_s"] = into.get(f"time/{name}_s", 0.0) + time.perf_counter() - t0


def progress_line(step: int, steps: int, m: dict[str, float]) -> str:
    """One log line: the CoD curve, the loss and where the time went."""
    pos = " ".join(f"{m[k]:.2f}" for k in sorted(m) if k.startswith("rollout/reward_pos_"))
    times = " ".join(f"{k[5:-2]} {v:.2f}s" for k, v in m.items() if k.startswith("time/"))
    return (
        f"step {step}/{steps} | reward by position [{pos}] gap {m.get('rollout/gap', 0.0):+.2f} | "
        f"loss {m.get('train/loss', 0.0):.4f} | {times}"
    )
