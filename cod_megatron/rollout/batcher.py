"""Lock-step batching: many lifecycle threads, one engine call per round.

Each lifecycle runs in its own thread and asks for one response at a time (the runner is sequential by design:
task j+1 needs the hint written after task j). The batcher waits until every live lifecycle has a request pending,
then sends them to the engine as one batch, ordered by lifecycle key, so the batch a lifecycle lands in does not
depend on thread timing. SGLang batches continuously on its own; the same batcher then just bounds the requests in
flight.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from cod_envs.base import Message
from cod_megatron.engines.interface import EngineRequest, Generation, SamplingParams, ServingEngine


class LockstepBatcher:
    """Serves ``RolloutEngine.generate`` to ``clients`` threads through one :class:`ServingEngine`."""

    def __init__(self, engine: ServingEngine, clients: int):
        self.engine = engine
        self._cv = threading.Condition()
        self._active = clients
        self._pending: dict[Hashable, EngineRequest] = {}
        self._results: dict[Hashable, Generation | BaseException] = {}
        self.rounds = 0
        self.requests = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        """Prompt tokens sent, and those the engine served from its prefix cache (the hit rate's two sides)."""

    def client(self, key: Hashable) -> BatcherClient:
        """The engine handle of one lifecycle thread (``key`` orders it within a batch)."""
        return BatcherClient(self, key)

    def join(self) -> None:
        """One more live client (a lifecycle's branch thread); call before its thread starts."""
        with self._cv:
            self._active += 1

    def leave(self) -> None:
        """A client thread is done for good; the others no longer wait for it."""
        with self._cv:
            self._active -= 1
            self._maybe_run()

    def submit(self, key: Hashable, request: EngineRequest) -> Generation:
        """Block until the round holding ``request`` has run; re-raise the engine's error in every client."""
        with self._cv:
            if key in self._pending:
                raise RuntimeError(f"lifecycle {key!r} already has a request in flight")
            self._pending[key] = request
            self._maybe_run()
            while key not in self._results:
                self._cv.wait()
            out = self._results.pop(key)
        if isinstance(out, BaseException):
            raise out
        return out

    def _maybe_run(self) -> None:
        """Run a round when every live client waits (called with the lock held)."""
        if not self._pending or len(self._pending) < self._active:
            return
        keys = sorted(self._pending, key=repr)
        batch = [self._pending.pop(k) for k in keys]
        try:
            gens: list[Any] = self.engine.generate_batch(batch)
            if len(gens) != len(batch):
                raise RuntimeError(f"engine returned {len(gens)} generations for {len(batch)} requests")
        except Exception as exc:  # every waiting lifecycle sees the failure and may retry
            gens = [exc] * len(batch)
        self.rounds += 1
        self.requests += len(batch)
        self.prompt_tokens += sum(len(r.prompt_ids) for r in batch)
        self.cached_tokens += sum(g.cached_tokens for g in gens if isinstance(g, Generation))
        self._results.update(zip(keys, gens, strict=True))
        self._cv.notify_all()


class BatcherClient:
    """The :class:`~cod_megatron.engines.interface.RolloutEngine` one lifecycle thread drives."""

    def __init__(self, batcher: LockstepBatcher, key: Hashable):
        self.batcher, self.key = batcher, key

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, messages: list[Message] | None = None
    ) -> Generation:
        """Queue the request for the next round and wait for it."""
        return self.batcher.submit(self.key, EngineRequest(prompt_ids=list(prompt_ids), params=params))

    def fork(self, key: Hashable) -> BatcherClient:
        """A handle for a thread this lifecycle starts (an update branch), live until :meth:`close`."""
        self.batcher.join()
        return BatcherClient(self.batcher, (self.key, key))

    def close(self) -> None:
        """The forked thread is done."""
        self.batcher.leave()

    @contextmanager
    def idle(self) -> Iterator[None]:
        """This lifecycle waits for its forks and sends nothing meanwhile: the rounds go on without it."""
        self.batcher.leave()
        try:
            yield
        finally:
            self.batcher.join()
