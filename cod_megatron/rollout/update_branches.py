"""Update branches (``algorithm.update_branches`` = B): which branch continues, and the threads that play the others.

At every update position the lifecycle writes B update episodes from the same prompt. One of them, drawn uniformly
from a seeded RNG before any is sampled, is the lifecycle's own (it continues); each of the B - 1 others runs in a
thread of its own that plays the next ``horizon`` tasks from its hint on a copy of the pack state. A branch thread
holds its own handle on the lock-step batcher (``BatcherClient.fork``), so the branches of every lifecycle at one
position reach the engine in the same round as the lifecycles themselves. Drawing the continuing index before
sampling is the same as drawing it afterwards: the choice never looks at what was written.
:func:`token_brancher` and :func:`attach_branches` wire this to a token-level lifecycle (its seeds, and the branch
episodes it hands to credit as ``Lifecycle.branches``).
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Protocol, runtime_checkable

from cod_megatron.cod.episode import Branch, Episode, Lifecycle
from cod_megatron.engines.interface import RolloutEngine, SamplingParams
from cod_megatron.rollout.lifecycle import Responder, TextLifecycle


def branch_seed(seed: int, position: int, index: int) -> int:
    """The sampling seed of branch ``index`` at update ``position`` of a lifecycle seeded ``seed``."""
    digest = hashlib.sha256(f"cod-branch/{seed}/{position}/{index}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def continuing_branch(seed: int, position: int, count: int) -> int:
    """The branch (0..count-1) the lifecycle continues from at update ``position``: uniform, reproducible."""
    return random.Random(branch_seed(seed, position, -1)).randrange(count)


class RecordingResponder(Responder, Protocol):
    """A responder that keeps the episodes it played (the token responder)."""

    episodes: list[Episode]


@runtime_checkable
class ForkingEngine(RolloutEngine, Protocol):
    """An engine handle that can hand a branch thread a handle of its own (the lock-step batcher's client)."""

    def fork(self, key: Hashable) -> ForkingEngine:
        """A handle for a thread this lifecycle starts, live until its :meth:`close`."""
        ...

    def close(self) -> None:
        """The forked thread is done."""
        ...

    def idle(self) -> AbstractContextManager[None]:
        """This handle sends nothing while the context lasts (the lifecycle waits for its branches)."""
        ...


NewResponder = Callable[[int, int, RolloutEngine], RecordingResponder]
"""``(position, index, engine handle) -> responder`` of one branch."""


class ThreadBrancher:
    """Plays the non-continuing branches of one lifecycle, one thread and one engine handle each.

    ``new_responder(position, index, engine)`` makes a branch's responder on ``engine`` (a forked batcher handle,
    or the lifecycle's own engine when it cannot fork: the branch then runs at once in the calling thread).
    """

    def __init__(
        self,
        count: int,
        horizon: int,
        seed: int,
        engine: RolloutEngine,
        new_responder: NewResponder,
    ):
        if count < 2 or horizon < 1:
            raise ValueError(f"ThreadBrancher: want count >= 2 and horizon >= 1, got {count}, {horizon}")
        self.count, self.horizon, self.seed = count, horizon, seed
        self.engine, self.new_responder = engine, new_responder
        self.played: list[tuple[int, int, RecordingResponder]] = []
        """(position, index, responder) of every branch started, in start order."""
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def continuing(self, position: int) -> int:
        """See :func:`continuing_branch`."""
        return continuing_branch(self.seed, position, self.count)

    def start(self, position: int, index: int, play: Callable[[Responder], TextLifecycle]) -> None:
        """Play branch ``index`` of update ``position`` (``play(responder)`` runs its episodes)."""
        if not isinstance(self.engine, ForkingEngine):  # no fork: the branch runs at once in this thread
            responder = self.new_responder(position, index, self.engine)
            self.played.append((position, index, responder))
            play(responder)
            return
        handle = self.engine.fork((position, index))  # registered with the batcher before we return
        responder = self.new_responder(position, index, handle)
        self.played.append((position, index, responder))

        def run() -> None:
            try:
                play(responder)
            except BaseException as exc:  # re-raised in the lifecycle's thread by wait()
                self._errors.append(exc)
            finally:
                handle.close()

        thread = threading.Thread(target=run, name=f"branch-{position}-{index}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def wait(self, *, reraise: bool = True) -> None:
        """Join every branch; the lifecycle's own handle idles meanwhile so the batcher does not wait for it."""
        idle = self.engine.idle() if isinstance(self.engine, ForkingEngine) else nullcontext()
        with idle:
            for thread in self._threads:
                thread.join()
        self._threads = []
        if reraise and self._errors:
            raise self._errors[0]


def token_brancher(
    count: int,
    horizon: int,
    engine: RolloutEngine,
    params: SamplingParams,
    new_responder: Callable[[RolloutEngine, SamplingParams], RecordingResponder],
) -> ThreadBrancher:
    """The brancher of one token-level lifecycle sampled with ``params``: branch ``(position, index)`` samples with
    :func:`branch_seed` of the lifecycle's seed (unseeded sampling: a fresh draw picks the continuing branches)."""

    def branch_responder(position: int, index: int, handle: RolloutEngine) -> RecordingResponder:
        seed = None if params.seed is None else branch_seed(params.seed, position, index)
        return new_responder(handle, replace(params, seed=seed))

    seed = params.seed if params.seed is not None else secrets.randbits(48)
    return ThreadBrancher(count, horizon, seed, engine, branch_responder)


def attach_branches(lc: Lifecycle, brancher: ThreadBrancher) -> None:
    """Mark each update episode of ``lc`` with the branch it continued from and add the branches it played
    (``Lifecycle.branches``, in position then index order); a branch's first episode is its update episode."""
    for e in lc.updates():
        e.branch = brancher.continuing(e.position)
    for position, index, responder in sorted(brancher.played, key=lambda p: p[:2]):
        responder.episodes[0].branch = index
        lc.branches.append(Branch(position=position, index=index, episodes=responder.episodes))
