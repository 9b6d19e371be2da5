"""Stopping a run on SIGTERM (Slurm's warning before the time limit, ``timeout``, ``scancel``) or Ctrl-C.

The first signal asks the loop to stop at the next step boundary: the step in flight finishes, a checkpoint of it is
saved when checkpointing is on, metrics are flushed, engines and Ray stop, and the process exits 0 after SIGTERM
(the job can be requeued and resumes from ``checkpoint.load=auto``) or 130 after Ctrl-C. A second signal abandons the
step at once (``KeyboardInterrupt``: the previous checkpoint stands). Every rank takes the decision together: the
request is max-reduced over the default group at each step boundary, so all ranks stop after the same step even if
the signal reached only some of them.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import torch
import torch.distributed as dist

log = logging.getLogger("cod_megatron.loop.preemption")

EXIT_CODES = {signal.SIGTERM: 0, signal.SIGINT: 130}
"""The process's exit code after a graceful stop, by the signal that asked for it."""


class StopRequest:
    """Installs the SIGTERM / SIGINT handlers for its ``with`` block (main thread only; elsewhere it only reports)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        self.install()
        return self

    def install(self) -> None:
        """(Re)install the handlers: ``ray.init`` puts its own fatal-signal handler on SIGTERM in the driver (it
        aborts the process), so the loop calls this again once its engines (and Ray) are up."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in EXIT_CODES:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second signal: abandon the step now
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s: stopping after the current step (again to abandon it)", signal.Signals(signum).name)

    def agreed(self) -> int | None:
        """The signal every rank stops for (None: go on); collective over the default group when it exists."""
        local = 0 if self.signum is None else int(self.signum)
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.signum
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([local], dtype=torch.int64, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None

    @property
    def exit_code(self) -> int:
        """0 after SIGTERM, 130 after Ctrl-C."""
        return EXIT_CODES.get(signal.Signals(self.signum), 0) if self.signum is not None else 0
