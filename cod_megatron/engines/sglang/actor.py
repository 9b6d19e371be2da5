"""SGLang rollout engines under Ray: an actor per engine owns one SGLang HTTP-server child process on its GPUs.

The shape is slime's (slime's rollout-engine layout): one placement group; per engine one actor placed on a
bundle that holds the engine's ``engine_tp`` GPUs; the actor picks a port, launches ``python -m sglang.launch_server``
as a child in its own process group, waits for ``/health`` and reports the URL. ``shutdown`` kills the whole group
(SGLang's scheduler processes included); an actor killed outright takes the server with it through a parent-death
signal set before the server's program starts (SGLang's own processes watch their parent the same way). The trainer
then talks HTTP straight to each server through :class:`~cod_megatron.engines.sglang.client.SGLangEngine`: the actor
owns the process, it is not a proxy for requests. The trainer's handle on both is
:class:`~cod_megatron.engines.sglang.ray_engine.SGLangRayEngine`.

GPU ids: Ray sets the actor's ``CUDA_VISIBLE_DEVICES`` to the GPUs it assigned (unless
``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES`` is set), so ``--base-gpu-id`` must be the *local* ordinal of the first
assigned GPU among the visible devices, not its physical id (THUDM/slime#1326): :func:`plan_gpus`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cod_megatron.engines.sglang.devices import resolve_uuids
from cod_megatron.engines.sglang.protocol import SGLangError
from cod_megatron.engines.sglang.server import SGLangServerConfig, launch_argv, wait_until_ready

log = logging.getLogger(__name__)

_LAUNCH_SEQ = itertools.count(1)

_PARENT_DEATH_EXEC = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"  # PR_SET_PDEATHSIG: die with the launching thread
    "os.getppid() == int(sys.argv[1]) or sys.exit(111)\n"  # the parent died before prctl
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
"""Run before the server's own program (``python -c``): a ``ray.kill``-ed actor cannot kill its child itself."""


# ---- pure helpers -------------------------------------------------------------------------------------------------


def plan_gpus(gpu_ids: Sequence[int | str], tp_size: int, visible: str | None) -> tuple[int, str | None]:
    """``(base_gpu_id, CUDA_VISIBLE_DEVICES for the server or None to inherit)`` for the GPUs Ray gave an engine.

    ``visible`` is the actor's own ``CUDA_VISIBLE_DEVICES``. SGLang uses devices ``base .. base + tp - 1`` as the
    server sees them, so the base is the first assigned GPU's ordinal among the visible devices; when the assigned
    GPUs are not contiguous there, the server is narrowed to exactly them (then the base is 0).
    """
    ids = [str(g).strip() for g in gpu_ids]
    if len(ids) != tp_size:
        raise ValueError(f"an engine with tp_size={tp_size} got {len(ids)} GPU(s) {ids} from its placement bundle")
    vis = [v.strip() for v in visible.split(",") if v.strip()] if visible else None
    ordinals: list[int] | None
    if vis is not None:
        ordinals = [vis.index(g) for g in ids] if all(g in vis for g in ids) else None
    else:  # nothing hidden: Ray's ids are the node's device ordinals
        ordinals = [int(g) for g in ids] if all(g.isdigit() for g in ids) else None
    if ordinals is not None and sorted(ordinals) == list(range(min(ordinals), min(ordinals) + tp_size)):
        return min(ordinals), None
    order = sorted(range(len(ids)), key=lambda i: ordinals[i] if ordinals is not None else i)
    return 0, ",".join(ids[i] for i in order)


def server_devices(base_gpu_id: int, visible: str | None, tp_size: int) -> list[str]:
    """The device of each server TP rank ``k`` (SGLang's ``base_gpu_id + k``) as named on the node: the
    ``CUDA_VISIBLE_DEVICES`` entry the server sees there (an index or a UUID), else the index itself."""
    vis = [v.strip() for v in visible.split(",") if v.strip()] if visible else None
    ordinals = range(base_gpu_id, base_gpu_id + tp_size)
    if vis is None:
        return [str(i) for i in ordinals]
    if base_gpu_id + tp_size > len(vis):
        raise ValueError(f"TP {tp_size} from base GPU {base_gpu_id} does not fit the visible devices {vis}")
    return [vis[i] for i in ordinals]


def server_argv(cfg: SGLangServerConfig, command: Sequence[str] = ()) -> list[str]:
    """The server's command line: :func:`launch_argv`'s flags after ``command`` (default ``python -m sglang...``)."""
    argv = launch_argv(cfg)
    return list(command) + argv[3:] if command else argv


