"""CPU recipes: the embedded default that `make train` runs and the tests build on."""

from cod_megatron.config import RunConfig
from cod_recipes.common import base_cod
from cod_recipes.models import tiny_qwen3


def debug_cpu() -> RunConfig:
    """One CPU process, TP=PP=DP=1, a tiny Qwen3-style model, one embedded engine; gloo, float32."""
    cfg = base_cod()
    cfg.run.name = "debug_cpu"
    cfg.run.device = "cpu"
    cfg.run.steps = 4
    cfg.run.output_dir = "outputs/debug_cpu"
    cfg.run.env_vars = {}
    cfg.model = tiny_qwen3()
    cfg.parallel.tp = cfg.parallel.pp = cfg.parallel.dp = 1
    cfg.parallel.engines = cfg.parallel.engine_tp = 1
    cfg.parallel.colocated = True
    cfg.parallel.gpus_per_node = 2
    cfg.rollout.engine = "embedded"
    cfg.rollout.backend = "ray"
    cfg.rollout.group_size = 4
    cfg.rollout.packs_per_step = 2
    cfg.rollout.max_prompt_tokens = 768
    cfg.rollout.max_response_tokens = 256
    cfg.rollout.max_model_len = 1024
    cfg.rollout.response_length_restraint = 200
    cfg.rollout.off_policy = False
    cfg.rollout.sync_interval = 1
    cfg.optimizer.lr = 1e-3
    cfg.optimizer.micro_batch_tokens = 512
    cfg.optimizer.use_distributed_optimizer = False
    cfg.logging.metrics_jsonl = True
    return cfg
