"""Training entry point: ``python -m cod_megatron.train --recipe NAME [overrides] [--dry-run]``.

The CoD loop (spec 2-6), one trainer step at a time: sample packs -> run the G lifecycles of every pack on the
rollout engines -> reward-to-go credit and per-(pack, type, position) baselines -> pack episodes into micro-batches
-> one Megatron optimizer step -> sync the weights to the engines -> evaluate and checkpoint. The parts live in
``cod_megatron.rollout`` (engines, manager, weight sync), ``cod_megatron.cod`` (credit) and ``cod_megatron.policy``
(trainer). ``run.mode=synthetic`` instead trains on random packed batches (a check of the policy stack only).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from cod_megatron.cli import handle_common, parser
from cod_megatron.config import ParallelLayout, RunConfig
from cod_megatron.log import MetricsWriter, StepProgress, setup_logging

log = logging.getLogger("cod_megatron.train")


@contextmanager
def timed(into: dict[str, float], name: str):
    """Add the block's wall time to ``into["time/<name>_s"]``."""
    t0 = time.perf_counter()
    yield
    into[f"time/{name}_s"] = into.get(f"time/{name}_s", 0.0) + time.perf_counter() - t0


def train(cfg: RunConfig, layout: ParallelLayout) -> dict[str, float]:
    """The CoD loop. Rank 0 owns the engines (in-process or Ray actors), rollouts, credit and evaluation; every
    trainer rank takes its DP share of the packed micro-batches, and all of them export weights for the sync."""
    from cod_envs import registry
    from cod_megatron.cod.assign import assign_credit
    from cod_megatron.data.episodes import pack_episodes
    from cod_megatron.eval.in_loop import Evaluator
    from cod_megatron.eval.plot import plot_training_positions
    from cod_megatron.policy.distributed import (
        broadcast_from_rank0,
        data_parallel_rank,
        destroy_distributed,
        init_distributed,
    )
    from cod_megatron.policy.hf_weights import hf_config_from_model
    from cod_megatron.policy.loss import step_denominators
    from cod_megatron.policy.trainer import PolicyTrainer
    from cod_megatron.rollout.data import PackSource
    from cod_megatron.rollout.engines import shutdown_engines, start_engines
    from cod_megatron.rollout.manager import RolloutManager
    from cod_megatron.rollout.metrics import rollout_metrics
    from cod_megatron.rollout.pipeline import OffPolicyRollouts, SyncRollouts
    from cod_megatron.rollout.renderers import renderer_for
    from cod_megatron.rollout.rewards import reward_rule
    from cod_megatron.sync.weight_sync import WeightSync
    from cod_megatron.warm_start import ensure_warm_start

    if layout.pp > 1:
        raise NotImplementedError("the CoD loop exports weights from one pipeline stage; use parallel.pp=1 for now")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    lead = rank == 0
    domain = registry.load(cfg.env.train_domains[0])
    renderer = renderer_for(domain.name)
    init_distributed(layout, rank=rank, world_size=world, seed=cfg.run.seed)
    out = Path(cfg.run.output_dir)
    writer = MetricsWriter(out / "metrics.jsonl" if cfg.logging.metrics_jsonl and lead else None)
    trainer = PolicyTrainer(cfg, layout)
    if cfg.checkpoint.load:
        trainer.load(cfg.checkpoint.load)
    elif cfg.env.warm_start_steps:
        trainer.load(str(ensure_warm_start(cfg, layout, renderer)), with_optimizer=False)
    engine_kwargs = dict(
        hf_config=hf_config_from_model(cfg.model), stop_token_ids=[renderer.end_of_turn_id], pad_token_id=0
    )
    engines = start_engines(cfg, layout, engine_kwargs) if lead else []
    sync = WeightSync(cfg.model, engines)  # every rank exports (TP all-gather); only rank 0 has engines to push to
    rollout_source = evaluator = None
    try:
        sync.sync(trainer.model, trainer.step)
        if lead:
            manager = RolloutManager(
                engines,
                domain.env,
                renderer,
                max_new_tokens=cfg.rollout.max_response_tokens,
                temperature=cfg.rollout.temperature,
                run_seed=cfg.run.seed,
                retries=cfg.rollout.lifecycle_retries,
                on_restart=lambda engine: sync.sync(trainer.model, sync.version, engines=[engine]),
                rewards=reward_rule(cfg.algorithm, domain),
                length_limit=cfg.rollout.response_length_restraint,
            )
            source = PackSource(domain, cfg)
            evaluator = Evaluator(manager, source, cfg) if cfg.eval.interval else None

            def generate(index: int):
                return manager.run(
                    source.train_packs(index), cfg.rollout.group_size, step=index, hint_visible=cfg.env.hint_visible
                )

            version = lambda: sync.version  # noqa: E731
            if cfg.rollout.off_policy:
                rollout_source = OffPolicyRollouts(generate, version, first=trainer.step + 1)
            else:
                rollout_source = SyncRollouts(generate, version)
        if evaluator and trainer.step == 0:
            writer.write(0, evaluator.evaluate(0))
        metrics: dict[str, float] = {}
        progress = StepProgress(cfg.run.steps, start=trainer.step, enabled=None if lead else False)
        progress.__enter__()
        for step in range(trainer.step + 1, cfg.run.steps + 1):
            metrics, ranks = {"weight_version": float(sync.version)}, None
            if lead:
                with timed(metrics, "generate"):  # off-policy: only the wait for the producer
                    batch, stale = rollout_source.next(step, trainer.step, cfg.rollout.max_staleness)
                rollouts = batch.result
                metrics["rollout/staleness"] = float(trainer.step - batch.version)
                metrics["rollout/stale_dropped"] = float(stale)
                with timed(metrics, "credit_pack"):
                    credit = assign_credit(rollouts.lifecycles, cfg.algorithm)
                    ranks, packing = pack_episodes(
                        credit.episodes, budget=cfg.optimizer.micro_batch_tokens, dp=layout.dp
                    )
                metrics |= rollout_metrics(rollouts) | credit.metrics
                metrics |= {"packing/tokens": float(packing.tokens), "packing/truncated": float(len(packing.truncated))}
            release = lead and layout.colocated and not cfg.rollout.off_policy  # engines share the trainer's devices
            for engine in engines if release else []:
                engine.release_memory()
            with timed(metrics, "train"):
                ranks = broadcast_from_rank0(ranks) if world > 1 else ranks
                denominators = step_denominators([mb for r in ranks for mb in r])
                train_metrics = trainer.train_step(ranks[data_parallel_rank()], denominators)
            metrics |= {f"train/{k}": v for k, v in train_metrics.items()}
            for engine in engines if release else []:
                engine.resume_memory()
            if step % cfg.rollout.sync_interval == 0 or step == cfg.run.steps:
                with timed(metrics, "sync"):
                    sync.sync(trainer.model, trainer.step)
            if evaluator and (step % cfg.eval.interval == 0 or step == cfg.run.steps):
                with timed(metrics, "eval"):
                    metrics |= evaluator.evaluate(step)
            if cfg.checkpoint.save_interval and step % cfg.checkpoint.save_interval == 0:
                save_checkpoint(trainer, cfg, step)
            writer.write(step, metrics)
            progress.update(step, metrics)
            if lead and (step % cfg.logging.interval == 0 or step == cfg.run.steps):
                log.info(progress_line(step, cfg.run.steps, metrics))
        progress.__exit__(None, None, None)
        if writer.path and writer.path.exists():
            plot_training_positions(writer.path, out / "reward_by_position.png")
        return metrics
    except KeyboardInterrupt:
        log.warning("interrupted: stopping engines and process groups")
        raise
    finally:
        if rollout_source is not None:
            rollout_source.close()
        shutdown_engines(engines)
        destroy_distributed()


