"""A POST whose server joins a collective with this process, and that collective, awaited together.

``/init_weights_update_group`` has the server join the trainer's rendezvous, ``/update_weights_from_distributed``
has it receive a broadcast; the trainer's side (its rank-0 join, its broadcasts) runs while the POST is in flight.
When the server answers an error at once (a 4xx/5xx: it cannot reach the rendezvous, a shape it refuses, out of
memory), it never joins, and the trainer's side would wait for the group's timeout (10 minutes) before the error
surfaced. So both sides run in daemon threads and the caller waits for whichever ends first:

* one side failed: ``abort`` gives the group up (an NCCL communicator is aborted, so a kernel waiting for the server
  returns; see :func:`~cod_megatron.engines.sglang.update_group.abort_update_group`) and its error is raised -- the
  server's message for a failed POST. A thread blocked in gloo or in the TCP rendezvous cannot be interrupted from
  Python: it is left behind, a daemon, and ends when the peer goes away or at the group's timeout;
* one side succeeded: the other is awaited (both within ``timeout_s``; past it the group is given up too).

When the POST is made by ANOTHER process (a pipeline stage's source broadcasts, rank 0 POSTs), that process tells
this one its outcome over a channel both wait on anyway: :func:`collective_until_verdict` runs the collective in a
daemon thread while the caller waits for that verdict; a failure gives the group up and raises the server's message.

The caller's CUDA device is set in the threads (a new thread starts on device 0), so a broadcast moves its tensors
to the same GPU it would have used in the caller's thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def post_with_collective[T](
    post: Callable[[], T],
    collective: Callable[[], object],
    *,
    abort: Callable[[], None] | None,
    timeout_s: float,
    what: str = "weight update",
) -> T:
    """``post()``'s answer once both it and ``collective()`` ended; the first failure of either raises at once, after
    ``abort()`` (module docstring)."""
    ended: queue.SimpleQueue[tuple[str, BaseException | None, object]] = queue.SimpleQueue()
    for side, fn in (("POST", post), ("collective", collective)):
        _start(side, fn, ended, what)
    deadline, pending, answer = time.monotonic() + timeout_s, {"POST", "collective"}, None
    while pending:
        try:
            side, exc, out = ended.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            _give_up(abort, what)
            late = " and ".join(sorted(pending))
            raise TimeoutError(f"{what}: the {late} did not end within {timeout_s:.0f} s") from None
        pending.discard(side)
        if exc is not None:
            _give_up(abort, what)
            raise exc
        if side == "POST":
            answer = out
    return answer  # type: ignore[return-value]


def collective_until_verdict(
    collective: Callable[[], object],
    verdict: Callable[[], str | None],
    *,
    abort: Callable[[], None],
    timeout_s: float,
    what: str = "weight update",
) -> None:
    """``collective()`` in a daemon thread while ``verdict()`` (blocking: the POSTing process's outcome, None when its
    POSTs succeeded, else the error) runs here. A failure is raised at once as a ``RuntimeError`` with that message,
    after ``abort()``; a success waits for the collective (the servers took part, so it ends) and raises its error."""
    ended: queue.SimpleQueue[tuple[str, BaseException | None, object]] = queue.SimpleQueue()
    _start("collective", collective, ended, what)
    failure = verdict()
    if failure is not None:
        _give_up(abort, what)
        raise RuntimeError(f"{what}: the engine's POST failed (rank 0 says): {failure}")
    try:
        _, exc, _ = ended.get(timeout=timeout_s)
    except queue.Empty:
        _give_up(abort, what)
        raise TimeoutError(f"{what}: the collective did not end within {timeout_s:.0f} s of the POSTs") from None
    if exc is not None:
        _give_up(abort, what)
        raise exc


def _start(side: str, fn: Callable[[], object], ended: queue.SimpleQueue, what: str) -> None:
    """``fn()`` in a daemon thread on the caller's CUDA device; ``(side, error or None, result)`` goes to ``ended``."""
    device = torch.cuda.current_device() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def run() -> None:
        try:
            if device is not None:
                torch.cuda.set_device(device)
            out = fn()
        except BaseException as exc:  # handed to the caller, never an unhandled thread exception
            ended.put((side, exc, None))
        else:
            ended.put((side, None, out))

    threading.Thread(target=run, name=f"{what}-{side}", daemon=True).start()


def _give_up(abort: Callable[[], None] | None, what: str, wait_s: float = 30.0) -> None:
    """``abort()``, best effort and bounded: the error that made us give up is the one to raise, and an abort that
    itself blocks (an NCCL communicator still being made in the other thread) must not keep the caller waiting."""
    if abort is None:
        return

    def run() -> None:
        try:
            abort()
        except Exception as exc:
            log.warning("%s: could not give up the update group: %r", what, exc)

    thread = threading.Thread(target=run, name=f"{what}-abort", daemon=True)
    thread.start()
    thread.join(wait_s)
    if thread.is_alive():
        log.warning("%s: giving the update group up did not end in %.0f s; raising anyway", what, wait_s)


__all__ = ["collective_until_verdict", "post_with_collective"]