def free_port(host: str) -> int:
    """A port nothing listens on right now (the server binds it a moment later; a clash is retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:  # no procfs
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


# ---- the actor ----------------------------------------------------------------------------------------------------


class SGLangServerActor:
    """Owns one SGLang server process: picks its GPUs and port, launches it, reports its URL, kills it.

    A plain class: ``ray.remote(SGLangServerActor)`` places it on a bundle; ``rollout.backend=inprocess`` uses it
    directly (then ``gpu_ids=[]`` and the config's ``base_gpu_id`` stand).
    """

    def __init__(
        self,
        server: SGLangServerConfig,
        *,
        log_dir: str,
        name: str = "engine0",
        command: Sequence[str] = (),
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 900.0,
        gpu_ids: Sequence[int | str] | None = None,
        host: str | None = None,
    ):
        self.server, self.command, self.name = server, tuple(command), name
        self.log_dir, self.env, self.startup_timeout_s = Path(log_dir), dict(env or {}), startup_timeout_s
        self._gpu_ids, self._host = gpu_ids, host
        self._proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.log_path: Path | None = None
        self.argv: list[str] = []
        self.launches = 0
        self._placement: tuple[int, str | None] | None = None
        """The server's ``base_gpu_id`` and ``CUDA_VISIBLE_DEVICES`` (None until started)."""

    # ---- lifecycle ----
    def start(self) -> str:
        """Launch the server and block until ``/health`` answers; returns its URL (raises with the log's tail)."""
        if self._proc is not None and self._proc.poll() is None and self.url:
            return self.url
        host = self._host or _node_ip()
        gpu_ids = _ray_gpu_ids() if self._gpu_ids is None else list(self._gpu_ids)
        if gpu_ids:
            base, visible = plan_gpus(gpu_ids, self.server.tp_size, os.environ.get("CUDA_VISIBLE_DEVICES"))
        else:  # CPU (stand-in), or GPUs chosen by the caller through server.base_gpu_id
            base, visible = self.server.base_gpu_id, None
        env = {**os.environ, **self.env}
        env.pop("SGLANG_RETURN_ORIGINAL_LOGPROB", None)  # log-probs must be those of the sampled distribution
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
        self._placement = (base, env.get("CUDA_VISIBLE_DEVICES"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            port = free_port(host)
            cfg = dataclasses.replace(self.server, host=host, port=port, base_gpu_id=base)
            self.argv = server_argv(cfg, self.command)
            self.url = f"http://{host}:{port}"
            self._launch(self.argv, env)
            try:
                self._wait_ready()
                log.info("%s: SGLang server %s ready (GPUs %s, base %d)", self.name, self.url, gpu_ids, base)
                return self.url
            except RuntimeError as exc:
                self.shutdown()
                clash = "address already in use" in str(exc).lower()
                if not clash or attempt == 2:
                    raise
                log.warning("%s: port %d was taken; launching again", self.name, port)
        raise AssertionError("unreachable")

    def _launch(self, argv: list[str], env: dict[str, str]) -> None:
        """Popen from a thread that lives as long as the child, so parent-death fires only when the actor dies."""
        self.launches += 1
        self.log_path = self.log_dir / f"{self.name}.{os.getpid()}-{next(_LAUNCH_SEQ)}.log"  # unique per launch
        full = [sys.executable, "-c", _PARENT_DEATH_EXEC, str(os.getpid()), *argv] if sys.platform == "linux" else argv
        spawned = threading.Event()
        errors: list[BaseException] = []

        def keep() -> None:
            try:
                with open(self.log_path, "ab") as out:
                    self._proc = subprocess.Popen(
                        full, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                        start_new_session=True,  # its own process group: shutdown kills SGLang's children too
                    )  # fmt: skip
            except BaseException as exc:
                errors.append(exc)
                return
            finally:
                spawned.set()
            self._proc.wait()

        threading.Thread(target=keep, name=f"{self.name}-server", daemon=True).start()
        spawned.wait()
        if errors:
            raise RuntimeError(f"{self.name}: could not launch {argv[:4]}...: {errors[0]!r}") from errors[0]

    def _wait_ready(self) -> None:
        assert self._proc is not None and self.url is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"{self.name}: SGLang server exited with code {rc} while starting; {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"{self.name}: SGLang server {self.url} not ready after {self.startup_timeout_s:.0f} s; "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            try:
                wait_until_ready(self.url, timeout_s=min(2.0, left), poll_s=0.1)
                return
            except SGLangError:
                continue

    def shutdown(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after ``timeout_s``; returns once it is gone."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s: server %d ignored SIGTERM for %.0f s; killing it", self.name, proc.pid, timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # also stragglers of a server that died on its own
        proc.wait(timeout=10)

    # ---- inspection ----
    def device_uuids(self) -> list[str]:
        """The UUID of each server TP rank's GPU, in TP-rank order (``nvidia-smi`` on this node for indices)."""
        if self._placement is None:
            raise RuntimeError(f"{self.name}: the server is not started")
        return resolve_uuids(server_devices(*self._placement, self.server.tp_size))

    def poll(self) -> dict[str, Any]:
        """Whether the server process runs; its pid, exit code, URL and log file."""
        proc = self._proc
        rc = None if proc is None else proc.poll()
        if proc is not None and rc is None and not _alive(proc.pid):  # dead, not reaped by the keeper thread yet
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = proc.wait(timeout=2.0)
        return {
            "running": proc is not None and rc is None and _alive(proc.pid),
            "returncode": rc,
            "pid": None if proc is None else proc.pid,
            "url": self.url,
            "log": None if self.log_path is None else str(self.log_path),
        }

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of the current server log (what failed, when it failed)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(max(0, self.log_path.stat().st_size - max_bytes))
            return f.read().decode("utf-8", errors="replace")


def _ray_gpu_ids() -> list[int | str]:
    """The GPUs Ray assigned to this actor ([] outside Ray or on a CPU bundle)."""
    try:
        import ray
    except ImportError:
        return []
    return list(ray.get_gpu_ids()) if ray.is_initialized() else []


def _node_ip() -> str:
    """This node's address as Ray knows it (reachable from the trainer), else loopback."""
    try:
        import ray

        if ray.is_initialized():
            return str(ray.util.get_node_ip_address())
    except ImportError:
        pass
    return "127.0.0.1"
