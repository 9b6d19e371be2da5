"""Qwen3-8B on one 8x H100 node."""

from cod_megatron.config import RunConfig
from cod_recipes.common import base_cod
from cod_recipes.models import qwen3_8b


def qwen3_8b_cod_8gpu_h100() -> RunConfig:
    """Trainer TP=2 (sequence parallel) x DP=4 on 8 GPUs; 8 SGLang engines at TP=1 colocated on the same GPUs.

    Colocated: the engines release their memory while the trainer steps and resume it for rollouts, so each
    GPU holds one quarter of the optimizer state (distributed optimizer over DP=4) and half the weights (TP=2).
    Hence on-policy (``rollout.off_policy=false``): an off-policy producer would be generating while the trainer
    steps, when the engines are released (validation refuses that combination). The weights reach the engines as
    CUDA-IPC handles, so no ``expandable_segments`` allocator (see ``cod_megatron/config/colocation.py``). For
    off-policy rollouts, put the engines on their own GPUs (``parallel.colocated=false``, as the 70B recipe does).

    Memory per GPU in GiB (``cod_megatron.config.memory``: bf16 weights, fp32 grads, Adam sharded over DP=4; "other"
    = 5 reserve + 1 released engine, or 5 + 3 engine workspace)::

        phase                     weights grads optim  activ logits engine-w    KV  other  total
        train @16384, no recompute    7.6  15.3  11.4   44.5   11.6        -     -    6.0   96.4  > 80: does not fit
        train @16384, full recompute  7.6  15.3  11.4    3.5   11.6        -     -    6.0   55.4
        rollout                       7.6  15.3  11.4      -      -     15.3  13.2    8.0   70.8

    The KV cache holds 8 sequences x 12000 tokens per engine (64 rollouts / 8 engines). The recipe ships the spec's
    ``optimizer.micro_batch_tokens=16384`` with full activation recompute (every layer recomputed from its input in
    backward, about a third more compute); without recompute it needs 8192.
    """
    cfg = base_cod()
    cfg.run.name = "qwen3_8b_cod"
    cfg.run.steps = 300
    cfg.model = qwen3_8b()
    cfg.parallel.tp, cfg.parallel.pp, cfg.parallel.cp, cfg.parallel.dp = 2, 1, 1, 4
    cfg.parallel.sequence_parallel = True
    cfg.parallel.engines, cfg.parallel.engine_tp = 8, 1
    cfg.parallel.colocated = True
    cfg.rollout.off_policy = False  # colocated engines are released during the train step
    cfg.parallel.gpus_per_node = 8
    cfg.optimizer.micro_batch_tokens = 16_384
    cfg.optimizer.recompute = "full"  # 16384 tokens fit in 80 GB only with recompute (see the table)
    cfg.checkpoint.save_interval = 50
    return cfg
