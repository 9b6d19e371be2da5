"""``run.mode=synthetic``: optimizer steps on random packed batches, a check of the policy stack (not RL).

Every DP rank trains on the same synthetic micro-batches, so a step holds dp copies of them; used by the CLI tests
of checkpoint/resume and by multi-rank smoke runs of the trainer alone.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from cod_megatron.config import ParallelLayout, RunConfig
from cod_megatron.infra.log import MetricsWriter
from cod_megatron.infra.process_env import process_rank

log = logging.getLogger("cod_megatron.train")


def run_synthetic(cfg: RunConfig, layout: ParallelLayout) -> dict[str, float]:
    """Optimizer steps on a fixed synthetic packed batch; returns the last step's metrics."""
    from cod_megatron.data import synthetic_packed_batch
    from cod_megatron.data.denominators import step_denominators
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    me = process_rank()
    init_distributed(layout, rank=me.rank, world_size=me.world_size, seed=cfg.run.seed)
    try:
        trainer = PolicyTrainer(cfg, layout)
        budget = cfg.optimizer.micro_batch_tokens
        batches = [
            synthetic_packed_batch(
                seed=cfg.run.seed + i, n_segments=8, vocab_size=cfg.model.vocab_size, max_len=max(8, budget // 8)
            )
            for i in range(2)
        ]
        writer = MetricsWriter(
            Path(cfg.run.output_dir) / "metrics.jsonl" if cfg.logging.metrics_jsonl and me.is_first else None
        )
        log.info(
            "SYNTHETIC run (no CoD rollouts yet): %d steps of %s on %d packed micro-batches, layout %s",
            cfg.run.steps,
            cfg.model.arch,
            len(batches),
            layout.describe()["trainer"],
        )
        if cfg.checkpoint.load:
            trainer.load(cfg.checkpoint.load)
            log.info("loaded %s (step %d)", cfg.checkpoint.load, trainer.step)
        # every DP rank trains on the same synthetic micro-batches, so the step holds dp copies of them
        denominators = step_denominators(batches * layout.dp)
        ckpt_dir = Path(cfg.checkpoint.dir or Path(cfg.run.output_dir) / "checkpoints")
        metrics: dict[str, float] = {}
        for step in range(trainer.step + 1, cfg.run.steps + 1):
            t0 = time.perf_counter()
            metrics = trainer.train_step(batches, denominators)
            metrics["time/step_s"] = time.perf_counter() - t0
            writer.write(step, {f"train/{k}" if "/" not in k else k: v for k, v in metrics.items()})
            if step % cfg.logging.interval == 0 or step == cfg.run.steps:
                log.info(
                    "step %d/%d | synthetic loss %.4f | grad_norm %.3f | %d tokens | %.2f s",
                    step,
                    cfg.run.steps,
                    metrics["loss"],
                    metrics["grad_norm"],
                    metrics["num_tokens"],
                    metrics["time/step_s"],
                )
            if cfg.checkpoint.save_interval and step % cfg.checkpoint.save_interval == 0:
                trainer.save(str(ckpt_dir / f"step_{step}"))
        return metrics
    finally:
        destroy_distributed()
