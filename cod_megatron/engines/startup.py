"""Starting the rollout engines: in-process objects or Ray actors placed by the parallel layout.

``rollout.backend=ray`` (default) runs each engine as a Ray actor in a placement group built from
``ParallelLayout.engine_bundles()`` (on CPU every bundle is half a core, so the trainer keeps the rest);
``rollout.backend=inprocess`` calls the same engine objects directly, for debugging and single-GPU smoke runs on a
machine that cannot install Ray. Either way the rest of the loop sees :class:`InferenceEngine` objects.
``rollout.engine=sglang`` places one :class:`~cod_megatron.engines.sglang.actor.SGLangServerActor` per engine the same
way; each owns an SGLang server process and the trainer talks HTTP to the servers (:mod:`.sglang.actor`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cod_megatron.config import ParallelLayout, RunConfig
from cod_megatron.config.base import ConfigError
from cod_megatron.engines.embedded import EmbeddedEngine
from cod_megatron.engines.interface import EngineRequest, Generation, InferenceEngine, ScoreRequest
from cod_megatron.engines.sglang.actor import SGLangServerActor
from cod_megatron.engines.sglang.ipc import serializer_for
from cod_megatron.engines.sglang.ray_engine import SGLangRayEngine
from cod_megatron.engines.sglang.server import SGLangRouterClient, SGLangServerConfig
from cod_megatron.engines.teacher_pool import TeacherPool
from cod_megatron.models.model_tokenizer import tokenizer_mismatch
from cod_megatron.models.source import local_source, model_source

log = logging.getLogger(__name__)

_CPU_ENGINE_CORES = 0.5
"""A whole-core actor on a 2-core box starves the trainer and can hang a placement group (docs/cpu.md)."""


class RayEngine:
    """An engine living in a Ray actor; ``restart`` replaces a dead actor (weights must be synced again)."""

    def __init__(self, make_actor: Callable[[], Any], timeout_s: float):
        self._make_actor, self.timeout_s = make_actor, timeout_s
        self.actor = make_actor()
        self.restarts = 0

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import ray

        return ray.get(getattr(self.actor, method).remote(*args, **kwargs), timeout=self.timeout_s)

    def generate_batch(self, requests: list[EngineRequest]) -> list[Generation]:  # noqa: D102
        return self._call("generate_batch", requests)

    def score_batch(self, requests: list[ScoreRequest]) -> list[list[float]]:  # noqa: D102
        return self._call("score_batch", requests)

    def update_weights(self, named_tensors: list, *, version: int, last: bool) -> None:  # noqa: D102
        self._call("update_weights", named_tensors, version=version, last=last)

    def release_memory(self) -> None:  # noqa: D102
        self._call("release_memory")

    def resume_memory(self) -> None:  # noqa: D102
        self._call("resume_memory")

    def health(self) -> dict[str, object]:
        """The actor's own answer, or ``ok: False`` when it is dead or does not answer in time."""
        try:
            return self._call("health")
        except Exception as exc:  # a dead actor raises RayActorError, a hung one GetTimeoutError
            return {"ok": False, "weight_version": -1, "error": repr(exc)}

    def restart(self) -> None:
        """Kill the actor (if it still lives) and start a fresh one in the same place."""
        import ray

        try:
            ray.kill(self.actor)
        except Exception:  # already gone
            pass
        self.actor = self._make_actor()
        self.restarts += 1

    def shutdown(self) -> None:
        """End the actor."""
        import ray

        ray.kill(self.actor)


_OWN_RAY: list[bool] = []
"""Whether this process started the Ray cluster it uses (then it also ends it)."""


