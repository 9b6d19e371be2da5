"""The SGLang rollout engine: :class:`~cod_megatron.engines.interface.InferenceEngine` over SGLang's HTTP API.

It speaks the pinned version of :mod:`cod_megatron.engines.sglang.protocol` (the HTTP client, errors and ``/generate``
bodies). What that version asks of a client beyond generation, and why the code looks the way it does:

* Weight updates must run inside a session: ``/begin_weight_update`` before the first bucket and
  ``/end_weight_update`` after the last (the scheduler refuses ``update_weights_from_*`` outside one). Each
  ``/update_weights_from_distributed`` call carries names/dtypes/shapes; the tensors themselves travel by an NCCL
  broadcast from trainer rank 0 that the trainer starts while the POST is in flight (the slime order), so the
  transport is a callable handed in by the trainer. ``weight_version`` and ``flush_cache`` go with the last bucket
  only, so the server reports the new version exactly when all of it has arrived.
* ``/update_weights_from_tensor`` (colocated engines) takes one base64 ``MultiprocessingSerializer`` payload per
  engine TP rank, each made by the trainer rank on that rank's GPU (:mod:`.ipc`): a ``serializer`` callable when
  this process makes them all (an engine at TP 1), or :meth:`SGLangEngine.update_weights_serialized` with payloads
  gathered from the trainer ranks.
* ``/release_memory_occupation`` and ``/resume_memory_occupation`` take ``{"tags": [...] | null}`` (null: weights,
  KV cache and CUDA graphs) and need ``--enable-memory-saver``; the server must be idle when releasing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cod_megatron.engines.interface import EngineRequest, Generation, ScoreRequest
from cod_megatron.engines.sglang.collective_post import post_with_collective
from cod_megatron.engines.sglang.protocol import (
    HttpClient,
    SGLangError,
    error_message,
    generate_body,
    parse_generation,
    parse_scores,
    score_body,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Broadcast = Callable[[list[tuple[str, "torch.Tensor"]]], None]
"""Trainer side of ``/update_weights_from_distributed``: broadcast each tensor, in order, from rank 0 of the group."""
Serializer = Callable[[list[tuple[str, "torch.Tensor"]]], list[str]]
"""One base64 payload per engine TP rank for ``/update_weights_from_tensor``."""


def _weight_version(raw: Any) -> int:
    """SGLang's weight version is a string ("default" at launch); ours are ints, -1 meaning none pushed yet."""
    try:
        return int(raw)
    except (TypeError, ValueError):
        return -1


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")  # the server does getattr(torch, name)


SERIALIZER_NOTE = (
    "Use cod_megatron.engines.sglang.ipc.serializer_for(engine_tp) (SGLang's MultiprocessingSerializer format), "
    "or send payloads made on every trainer rank with update_weights_serialized."
)
"""Where the serializer comes from."""


# ---- the engine ---------------------------------------------------------------------------------------------------


