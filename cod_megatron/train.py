"""Training entry point: ``python -m cod_megatron.train --recipe NAME [overrides] [--dry-run]``.

The CoD loop (cod.md 2-6): lifecycles on the engines -> credit and packing (``data.step_batch``) -> one Megatron step
-> weight sync -> evaluation and checkpoints. Rank 0 owns engines and rollouts; every rank trains its DP share.
"""

from __future__ import annotations

import cod_megatron.infra.quiet  # noqa: F401  # isort: skip  (first: filters megatron's known import noise)
import logging
import sys

from cod_envs import registry
from cod_megatron.config import ConfigError, ParallelLayout, RunConfig, check_loop_can_run, engines_released_for_train
from cod_megatron.engines.startup import shutdown_engines, start_engines
from cod_megatron.eval.in_loop import Evaluator
from cod_megatron.eval.plot import plot_training_curves
from cod_megatron.infra.cli import handle_common, parser, report
from cod_megatron.infra.log import StepProgress, progress_line, setup_logging, timed
from cod_megatron.infra.process_env import ProcessRank, process_rank
from cod_megatron.loop import run_parts as parts
from cod_megatron.loop.preemption import StopRequest
from cod_megatron.loop.synthetic import run_synthetic
from cod_megatron.loop.teachers import start_teachers
from cod_megatron.loop.throughput import step_throughput
from cod_megatron.policy import distributed
from cod_megatron.policy.trainer import PolicyTrainer
from cod_megatron.rollout.metrics import rollout_metrics
from cod_megatron.rollout.pack_source import PackSource
from cod_megatron.rollout.pipeline import RolloutSchedule
from cod_megatron.rollout.renderers import run_renderer
from cod_megatron.sync.weight_sync import WeightSync

log = logging.getLogger("cod_megatron.train")


def train(cfg: RunConfig, layout: ParallelLayout, stop: StopRequest | None = None) -> dict[str, float]:
    """The CoD loop; returns the last step's metrics. ``stop``: a SIGTERM / Ctrl-C ends it after the step in flight
    (with a checkpoint of that step when checkpointing is on)."""
    check_loop_can_run(cfg, layout)
    proc = process_rank()
    generates = proc.is_first  # this rank owns the engines, generates every rollout, evaluates and writes metrics
    domains = [registry.load(d.name) for d in cfg.env.domains()]
    renderer = run_renderer(cfg)
    distributed.init_distributed(layout, rank=proc.rank, world_size=proc.world_size, seed=cfg.run.seed)
    trainer = parts.start_trainer(cfg, layout, renderer)
    writer = parts.metrics_writer(cfg, generates, resumed_at=trainer.step)
    engines = start_engines(cfg, layout, parts.engine_kwargs(cfg, renderer)) if generates else []
    teachers = start_teachers(cfg, layout, renderer) if generates and cfg.distill.enabled else {}
    if stop is not None:
        stop.install()  # again: Ray's driver replaced the SIGTERM handler
    # every rank exports; colocated engines' ranks are matched by GPU UUID (a collective)
    sync = WeightSync(cfg.model, engines, engine_ranks=parts.ipc_engine_ranks(cfg, layout, engines))
    schedule: RolloutSchedule | None = None
    evaluator: Evaluator | None = None
    try:
        sync.sync(trainer.model, trainer.step)
        if generates:
            resync = lambda engine: sync.sync(trainer.model, sync.version, engines=[engine])  # noqa: E731
            manager = parts.build_manager(cfg, domains, engines, renderer, on_restart=resync)
            source = PackSource(domains, cfg)
            rollouts = parts.training_rollouts(cfg, manager, source)
            schedule = parts.rollout_schedule(cfg, rollouts, lambda: sync.version, trainer.step + 1)
            evaluator = Evaluator(manager, source, cfg) if cfg.eval.interval else None
        if evaluator and trainer.step == 0:
            writer.write(0, evaluator.evaluate(0))
        metrics: dict[str, float] = {}
        with StepProgress(cfg.run.steps, start=trainer.step, enabled=None if generates else False) as progress:
            for step in range(trainer.step + 1, cfg.run.steps + 1):
                if stop is not None and stop.agreed():  # every rank stops before the same step
                    parts.stop_here(cfg, trainer)
                    break
                metrics = cod_step(step, cfg, layout, proc, trainer, sync, schedule, evaluator, teachers)
                writer.write(step, metrics)
                progress.update(step, metrics)
                if generates and (step % cfg.logging.interval == 0 or step == cfg.run.steps):
                    log.info(progress_line(step, cfg.run.steps, metrics))
        if writer.path and writer.path.exists():
            plot_training_curves(writer.path, [d.name for d in domains])
        return metrics
    finally:  # also on Ctrl-C: engines, the Ray cluster we started and the process groups end with the run
        if schedule is not None:
            schedule.close()
        shutdown_engines([*teachers.values(), *engines])
        distributed.destroy_distributed()