def init_ray() -> None:
    """Join the cluster of a Ray job (``RAY_ADDRESS``, set by ``ray job submit`` on Slurm) or start a local one.

    Joining must not size the cluster: Ray refuses ``object_store_memory`` (and CPU counts) for an existing one."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False, logging_level="ERROR")
    else:
        _OWN_RAY.append(True)
        ray.init(
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            object_store_memory=200 * 1024**2,
        )


def start_engines(cfg: RunConfig, layout: ParallelLayout, engine_kwargs: dict[str, Any]) -> list[InferenceEngine]:
    """``layout.engines`` engines: ``EmbeddedEngine(**engine_kwargs)`` in-process or as Ray actors, or SGLang servers.

    For ``rollout.engine=sglang`` see :func:`_start_sglang`; of ``engine_kwargs`` it uses ``stop_token_ids`` and the
    optional weight transport (``transport``, ``broadcast``, ``serializer``) of :class:`SGLangEngine`.
    """
    if cfg.rollout.engine == "sglang":
        return _start_sglang(cfg, layout, engine_kwargs)
    if cfg.rollout.backend == "inprocess":
        return [EmbeddedEngine(**engine_kwargs) for _ in range(layout.engines)]
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    init_ray()
    cpu = cfg.run.device == "cpu"
    bundles = [[{"CPU": _CPU_ENGINE_CORES}] if cpu else b for b in layout.engine_bundles()]
    pg = placement_group([b for per_engine in bundles for b in per_engine], strategy="PACK")
    ray.get(pg.ready(), timeout=cfg.rollout.engine_timeout_s)
    actor_cls = ray.remote(EmbeddedEngine)
    engines: list[InferenceEngine] = []
    first = 0
    for per_engine in bundles:

        def make(index: int = first, res: dict = per_engine[0]) -> Any:
            strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=index)
            return actor_cls.options(
                num_cpus=res.get("CPU", 0), num_gpus=res.get("GPU", 0), scheduling_strategy=strategy
            ).remote(**engine_kwargs)

        engines.append(RayEngine(make, timeout_s=cfg.rollout.engine_timeout_s))
        first += len(per_engine)
    log.info("started %d Ray engine actor(s) in placement group %s", len(engines), pg.id.hex()[:8])
    return engines


_SGLANG_CLIENT_KEYS = ("stop_token_ids", "transport", "broadcast", "serializer")
"""What of ``engine_kwargs`` reaches :class:`SGLangEngine` (the rest is for the embedded engine)."""


def check_engine_tokenizer(hf_path: str | None, engine_path: str) -> None:
    """Engines launched from another directory than ``model.hf_path`` must have its tokenizer (checked where both
    are on this machine; a path only the engines' nodes have is taken as given)."""
    other = local_source(engine_path)
    if not hf_path or engine_path == hf_path or other is None:
        return
    source = model_source(hf_path)
    if source.offline and source.load_path() != other.load_path():
        if reason := tokenizer_mismatch(source, other):
            raise ConfigError("rollout.sglang_model_path", f"its tokenizer is not model.hf_path's: {reason}")


def _sglang_settings(
    cfg: RunConfig, layout: ParallelLayout, engine_kwargs: dict[str, Any]
) -> tuple[SGLangServerConfig, dict[str, Any], dict[str, Any]]:
    """What every SGLang engine of the run is launched with: the server config, the client's and the actor's kwargs."""
    r = cfg.rollout
    if r.sglang_model_path is not None:
        model_path = r.sglang_model_path
        check_engine_tokenizer(cfg.model.hf_path, model_path)
    elif cfg.model.hf_path:
        model_path = model_source(cfg.model.hf_path).load_path()
    else:
        raise ConfigError("rollout.sglang_model_path", "SGLang needs an HF directory to launch (or set model.hf_path)")
    server = SGLangServerConfig(
        model_path=model_path,
        tp_size=layout.engine_tp,
        mem_fraction_static=r.sglang_mem_fraction_static,
        context_length=r.max_model_len,
        dtype=cfg.model.params_dtype,
        random_seed=cfg.run.seed,
        enable_memory_saver=layout.colocated,
        extra_args=tuple(r.sglang_extra_args),
    )
    client_kwargs: dict[str, Any] = {
        "transport": "tensor" if layout.colocated else "distributed",
        "timeout_s": r.engine_timeout_s,
    }
    if layout.colocated:  # CUDA-IPC payloads in SGLang's format (a caller's serializer below still wins)
        client_kwargs["serializer"] = serializer_for(layout.engine_tp)
    client_kwargs |= {k: engine_kwargs[k] for k in _SGLANG_CLIENT_KEYS if k in engine_kwargs}
    actor_kwargs = dict(
        log_dir=str(Path(r.sglang_log_dir or Path(cfg.run.output_dir) / "sglang").resolve()),
        command=tuple(r.sglang_command),
        env=dict(cfg.run.env_vars),
        startup_timeout_s=r.sglang_startup_timeout_s,
    )
    return server, client_kwargs, actor_kwargs


def _start_sglang(cfg: RunConfig, layout: ParallelLayout, engine_kwargs: dict[str, Any]) -> list[SGLangRayEngine]:
    """One SGLang server per engine, each owned by a :class:`SGLangServerActor`; the trainer talks HTTP to each.

    Ray backend: one placement group with a bundle per engine holding its ``engine_tp`` GPUs (a CPU slice on CPU,
    where ``rollout.sglang_command`` points at the stand-in), an actor per bundle. In-process backend: the actors are
    plain objects and engine ``i`` gets GPUs ``i * engine_tp ..``. All servers start in parallel; if one fails, the
    others are ended and the error (with the server's log tail) is raised. The weight transport defaults to
    ``tensor`` when colocated (with the CUDA-IPC serializer of :mod:`.sglang.ipc`; engines at TP > 1 are fed by
    every trainer rank through ``WeightSync``'s colocated path), else ``distributed`` (the update group is joined here).
    """
    r = cfg.rollout
    server, client_kwargs, actor_kwargs = _sglang_settings(cfg, layout, engine_kwargs)
    router = SGLangRouterClient(r.sglang_router_url) if r.sglang_router_url else None
    common = dict(router=router, startup_timeout_s=r.sglang_startup_timeout_s)
    engines: list[SGLangRayEngine] = []
    if r.backend == "inprocess":
        cuda = cfg.run.device == "cuda"
        for i in range(layout.engines):
            srv = dataclasses.replace(server, base_gpu_id=i * layout.engine_tp if cuda else 0)

            def make_local(i: int = i, srv: SGLangServerConfig = srv) -> SGLangServerActor:
                return SGLangServerActor(srv, name=f"engine{i}", gpu_ids=[], host="127.0.0.1", **actor_kwargs)

            engines.append(SGLangRayEngine(make_local, client_kwargs, name=f"engine{i}", remote=False, **common))
    else:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        init_ray()
        if cfg.run.device == "cpu":
            bundles = [{"CPU": _CPU_ENGINE_CORES} for _ in range(layout.engines)]
        else:  # an engine's GPUs in ONE bundle: one node, and the actor (so its server) sees all of them
            bundles = [{k: sum(b[k] for b in per) for k in per[0]} for per in layout.engine_bundles()]
        pg = placement_group(bundles, strategy="PACK")
        ray.get(pg.ready(), timeout=r.engine_timeout_s)
        actor_cls = ray.remote(SGLangServerActor)
        for i, res in enumerate(bundles):

            def make(i: int = i, res: dict = res) -> Any:
                strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=i)
                return actor_cls.options(
                    num_cpus=res.get("CPU", 0), num_gpus=res.get("GPU", 0), scheduling_strategy=strategy
                ).remote(server, name=f"engine{i}", **actor_kwargs)

            engines.append(SGLangRayEngine(make, client_kwargs, name=f"engine{i}", placement_group=pg, **common))
    urls = _start_servers(engines)
    log.info("started %d SGLang engine(s) (%s backend): %s", len(engines), r.backend, ", ".join(urls))
    if client_kwargs["transport"] == "distributed" and "broadcast" not in client_kwargs:
        join = _update_group_joiner(cfg, layout)
        try:
            for e in engines:  # one after the other: each join is a rendezvous with that engine's server
                join(e.client)
                e.on_new_server = join
        except BaseException:
            shutdown_engines(engines)
            raise
    return engines