@dataclass
class SGLangEngine:
    """One SGLang server behind :class:`~cod_megatron.engines.interface.InferenceEngine`.

    ``transport="distributed"`` sends weights by NCCL broadcast (``broadcast``; call
    :meth:`init_weights_update_group` once first); ``"tensor"`` by ``/update_weights_from_tensor`` (CUDA-IPC payloads:
    ``serializer`` for :meth:`update_weights`, or payloads from every trainer rank for
    :meth:`update_weights_serialized`).
    Each engine has its own update group by default; :func:`.shared_group.update_weights_shared_group` drives
    several engines that share one group. Not safe to update weights from two threads at once (one session per server).
    """

    url: str
    stop_token_ids: Sequence[int] = ()
    transport: Literal["distributed", "tensor"] = "distributed"
    broadcast: Broadcast | None = None
    abort_group: Callable[[], None] | None = None
    """Gives the update group up after a failed update (set with ``broadcast`` by ``update_group.connect_engine``)."""
    serializer: Serializer | None = None
    group_name: str = "cod_weight_update"
    timeout_s: float = 300.0
    """Generation and weight-update calls (``rollout.engine_timeout_s``)."""
    control_timeout_s: float = 60.0
    """Health, memory and cache calls."""
    retries: int = 3
    api_key: str | None = None
    release_tags: Sequence[str] | None = None
    """None: weights, KV cache and CUDA graphs (the server's default); e.g. ``("kv_cache",)`` to keep weights."""
    http: HttpClient = field(init=False, repr=False)
    weight_version: int = field(init=False, default=-1)
    """Last version this client completed; -1 until the first full update."""
    _session_open: bool = field(init=False, default=False, repr=False)
    _group_lost: bool = field(init=False, default=False, repr=False)
    _released: bool = field(init=False, default=False, repr=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.http = HttpClient(self.url, timeout_s=self.control_timeout_s, retries=self.retries, api_key=self.api_key)

    # ---- generation ----
    def generate_batch(self, requests: list[EngineRequest]) -> list[Generation]:
        """One ``/generate`` call for the whole batch; answers come back in request order."""
        if not requests:
            return []
        for i, r in enumerate(requests):
            if not r.prompt_ids:
                raise ValueError(f"request {i}: empty prompt")
        body = generate_body(requests, self.stop_token_ids)
        # not retried on timeouts: a slow batch would run again from scratch; the rollout layer retries lifecycles
        out = self.http.request("POST", "/generate", body, timeout_s=self.timeout_s, idempotent=False)
        if not isinstance(out, list) or len(out) != len(requests):
            got = len(out) if isinstance(out, list) else type(out).__name__
            raise SGLangError("POST /generate", f"expected a list of {len(requests)} answers, got {got}")
        return [parse_generation(item) for item in out]

    def score_batch(self, requests: list[ScoreRequest]) -> list[list[float]]:
        """One prefill-only ``/generate`` call scoring every request's tokens (a teacher's engine)."""
        if not requests:
            return []
        for i, r in enumerate(requests):
            if not r.prompt_ids:
                raise ValueError(f"score request {i}: empty prompt")
        # a prefill has no sampling state: scoring the same tokens twice gives the same answer, so it may be retried
        out = self.http.request("POST", "/generate", score_body(requests), timeout_s=self.timeout_s, idempotent=True)
        if not isinstance(out, list) or len(out) != len(requests):
            got = len(out) if isinstance(out, list) else type(out).__name__
            raise SGLangError("POST /generate", f"expected a list of {len(requests)} answers, got {got}")
        return [parse_scores(item, r) for item, r in zip(out, requests, strict=True)]

    # ---- weights ----
    def init_weights_update_group(
        self,
        master_address: str,
        master_port: int,
        rank_offset: int,
        world_size: int,
        *,
        join: Callable[[], object] | None = None,
        abort: Callable[[], None] | None = None,
        backend: str = "nccl",
        group_name: str | None = None,
    ) -> dict[str, Any]:
        """Have the server join the trainer's update group; ``join`` is the trainer's own (blocking) rank-0 init.

        The server's ranks are ``rank_offset .. rank_offset + tp - 1`` of ``world_size``; both sides block until all
        joined, so the POST goes out and ``join`` runs while it waits (slime's order). If either fails, ``abort``
        gives the half-made group up and the error (the server's message) is raised at once (:mod:`.collective_post`).
        ``group_name``: another group than this client's own (a pipeline stage's source hosts it, in another process;
        ``join`` is None).
        """
        body = self.init_group_body(master_address, master_port, rank_offset, world_size, backend=backend)
        if group_name is not None:
            body["group_name"] = group_name
        out = self._post_during("/init_weights_update_group", body, join, abort)
        if group_name is None:
            self._group_lost = False
        return out

    def init_group_body(
        self, master_address: str, master_port: int, rank_offset: int, world_size: int, *, backend: str = "nccl"
    ) -> dict[str, Any]:
        """The ``/init_weights_update_group`` body."""
        return {
            "master_address": master_address,
            "master_port": int(master_port),
            "rank_offset": int(rank_offset),
            "world_size": int(world_size),
            "group_name": self.group_name,
            "backend": backend,
        }

    def destroy_weights_update_group(self) -> dict[str, Any]:
        """Leave the update group (before a new one is made, e.g. after a trainer restart)."""
        return self._control("POST", "/destroy_weights_update_group", {"group_name": self.group_name})

    def bucket_body(self, named_tensors: list[tuple[str, torch.Tensor]], *, version: int, last: bool) -> dict[str, Any]:
        """The ``/update_weights_from_distributed`` or ``/update_weights_from_tensor`` body for one bucket."""
        if self.transport == "distributed":
            body: dict[str, Any] = {
                "names": [n for n, _ in named_tensors],
                "dtypes": [_dtype_name(t) for _, t in named_tensors],
                "shapes": [list(t.shape) for _, t in named_tensors],
                "group_name": self.group_name,
                "flush_cache": bool(last),
            }
        else:
            if self.serializer is None:
                raise ValueError(f"SGLangEngine({self.url}): transport='tensor' needs a serializer. {SERIALIZER_NOTE}")
            return self.tensor_body(self.serializer(named_tensors), version=version, last=last)
        if last:
            body["weight_version"] = str(version)
        return body

    def tensor_body(self, payloads: Sequence[str], *, version: int, last: bool) -> dict[str, Any]:
        """The ``/update_weights_from_tensor`` body: ``payloads[k]`` is what engine TP rank ``k`` loads."""
        body: dict[str, Any] = {"serialized_named_tensors": list(payloads), "flush_cache": bool(last)}
        if last:
            body["weight_version"] = str(version)
        return body

    def update_weights(self, named_tensors: list[tuple[str, torch.Tensor]], *, version: int, last: bool) -> None:
        """Load one bucket; the first bucket opens the server's update session and the ``last`` one closes it."""
        if self.transport == "distributed" and self.broadcast is None:
            raise ValueError(f"SGLangEngine({self.url}): transport='distributed' needs a broadcast callable")
        if self.transport == "tensor" and self.serializer is None:
            raise ValueError(f"SGLangEngine({self.url}): transport='tensor' needs a serializer. {SERIALIZER_NOTE}")
        if self.transport == "distributed" and self._group_lost:
            raise RuntimeError(
                f"SGLangEngine({self.url}): the update group was aborted after a failed update; join a new one "
                "(update_group.connect_engine)"
            )
        body = self.bucket_body(named_tensors, version=version, last=last)
        if self.transport == "distributed":
            tensors = list(named_tensors)
            path, during = "/update_weights_from_distributed", lambda: self.broadcast(tensors)
        else:
            path, during = "/update_weights_from_tensor", None
        self._in_session(path, body, version=version, last=last, during=during, abort=self._lose_group)

    def update_weights_broadcast_elsewhere(
        self, meta: list[tuple[str, str, list[int]]], *, version: int, last: bool, group_name: str
    ) -> None:
        """Load one bucket that another process broadcasts in the update group ``group_name`` (a pipeline stage's
        source, rank 0 of that group): this POST only names the tensors (``(name, dtype, shape)``) and returns once
        the server has received them. Same session bracket as :meth:`update_weights`."""
        body: dict[str, Any] = {
            "names": [n for n, _, _ in meta],
            "dtypes": [d for _, d, _ in meta],
            "shapes": [list(s) for _, _, s in meta],
            "group_name": group_name,
            "flush_cache": bool(last),
        }
        if last:
            body["weight_version"] = str(version)
        self._in_session("/update_weights_from_distributed", body, version=version, last=last)

    def update_weights_serialized(self, payloads: Sequence[str], *, version: int, last: bool) -> None:
        """Load one bucket already serialized per engine TP rank (``payloads[k]`` for TP rank ``k``, made on that
        rank's GPU); sessions as in :meth:`update_weights`. The tensors must live until this returns."""
        if self.transport != "tensor":
            raise ValueError(f"SGLangEngine({self.url}): serialized payloads need transport='tensor'")
        body = self.tensor_body(payloads, version=version, last=last)
        self._in_session("/update_weights_from_tensor", body, version=version, last=last)

    def _in_session(
        self,
        path: str,
        body: dict[str, Any],
        *,
        version: int,
        last: bool,
        during: Callable[[], object] | None = None,
        abort: Callable[[], None] | None = None,
    ) -> None:
        """POST one bucket inside the server's weight-update session: the first bucket opens it, ``last`` closes it
        and sets the version; a failure closes it (so the next update can begin) and re-raises."""
        with self._lock:
            self._begin_session()
            try:
                self._post_during(path, body, during, abort)
            except BaseException:
                self._abandon_session()
                raise
            if last:
                self._end_session()
                self.weight_version = version

    # ---- memory, cache, health ----
    def release_memory(self) -> None:
        """Free GPU memory (``--enable-memory-saver``); the server must be idle."""
        tags = None if self.release_tags is None else list(self.release_tags)
        self._control("POST", "/release_memory_occupation", {"tags": tags}, idempotent=False)
        self._released = True

    def resume_memory(self) -> None:
        """Take the memory back; released weights hold garbage until the next full weight update."""
        tags = None if self.release_tags is None else list(self.release_tags)
        self._control("POST", "/resume_memory_occupation", {"tags": tags}, idempotent=False)
        self._released = False

    def flush_cache(self, timeout_s: float = 0.0) -> None:
        """Drop the radix (prefix) cache; fails while requests are running."""
        query = {"timeout": timeout_s} if timeout_s else None
        self.http.request("POST", "/flush_cache", query=query, timeout_s=self.control_timeout_s + timeout_s)

    def model_info(self) -> dict[str, Any]:
        """``/model_info``: model path, served name and the server's ``weight_version`` string."""
        return self._control("GET", "/model_info")

    def server_info(self) -> dict[str, Any]:
        """``/server_info``: the resolved launch arguments plus scheduler state."""
        return self._control("GET", "/server_info")

    def health(self) -> dict[str, object]:
        """``ok`` from ``/health`` (a one-token generation when idle) and the version from ``/model_info``.

        While memory is released a generation would fail, so only ``/model_info`` (no scheduler work) is asked.
        """
        try:
            if not self._released:
                self.http.request("GET", "/health", timeout_s=self.control_timeout_s, idempotent=False)
            info = self.model_info()
        except SGLangError as exc:
            return {"ok": False, "weight_version": -1, "error": str(exc), "url": self.url}
        raw = info.get("weight_version") if isinstance(info, dict) else None
        return {
            "ok": True,
            "weight_version": _weight_version(raw),
            "server_weight_version": raw,
            "released": self._released,
            "url": self.url,
        }

    def restart(self) -> None:
        """A client cannot restart a server it does not own: :class:`SGLangRayEngine` owns and restarts it."""
        raise RuntimeError(f"SGLangEngine at {self.url} does not own its server; restart it through SGLangRayEngine")

    # ---- internals ----
    def _control(self, method: str, path: str, body: Any = None, *, idempotent: bool = True) -> Any:
        return self.http.request(method, path, body, timeout_s=self.control_timeout_s, idempotent=idempotent)

    def _post_weights(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        out = self.http.request("POST", path, body, timeout_s=self.timeout_s, idempotent=False)
        if not (isinstance(out, dict) and out.get("success", False)):
            raise SGLangError(f"POST {path}", error_message(out))
        return out

    def _post_during(
        self,
        path: str,
        body: dict[str, Any],
        during: Callable[[], object] | None,
        abort: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """POST while ``during`` (a collective the server joins) runs; the first of them to fail raises at once after
        ``abort`` (:func:`~.collective_post.post_with_collective`), else the answer once both ended."""
        if during is None:
            return self._post_weights(path, body)
        return post_with_collective(
            lambda: self._post_weights(path, body), during, abort=abort, timeout_s=self.timeout_s + 5, what=path
        )

    def _lose_group(self) -> None:
        """A failed ``/update_weights_from_distributed``: give the update group up (when this client has one to give
        up); later updates refuse until a new group is joined."""
        if self.abort_group is not None:
            self._group_lost = True
            self.abort_group()

    def _begin_session(self) -> None:
        if not self._session_open:
            self._post_weights("/begin_weight_update", {})
            self._session_open = True

    def _end_session(self) -> None:
        self._session_open = False
        self._post_weights("/end_weight_update", {})

    def _abandon_session(self) -> None:
        """A failed bucket: close the server's session so the next update can begin (best effort)."""
        if self._session_open:
            try:
                self._end_session()
            except SGLangError as exc:
                log.warning("could not close the weight-update session on %s: %s", self.url, exc)
            self._session_open = False


__all__ = ["Broadcast", "SERIALIZER_NOTE", "SGLangEngine", "Serializer"]
