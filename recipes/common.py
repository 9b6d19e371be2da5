"""The CoD hyper-parameters every recipe starts from (docs/cod.md section 7.2, 8B column)."""

from cod_megatron.config import RunConfig
from cod_recipes.env_vars import COMMON_ENV


def base_cod() -> RunConfig:
    """Spec defaults: G=8, packs of 4 (8 in eval), REC one-side eps 0.2, adaptive RED, AdamW lr 1e-6, clip 1.0."""
    cfg = RunConfig()
    cfg.run.env_vars = dict(COMMON_ENV)
    cfg.rollout.group_size = 8
    cfg.rollout.packs_per_step = 8
    cfg.rollout.pack_size = 4
    cfg.rollout.temperature = 1.0
    cfg.rollout.max_prompt_tokens = 10_000
    cfg.rollout.max_response_tokens = 2_000
    cfg.rollout.max_model_len = 12_000
    cfg.rollout.response_length_restraint = 1_000
    cfg.rollout.max_staleness = 20
    cfg.rollout.sync_interval = 4
    cfg.algorithm.credit = "reward_to_go"
    cfg.algorithm.policy_loss = "rec"
    cfg.algorithm.clip_eps_low = cfg.algorithm.clip_eps_high = 0.2
    cfg.algorithm.adaptive_red = True
    cfg.algorithm.kl_coef = 0.0
    cfg.algorithm.entropy_coef = 0.0
    cfg.algorithm.hint_penalty = 0.1
    cfg.optimizer.lr = 1e-6
    cfg.optimizer.adam_beta1, cfg.optimizer.adam_beta2 = 0.9, 0.999
    cfg.optimizer.clip_grad = 1.0
    cfg.optimizer.micro_batch_tokens = 16_384
    return cfg


def cpu_on_policy(cfg: RunConfig) -> RunConfig:
    """The 2-core CPU layout the CPU recipes share: one trainer process (TP = PP = DP = 1, gloo) and one embedded
    transformers engine as a Ray actor, colocated, on-policy (weights synced every step, no staleness); metrics.jsonl
    written. The prompts ask for no response length (the caps are a few tokens)."""
    cfg.run.device = "cpu"
    cfg.run.env_vars = {}
    cfg.parallel.tp = cfg.parallel.pp = cfg.parallel.dp = 1
    cfg.parallel.engines = cfg.parallel.engine_tp = 1
    cfg.parallel.colocated = True
    cfg.parallel.gpus_per_node = 2
    cfg.rollout.engine = "embedded"
    cfg.rollout.backend = "ray"
    cfg.rollout.response_length_restraint = None
    cfg.rollout.off_policy = False
    cfg.rollout.sync_interval = 1
    cfg.rollout.max_staleness = 0
    cfg.optimizer.use_distributed_optimizer = False
    cfg.logging.metrics_jsonl = True
    return cfg