def cod_step(
    step: int,
    cfg: RunConfig,
    layout: ParallelLayout,
    proc: ProcessRank,
    trainer: PolicyTrainer,
    sync: WeightSync,
    schedule: RolloutSchedule | None,
    evaluator: Evaluator | None,
    teachers: dict | None = None,
) -> dict[str, float]:
    """One trainer step; the generating rank (``proc.is_first``) holds ``schedule``, ``evaluator``, ``teachers``."""
    metrics, batch, generates = {"weight_version": float(sync.version)}, None, proc.is_first
    if generates:
        with timed(metrics, "generate"):  # off-policy: only the wait for the producer
            rollouts, stale = schedule.next(step, trainer.step, cfg.rollout.max_staleness)
        metrics |= {"rollout/staleness": float(trainer.step - rollouts.version), "rollout/stale_dropped": float(stale)}
        with timed(metrics, "credit_pack"):  # credit (teachers' scores when distilling), packing, denominators
            batch = parts.step_batch(cfg, layout, rollouts.result.lifecycles, teachers or {}, metrics)
        metrics |= rollout_metrics(rollouts.result) | batch.metrics
    colocated = sync.engines if engines_released_for_train(cfg.rollout, layout) else []  # they share our devices
    with parts.memory_released(colocated), timed(metrics, "train"):
        batch = distributed.broadcast_from_rank0(batch) if proc.world_size > 1 else batch
        shard = batch.ranks[distributed.data_parallel_rank()]
        metrics |= {f"train/{k}": v for k, v in trainer.train_step(shard, batch.denominators).items()}
    if generates:  # the generating rank holds the rollouts and the step's segments
        metrics |= step_throughput(metrics, cfg.model, layout, rollouts.result.lifecycles, batch.ranks)
    if step % cfg.rollout.sync_interval == 0 or step == cfg.run.steps:
        with timed(metrics, "sync"):
            sync.sync(trainer.model, trainer.step)
    if evaluator and (step % cfg.eval.interval == 0 or step == cfg.run.steps):
        with timed(metrics, "eval"):
            metrics |= evaluator.evaluate(step)
    if cfg.checkpoint.save_interval and step % cfg.checkpoint.save_interval == 0:
        parts.save_checkpoint(trainer, cfg, step)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """CLI entry; returns the process exit code (0 also after a SIGTERM stop, 2: a config error, 130: Ctrl-C)."""
    resolved = handle_common(parser("cod_megatron.train", __doc__.splitlines()[0]).parse_args(argv))
    if isinstance(resolved, int):
        return resolved
    cfg, layout = resolved
    setup_logging(cfg.logging.level, all_ranks=cfg.logging.all_ranks)
    try:
        if cfg.run.mode == "synthetic":
            run_synthetic(cfg, layout)
            return 0
        with StopRequest() as stop:
            train(cfg, layout, stop)
    except ConfigError as e:  # what the loop cannot run yet: refused before anything started
        return report(e)
    except KeyboardInterrupt:  # a second signal; train() has already ended its engines, Ray and process groups
        log.warning("stopped by Ctrl-C (the step in flight abandoned)")
        return 130
    if stop.signum is not None:
        log.warning("stopped by %s", "Ctrl-C" if stop.exit_code == 130 else "SIGTERM")
    return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