def _start_servers(engines: list[SGLangRayEngine]) -> list[str]:
    """Start every server at once; if one fails, end them all and raise its error (with the server's log tail)."""
    try:
        with ThreadPoolExecutor(max(1, len(engines)), thread_name_prefix="sglang-start") as pool:
            return list(pool.map(SGLangRayEngine.start, engines))
    except BaseException:
        shutdown_engines(engines)
        raise


def start_sglang_teachers(cfg: RunConfig, layout: ParallelLayout, teachers: Sequence[Any]) -> dict[str, TeacherPool]:
    """Every distillation teacher (``config.teachers.Teacher``: domain, HF directory) as ``parallel.teacher_engines``
    SGLang servers at ``parallel.teacher_engine_tp``, launched from the teacher's own directory on GPUs of their own
    (one placement group after the student's; a CPU slice each where ``rollout.sglang_command`` is the stand-in).
    Teachers load their weights at launch and are never synced; they only score (a prefill per sample)."""
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    r = cfg.rollout
    if r.backend != "ray":
        raise ConfigError("rollout.backend", "SGLang teachers run as Ray actors (rollout.backend=ray)")
    init_ray()
    per_teacher = layout.teacher_engines
    if cfg.run.device == "cpu":
        bundles = [{"CPU": _CPU_ENGINE_CORES} for _ in range(len(teachers) * per_teacher)]
    else:
        per_engine = [{"GPU": 1.0, "CPU": 1.0} for _ in range(layout.teacher_engine_tp)]
        bundles = [
            {k: sum(b[k] for b in per_engine) for k in per_engine[0]} for _ in range(len(teachers) * per_teacher)
        ]
    pg = placement_group(bundles, strategy="PACK")
    ray.get(pg.ready(), timeout=r.engine_timeout_s)
    actor_cls = ray.remote(SGLangServerActor)
    log_dir = str(Path(r.sglang_log_dir or Path(cfg.run.output_dir) / "sglang").resolve())
    actor_kwargs = dict(
        log_dir=log_dir, command=tuple(r.sglang_command), env=dict(cfg.run.env_vars),
        startup_timeout_s=r.sglang_startup_timeout_s,
    )  # fmt: skip
    pools: dict[str, TeacherPool] = {}
    all_engines: list[SGLangRayEngine] = []
    for t, teacher in enumerate(teachers):
        server = SGLangServerConfig(
            model_path=teacher.path,
            tp_size=layout.teacher_engine_tp,
            mem_fraction_static=r.sglang_mem_fraction_static,
            context_length=r.max_model_len,
            dtype=cfg.model.params_dtype,
            random_seed=cfg.run.seed,
            extra_args=tuple(r.sglang_extra_args),
        )
        engines = []
        for k in range(per_teacher):
            index, name = t * per_teacher + k, f"teacher_{teacher.domain}{k}"

            def make(index: int = index, res: dict = bundles[index], srv: Any = server, name: str = name) -> Any:
                strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=index)
                return actor_cls.options(
                    num_cpus=res.get("CPU", 0), num_gpus=res.get("GPU", 0), scheduling_strategy=strategy
                ).remote(srv, name=name, **actor_kwargs)

            engines.append(SGLangRayEngine(make, {"timeout_s": r.engine_timeout_s}, name=name, placement_group=pg))
        all_engines += engines
        pools[teacher.domain] = TeacherPool(teacher.domain, engines)
    urls = _start_servers(all_engines)
    log.info("started %d SGLang teacher engine(s): %s", len(all_engines), ", ".join(urls))
    return pools