def save_checkpoint(trainer, cfg: RunConfig, step: int) -> Path:
    """Trainer checkpoint plus the run's config (what ``cod_megatron.eval --policy DIR`` needs)."""
    path = Path(cfg.checkpoint.dir or Path(cfg.run.output_dir) / "checkpoints") / f"step_{step}"
    trainer.save(str(path))  # collective over every rank
    if int(os.environ.get("RANK", "0")) == 0:
        (path / "run_config.json").write_text(cfg.to_json())
    return path


def progress_line(step: int, steps: int, m: dict[str, float]) -> str:
    """One log line: the CoD curve, the loss and where the time went."""
    pos = " ".join(f"{m[k]:.2f}" for k in sorted(m) if k.startswith("rollout/reward_pos_"))
    times = " ".join(f"{k[5:-2]} {v:.2f}s" for k, v in m.items() if k.startswith("time/"))
    return (
        f"step {step}/{steps} | reward by position [{pos}] gap {m.get('rollout/gap', 0.0):+.2f} | "
        f"loss {m.get('train/loss', 0.0):.4f} | {times}"
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry; returns the process exit code."""
    args = parser("cod_megatron.train", __doc__.splitlines()[0]).parse_args(argv)
    resolved = handle_common(args)
    if isinstance(resolved, int):
        return resolved
    cfg, layout = resolved
    setup_logging(cfg.logging.level, all_ranks=cfg.logging.all_ranks)
    try:
        if cfg.run.mode == "synthetic":
            from cod_megatron.synthetic import run_synthetic

            run_synthetic(cfg, layout)
        else:
            train(cfg, layout)
    except KeyboardInterrupt:  # train() has already ended its engines, Ray and process groups
        log.warning("stopped by Ctrl-C")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
