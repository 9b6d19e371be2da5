"""Update branches (``algorithm.update_branches`` = B): which branch continues, and the threads that play the others.

At every update position the lifecycle writes B update episodes from the same prompt. One of them, drawn uniformly
from a seeded RNG before any is sampled, is the lifecycle's own (it continues); each of the B - 1 others runs in a
thread of its own that plays the next ``horizon`` tasks from its hint on a copy of the pack state. A branch thread
holds its own handle on the lock-step batcher (``BatcherClient.fork``), so the branches of every lifecycle at one
position reach the engine in the same round as the lifecycles themselves. Drawing the continuing index before
sampling is the same as drawing it afterwards: the choice never looks at what was written.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any


def branch_seed(seed: int, position: int, index: int) -> int:
    """The sampling seed of branch ``index`` at update ``position`` of a lifecycle seeded ``seed``."""
    digest = hashlib.sha256(f"cod-branch/{seed}/{position}/{index}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def continuing_branch(seed: int, position: int, count: int) -> int:
    """The branch (0..count-1) the lifecycle continues from at update ``position``: uniform, reproducible."""
    return random.Random(branch_seed(seed, position, -1)).randrange(count)


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
        engine: Any,
        new_responder: Callable[[int, int, Any], Any],
    ):
        if count < 2 or horizon < 1:
            raise ValueError(f"ThreadBrancher: want count >= 2 and horizon >= 1, got {count}, {horizon}")
        self.count, self.horizon, self.seed = count, horizon, seed
        self.engine, self.new_responder = engine, new_responder
        self.played: list[tuple[int, int, Any]] = []
        """(position, index, responder) of every branch started, in start order."""
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def continuing(self, position: int) -> int:
        """See :func:`continuing_branch`."""
        return continuing_branch(self.seed, position, self.count)

    def start(self, position: int, index: int, play: Callable[[Any], Any]) -> None:
        """Play branch ``index`` of update ``position`` (``play(responder)`` runs its episodes)."""
        fork = getattr(self.engine, "fork", None)
        handle = fork((position, index)) if fork is not None else self.engine  # registered before we return
        responder = self.new_responder(position, index, handle)
        self.played.append((position, index, responder))
        if fork is None:
            play(responder)
            return

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
        idle = getattr(self.engine, "idle", nullcontext)
        with idle():
            for thread in self._threads:
                thread.join()
        self._threads = []
        if reraise and self._errors:
            raise self._errors[0]
