"""Where a trainer step's rollouts come from: generated on demand (synchronous) or ahead of time (off-policy).

Synchronous: step ``s`` generates its own batch with the engines' current weights (version ``s - 1`` with
``sync_interval = 1``). Off-policy (``rollout.off_policy=true``, the reference's asynchronous explorer): a producer
thread generates the next batch while the trainer steps, with whatever weights the engines hold; a batch is trained
on only if ``trainer version - engine version <= rollout.max_staleness`` and dropped (counted) otherwise, so no
sample older than the bound is ever trained on. Weights reach the engines every ``rollout.sync_interval`` steps in
both modes (the loop calls the weight sync; engines swap weights between generations, never inside one).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cod_megatron.rollout.manager import RolloutResult


@dataclass
class RolloutBatch:
    """One step's lifecycles and the engine weight version they were sampled with."""

    result: RolloutResult
    version: int
    index: int
    """The producer's batch counter (it selects the packs), distinct from the trainer step when batches are dropped."""


class SyncRollouts:
    """Generate on demand: batch ``s`` for trainer step ``s``."""

    def __init__(self, generate: Callable[[int], RolloutResult], version: Callable[[], int]):
        self.generate, self.version = generate, version

    def next(self, step: int, trainer_version: int, max_staleness: int) -> tuple[RolloutBatch, int]:
        """The batch for ``step`` and the number dropped as too stale (always 0 here)."""
        v = self.version()
        return RolloutBatch(self.generate(step), v, step), 0

    def close(self) -> None:
        """Nothing runs in the background."""


class OffPolicyRollouts:
    """A producer thread keeps ``ahead`` batches ready; stale ones are dropped at hand-over."""

    def __init__(
        self, generate: Callable[[int], RolloutResult], version: Callable[[], int], first: int, ahead: int = 1
    ):
        self.generate, self.version = generate, version
        self._queue: queue.Queue[RolloutBatch | BaseException] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(first,), name="rollout-producer", daemon=True)
        self._thread.start()

    def _produce(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                v = self.version()  # read before sampling: a sync during generation makes the batch older, not newer
                item: RolloutBatch | BaseException = RolloutBatch(self.generate(index), v, index)
            except BaseException as exc:  # handed to the trainer thread, which re-raises it
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            index += 1

    def next(self, step: int, trainer_version: int, max_staleness: int) -> tuple[RolloutBatch, int]:
        """The first ready batch with ``trainer_version - version <= max_staleness``, and how many were dropped."""
        dropped = 0
        while True:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise RuntimeError("the rollout producer failed") from item
            if trainer_version - item.version <= max_staleness:
                return item, dropped
            dropped += 1

    def close(self) -> None:
        """Stop the producer (it finishes the generation in flight) and wait for it."""
        self._stop.set()
        self._thread.join(timeout=600)


RolloutSchedule = SyncRollouts | OffPolicyRollouts
"""Where the generating rank's training batches come from (``rollout.off_policy`` picks)."""
