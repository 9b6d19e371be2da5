"""Launching and routing SGLang servers: the ``launch_server`` command line and the sglang-router client.

Next to :mod:`cod_megatron.engines.sglang.client` (the per-server HTTP engine); both speak the pinned versions
:data:`~cod_megatron.engines.sglang.protocol.SGLANG_VERSION` and ``SGLANG_ROUTER_VERSION`` of
:mod:`cod_megatron.engines.sglang.protocol`.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from cod_megatron.engines.sglang.protocol import SGLANG_ROUTER_VERSION, HttpClient, SGLangError

__all__ = ["SGLANG_ROUTER_VERSION", "SGLangRouterClient", "SGLangServerConfig", "launch_argv", "wait_until_ready"]


# ---- router -------------------------------------------------------------------------------------------------------


@dataclass
class SGLangRouterClient:
    """Registers engines with sglang-router :data:`SGLANG_ROUTER_VERSION`: ``POST /workers``, ``DELETE /workers/{id}``.

    Registration is asynchronous on the router (HTTP 202); :meth:`wait_healthy` polls until it serves the worker.
    """

    url: str
    timeout_s: float = 30.0
    retries: int = 3
    api_key: str | None = None
    http: HttpClient = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.http = HttpClient(self.url, timeout_s=self.timeout_s, retries=self.retries, api_key=self.api_key)

    def add_worker(self, worker_url: str, **options: Any) -> str:
        """Queue ``worker_url`` for registration; returns the router's worker id (a UUID)."""
        out = self.http.request("POST", "/workers", {"url": worker_url, **options})
        if not isinstance(out, dict) or "worker_id" not in out:
            raise SGLangError("POST /workers", f"unexpected answer {out!r}")
        return str(out["worker_id"])

    def list_workers(self) -> list[dict[str, Any]]:
        """The router's workers (id, url, is_healthy, load, ...)."""
        out = self.http.request("GET", "/workers")
        return list(out.get("workers", [])) if isinstance(out, dict) else []

    def worker_id(self, worker_url: str) -> str | None:
        """The id of the worker registered under ``worker_url``, or None."""
        want = worker_url.rstrip("/")
        for w in self.list_workers():
            if str(w.get("url", "")).rstrip("/") == want:
                return str(w["id"])
        return None

    def remove_worker(self, worker: str) -> None:
        """Queue removal of a worker given by id or URL (the router deletes by id only)."""
        wid = self.worker_id(worker) if "://" in worker else worker
        if wid is None:
            raise SGLangError("DELETE /workers/{id}", f"no worker registered under {worker}")
        self.http.request("DELETE", f"/workers/{urllib.parse.quote(wid)}", idempotent=False)

    def wait_healthy(self, worker_url: str, timeout_s: float = 120.0, poll_s: float = 1.0) -> None:
        """Block until the router lists ``worker_url`` as healthy."""
        deadline = time.monotonic() + timeout_s
        want = worker_url.rstrip("/")
        while time.monotonic() < deadline:
            if any(str(w.get("url", "")).rstrip("/") == want and w.get("is_healthy") for w in self.list_workers()):
                return
            time.sleep(poll_s)
        raise SGLangError("GET /workers", f"{worker_url} not healthy after {timeout_s:.0f} s")


# ---- launch -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SGLangServerConfig:
    """What we launch an SGLang server with; each field maps to one ``launch_server`` flag (None/False: omitted)."""

    model_path: str
    port: int = 30000
    host: str = "127.0.0.1"
    tp_size: int = 1
    base_gpu_id: int = 0
    mem_fraction_static: float | None = None
    context_length: int | None = None
    """``rollout.max_model_len``."""
    dtype: str | None = None
    random_seed: int | None = None
    served_model_name: str | None = None
    skip_tokenizer_init: bool = True
    """We send and read token ids only; the chat renderer owns the tokenizer."""
    enable_memory_saver: bool = False
    """Needed for release/resume (colocated engines)."""
    enable_deterministic_inference: bool = True
    """Needed for ``sampling_seed`` to take effect (reproducible samples); costs some throughput."""
    log_level: str | None = None
    extra_args: tuple[str, ...] = ()
    """Passed through verbatim, after ours."""


_LAUNCH_FLAGS: dict[str, str] = {
    "model_path": "--model-path",
    "host": "--host",
    "port": "--port",
    "tp_size": "--tp-size",
    "base_gpu_id": "--base-gpu-id",
    "mem_fraction_static": "--mem-fraction-static",
    "context_length": "--context-length",
    "dtype": "--dtype",
    "random_seed": "--random-seed",
    "served_model_name": "--served-model-name",
    "skip_tokenizer_init": "--skip-tokenizer-init",
    "enable_memory_saver": "--enable-memory-saver",
    "enable_deterministic_inference": "--enable-deterministic-inference",
    "log_level": "--log-level",
}
"""Config field -> flag of the pinned version (checked against ``tests/fixtures/sglang/<v>/server_args.json``)."""


def launch_argv(cfg: SGLangServerConfig, python: str = sys.executable) -> list[str]:
    """``python -m sglang.launch_server ...`` for ``cfg`` (run it with ``SGLANG_RETURN_ORIGINAL_LOGPROB`` unset)."""
    argv = [python, "-m", "sglang.launch_server"]
    for name, flag in _LAUNCH_FLAGS.items():
        value = getattr(cfg, name)
        if value is None or value is False:
            continue
        argv += [flag] if value is True else [flag, str(value)]
    return argv + list(cfg.extra_args)


def wait_until_ready(url: str, timeout_s: float = 600.0, poll_s: float = 2.0) -> None:
    """Poll ``/health`` until a freshly launched server answers 200 (it answers 503 while starting)."""
    http = HttpClient(url, timeout_s=min(30.0, timeout_s), retries=0)
    deadline, last = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        try:
            http.request("GET", "/health")
            return
        except SGLangError as exc:
            last = str(exc)
        time.sleep(poll_s)
    raise SGLangError("GET /health", f"server at {url} not ready after {timeout_s:.0f} s (last: {last})")
