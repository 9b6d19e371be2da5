"""Qwen3-8B on one 8x H100 node."""

from cod_megatron.config import RunConfig
from cod_recipes.common import base_cod
from cod_recipes.models import qwen3_8b


def qwen3_8b_cod_8gpu_h100() -> RunConfig:
    """Trainer TP=2 (sequence parallel) x DP=4 on 8 GPUs; 8 SGLang engines at TP=1 colocated on the same GPUs.

    Colocated: the engines release their memory while the trainer steps and resume it for rollouts, so each
    GPU holds one quarter of the optimizer state (distributed optimizer over DP=4) and half the weights (TP=2).
    """
    cfg = base_cod()
    cfg.run.name = "qwen3_8b_cod"
    cfg.run.output_dir = "outputs/qwen3_8b_cod"
    cfg.run.steps = 300
    cfg.model = qwen3_8b()
    cfg.parallel.tp, cfg.parallel.pp, cfg.parallel.cp, cfg.parallel.dp = 2, 1, 1, 4
    cfg.parallel.sequence_parallel = True
    cfg.parallel.engines, cfg.parallel.engine_tp = 8, 1
    cfg.parallel.colocated = True
    cfg.parallel.gpus_per_node = 8
    cfg.optimizer.micro_batch_tokens = 16_384
    cfg.checkpoint.save_interval = 50
    return cfg
