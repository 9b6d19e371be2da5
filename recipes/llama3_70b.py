"""Llama-3.3-70B on 8 nodes of 8x H100."""

from cod_megatron.config import RunConfig
from cod_recipes.common import base_cod
from cod_recipes.models import llama3_70b


def llama3_70b_cod_64gpu_h100() -> RunConfig:
    """Trainer TP=8 (sequence parallel) x PP=4 x VPP=5 on 32 GPUs; 4 SGLang engines at TP=8 on the other 32.

    Not colocated: 70B bf16 weights are 140 GB, so an engine needs a full node for weights plus KV cache, and the
    trainer keeps its optimizer state resident. 80 layers / (PP 4 x VPP 5) = 4 layers per virtual stage.
    """
    cfg = base_cod()
    cfg.run.name = "llama3_70b_cod"
    cfg.run.output_dir = "outputs/llama3_70b_cod"
    cfg.run.steps = 300
    cfg.model = llama3_70b()
    cfg.parallel.tp, cfg.parallel.pp, cfg.parallel.vpp, cfg.parallel.cp, cfg.parallel.dp = 8, 4, 5, 1, 1
    cfg.parallel.sequence_parallel = True
    cfg.parallel.engines, cfg.parallel.engine_tp = 4, 8
    cfg.parallel.colocated = False
    cfg.parallel.gpus_per_node = 8
    cfg.optimizer.micro_batch_tokens = 16_384
    cfg.checkpoint.save_interval = 25
    return cfg
