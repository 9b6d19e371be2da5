"""Starting the rollout engines: in-process objects or Ray actors placed by the parallel layout.

``rollout.backend=ray`` (default) runs each engine as a Ray actor in a placement group built from
``ParallelLayout.engine_bundles()`` (on CPU every bundle is half a core, so the trainer keeps the rest);
``rollout.backend=inprocess`` calls the same engine objects directly, for debugging and single-GPU smoke runs on a
machine that cannot install Ray. Either way the rest of the loop sees :class:`InferenceEngine` objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cod_megatron.config import ParallelLayout, RunConfig
from cod_megatron.rollout.embedded import EmbeddedEngine
from cod_megatron.rollout.engine import EngineRequest, Generation

log = logging.getLogger(__name__)

_CPU_ENGINE_CORES = 0.5
"""A whole-core actor on a 2-core box starves the trainer and can hang a placement group (cpu_stack.md 6)."""


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


def _init_ray() -> None:
    import ray

    if not ray.is_initialized():
        _OWN_RAY.append(True)
        ray.init(
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            object_store_memory=200 * 1024**2,
        )


def start_engines(cfg: RunConfig, layout: ParallelLayout, engine_kwargs: dict[str, Any]) -> list[Any]:
    """``layout.engines`` engines built with ``EmbeddedEngine(**engine_kwargs)``, in-process or as Ray actors."""
    if cfg.rollout.engine != "embedded":
        raise NotImplementedError("rollout.engine=sglang is launched by cod_megatron.rollout.sglang_engine on GPUs")
    if cfg.rollout.backend == "inprocess":
        return [EmbeddedEngine(**engine_kwargs) for _ in range(layout.engines)]
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    _init_ray()
    cpu = cfg.run.device == "cpu"
    bundles = [[{"CPU": _CPU_ENGINE_CORES}] if cpu else b for b in layout.engine_bundles()]
    pg = placement_group([b for per_engine in bundles for b in per_engine], strategy="PACK")
    ray.get(pg.ready(), timeout=cfg.rollout.engine_timeout_s)
    actor_cls = ray.remote(EmbeddedEngine)
    engines, first = [], 0
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


def shutdown_engines(engines: list[Any]) -> None:
    """End the actors this run started, and the local Ray cluster if this process started it (not a caller's)."""
    for e in engines:
        if isinstance(e, RayEngine):
            e.shutdown()
    if _OWN_RAY:
        import ray

        ray.shutdown()
        _OWN_RAY.clear()
