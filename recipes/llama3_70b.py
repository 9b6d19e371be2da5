"""Llama-3.3-70B on 8 nodes of 8x H100."""

from cod_megatron.config import RunConfig
from cod_recipes.common import base_cod
from cod_recipes.env_vars import SEPARATE_ENGINES_ENV
from cod_recipes.models import llama3_70b


def llama3_70b_cod_64gpu_h100() -> RunConfig:
    """Trainer TP=8 (sequence parallel) x PP=4 x VPP=5 on 32 GPUs; 4 SGLang engines at TP=8 on the other 32.

    Not colocated: 70B bf16 weights are 140 GB, so an engine needs a full node for weights plus KV cache, and the
    trainer keeps its optimizer state resident. 80 layers / (PP 4 x VPP 5) = 4 layers per virtual stage.

    Memory per GPU in GiB (``cod_megatron.config.memory``: bf16 weights, fp32 grads, Adam unsharded at DP=1; without
    recompute the first PP stage holds 4 micro-batches in flight, x1.15 for VPP 5; reserve 5)::

        trainer GPU                   weights grads optim  activ logits reserve  total
        train @16384, no recompute        4.2   8.5  25.4   58.3    0.0     5.0  101.3  > 80: does not fit
        train @16384, full recompute      4.2   8.5  25.4    1.3    2.4     5.0   46.8
        engine GPU      weights    KV  workspace  reserve  total
        rollout            16.4   7.3        3.0      5.0   31.8  (16 sequences x 12000 tokens per engine)

    The recipe ships the spec's ``optimizer.micro_batch_tokens=16384`` with full activation recompute; without it
    the train step needs 8192. Weight sync
    (``python -m cod_megatron.sync``): 141 GB, ~4.9 s by broadcast, ~2.8 s TP-aligned at 50 GB/s.
    """
    cfg = base_cod()
    cfg.run.name = "llama3_70b_cod"
    cfg.run.steps = 300
    cfg.model = llama3_70b()
    cfg.parallel.tp, cfg.parallel.pp, cfg.parallel.vpp, cfg.parallel.cp, cfg.parallel.dp = 8, 4, 5, 1, 1
    cfg.parallel.sequence_parallel = True
    cfg.parallel.engines, cfg.parallel.engine_tp = 4, 8
    cfg.parallel.colocated = False
    cfg.run.env_vars |= SEPARATE_ENGINES_ENV  # no CUDA-IPC, no memory saver: expandable segments are safe
    cfg.parallel.gpus_per_node = 8
    cfg.optimizer.micro_batch_tokens = 16_384
    cfg.optimizer.recompute = "full"  # 16384 tokens fit in 80 GB only with recompute (see the table)
    cfg.checkpoint.save_interval = 25
    return cfg