def _update_group_joiner(cfg: RunConfig, layout: ParallelLayout) -> Callable[[Any], object]:
    """Joins an engine client's weight-update group as the trainer's rank 0 (NCCL on GPU, gloo on CPU), hosting the
    rendezvous on this node's address and a free port."""
    from cod_megatron.engines.sglang.update_group import connect_engine, free_port, node_address

    backend = "nccl" if cfg.run.device == "cuda" else "gloo"
    host = "127.0.0.1" if cfg.rollout.backend == "inprocess" else node_address()
    return lambda client: connect_engine(client, host, free_port(), engine_tp=layout.engine_tp, backend=backend)


def shutdown_engines(engines: Sequence[InferenceEngine]) -> None:
    """End the actors this run started, and the local Ray cluster if this process started it (not a caller's)."""
    groups: dict[Any, Any] = {}  # placement groups of SGLang engines, removed once their actors are gone
    engines = [x for e in engines for x in (e.engines if isinstance(e, TeacherPool) else [e])]  # a teacher's servers
    for e in engines:
        if isinstance(e, RayEngine):
            e.shutdown()
        elif isinstance(e, SGLangRayEngine):
            try:
                e.shutdown()
            except Exception as exc:  # end the others regardless
                log.warning("could not shut down %s: %r", e.name, exc)
            if e.placement_group is not None:
                groups[e.placement_group.id] = e.placement_group
    if groups:
        from ray.util.placement_group import remove_placement_group

        for pg in groups.values():
            remove_placement_group(pg)
    if _OWN_RAY:
        import ray

        ray.shutdown()
        _OWN_RAY.clear()
