"""The trainer's handle on one SGLang engine: the server's owner (a :class:`~.actor.SGLangServerActor`) plus a client.

:class:`SGLangRayEngine` puts both behind the :class:`~cod_megatron.engines.interface.InferenceEngine` interface, with
the ``health``/``restart``/``shutdown`` of :class:`~cod_megatron.engines.startup.RayEngine` so the rollout manager's
heal path works: a restart launches a fresh actor and server in the same bundle (new URL, weights must be synced again).

Weights are not moved here. :class:`SGLangEngine` takes a pluggable transport: ``distributed`` (disaggregated engines;
a ``broadcast`` callable and ``init_weights_update_group`` beforehand) or ``tensor`` (colocated; a ``serializer``).
``start_engines`` joins each server's update group from the trainer (:mod:`.update_group`) and again after a restart
(``on_new_server``); colocated engines get the CUDA-IPC serializer of :mod:`.ipc`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from cod_megatron.engines.interface import EngineRequest, Generation, ScoreRequest
from cod_megatron.engines.sglang.client import SGLangEngine
from cod_megatron.engines.sglang.protocol import SGLangError
from cod_megatron.engines.sglang.server import SGLangRouterClient

log = logging.getLogger(__name__)

CONTROL_TIMEOUT_S = 60.0
"""Actor calls other than ``start`` (poll, shutdown)."""


class SGLangRayEngine:
    """An SGLang server owned by a :class:`~.actor.SGLangServerActor`, spoken to over HTTP by an :class:`SGLangEngine`.

    The owner is a Ray actor (``remote=True``) or, for ``rollout.backend=inprocess``, a plain object.

    ``restart`` replaces actor and server (a new URL); the client keeps its transport settings (``broadcast``,
    ``serializer``) across restarts, but a ``distributed`` transport must join the update group again.
    """

    def __init__(
        self,
        make_actor: Callable[[], Any],
        client_kwargs: dict[str, Any],
        *,
        name: str,
        remote: bool = True,
        router: SGLangRouterClient | None = None,
        startup_timeout_s: float = 900.0,
        placement_group: Any = None,
    ):
        self._make_actor, self.client_kwargs, self.name, self.remote = make_actor, dict(client_kwargs), name, remote
        self.router, self.startup_timeout_s, self.placement_group = router, startup_timeout_s, placement_group
        self.actor = make_actor()
        self.client: SGLangEngine | None = None
        self.restarts = 0
        self.on_new_server: Callable[[SGLangEngine], object] | None = None
        """Run on the client after a restart brought up a new server (the trainer re-joins its update group)."""

    @property
    def url(self) -> str | None:
        """The server's base URL (changes on restart)."""
        return None if self.client is None else self.client.url

    def _call(self, method: str, *args: Any, timeout_s: float = CONTROL_TIMEOUT_S) -> Any:
        if not self.remote:
            return getattr(self.actor, method)(*args)
        import ray

        return ray.get(getattr(self.actor, method).remote(*args), timeout=timeout_s)

    def _need_client(self) -> SGLangEngine:
        if self.client is None:
            raise RuntimeError(f"{self.name}: the server is not started")
        return self.client

    # ---- lifecycle ----
    def start(self) -> str:
        """Launch the server (blocks until ready), point the client at it and register it with the router."""
        url = self._call("start", timeout_s=self.startup_timeout_s + CONTROL_TIMEOUT_S)
        if self.client is None:
            self.client = SGLangEngine(url=url, **self.client_kwargs)
        else:  # keep what the trainer set on the client (transport callables), drop per-server state
            self.client = dataclasses.replace(self.client, url=url)
        if self.router is not None:
            self.router.add_worker(url)
        return url

    def restart(self) -> None:
        """End the server and its actor (whatever state they are in) and start fresh ones in the same bundle."""
        old = self.url
        self._end_actor()
        if self.router is not None and old is not None:
            try:
                self.router.remove_worker(old)
            except SGLangError as exc:  # the router may have dropped the dead worker already
                log.info("%s: router did not remove %s: %s", self.name, old, exc)
        self.actor = self._make_actor()
        self.start()
        if self.on_new_server is not None and self.client is not None:
            self.on_new_server(self.client)
        self.restarts += 1
        log.warning("%s: restarted at %s (was %s)", self.name, self.url, old)

    def shutdown(self) -> None:
        """Deregister from the router, kill the server, end the actor."""
        if self.router is not None and self.url is not None:
            try:
                self.router.remove_worker(self.url)
            except SGLangError as exc:
                log.warning("%s: router did not remove %s: %s", self.name, self.url, exc)
        self._end_actor()

    def _end_actor(self) -> None:
        try:
            self._call("shutdown")
        except Exception as exc:  # a dead actor took its server with it (parent-death signal)
            log.info("%s: actor shutdown failed (%r); killing the actor", self.name, exc)
        if self.remote:
            import ray

            with contextlib.suppress(Exception):
                ray.kill(self.actor)

    # ---- InferenceEngine ----
    def generate_batch(self, requests: list[EngineRequest]) -> list[Generation]:  # noqa: D102
        return self._need_client().generate_batch(requests)

    def score_batch(self, requests: list[ScoreRequest]) -> list[list[float]]:  # noqa: D102
        return self._need_client().score_batch(requests)

    def update_weights(self, named_tensors: list, *, version: int, last: bool) -> None:  # noqa: D102
        self._need_client().update_weights(named_tensors, version=version, last=last)

    def update_weights_serialized(self, payloads: list[str], *, version: int, last: bool) -> None:
        """One bucket as per-TP-rank CUDA-IPC payloads (colocated engines; see ``SGLangEngine``)."""
        self._need_client().update_weights_serialized(payloads, version=version, last=last)

    def release_memory(self) -> None:  # noqa: D102
        self._need_client().release_memory()

    def resume_memory(self) -> None:  # noqa: D102
        self._need_client().resume_memory()

    def health(self) -> dict[str, object]:
        """Not ok when the actor or the server process is gone (no HTTP retries then), else the server's answer."""
        try:
            state = self._call("poll")
        except Exception as exc:  # RayActorError, GetTimeoutError
            return {"ok": False, "weight_version": -1, "error": f"actor: {exc!r}", "url": self.url}
        if not state["running"]:
            why = f"server process exited with code {state['returncode']} (log: {state['log']})"
            return {"ok": False, "weight_version": -1, "error": why, "url": self.url}
        return self._need_client().health()

    def device_uuids(self) -> list[str]:
        """The UUID of each engine TP rank's GPU, in TP-rank order, from the server's owner (its node's view)."""
        return list(self._call("device_uuids"))

    def server_state(self) -> dict[str, Any]:
        """The actor's view of its server: running, pid, exit code, URL, log file."""
        return self._call("poll")
