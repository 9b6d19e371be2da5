"""SmolLM2-135M-Instruct trained by CoD on 2 CPU cores: the real-model path (own tokenizer, template, weights)."""

from cod_megatron.config import RunConfig
from cod_recipes.common import base_cod, cpu_on_policy
from cod_recipes.models import smollm2_135m


def smollm2_135m_cod_cpu() -> RunConfig:
    """CoD from the pre-trained instruct weights, no warm start, on chat HiddenKey (``hidden_key_chat``).

    The model already reads a colour from a hint (0.95 zero-shot); RL has to teach it to *write* the pack's secret
    colour into the note that is the next task's hint. 2 packs x G 4 x packs of 4 per step: 8 lifecycles of 4 solve
    and 3 update episodes (56 episodes) through the model's own ChatML template, one trainer process (gloo, float32)
    and one embedded transformers engine as a Ray actor, colocated, on-policy. The first run prepares the model from
    the package's GGUF (~1 minute, cached).
    """
    cfg = cpu_on_policy(base_cod())
    cfg.run.name = "smollm2_135m_cod_cpu"
    cfg.run.steps = 40
    cfg.run.torch_threads = 1  # the trainer; the engine actor gets Ray's OMP_NUM_THREADS=1 (fractional CPU)
    cfg.model = smollm2_135m()
    # pg_head with its torch row passes: logits only at the ~8 % generated tokens (1.3x per training step, log-probs
    # within 4e-5 of the materialised head: docs/cpu.md, scripts/bench_train_step.py)
    cfg.model.fused_lm_head = True
    cfg.env.train_domains = ["hidden_key_chat"]
    cfg.env.num_train_rows = 10_000
    cfg.env.warm_start_steps = 0
    cfg.rollout.group_size = 4
    cfg.rollout.packs_per_step = 2
    cfg.rollout.pack_size = 4
    cfg.rollout.temperature = 0.7  # at 1.0 the 135M model rambles (few answers name a colour); 0.7 answers
    cfg.rollout.max_prompt_tokens = 512
    cfg.rollout.max_response_tokens = 16
    cfg.rollout.max_model_len = 640
    cfg.eval.interval = 10
    cfg.eval.packs = 16
    cfg.eval.pack_sizes = [4]
    cfg.eval.temperature = 0.7
    cfg.checkpoint.save_interval = 10
    cfg.optimizer.lr = 1e-5
    cfg.optimizer.micro_batch_tokens = 1024  # 4096 peaked at 20.8 GB RSS here (fp32 activations of 30 layers)
    return cfg


def smollm2_135m_cod_1gpu() -> RunConfig:
    """The same run with the trainer on one GPU (float32, the fused LM head) and the embedded engine in-process.

    Sized for ``scripts/gpu_check.sh``: no Ray (``rollout.backend=inprocess``), no checkpoints, evaluation only on
    request. The embedded engine takes no device argument, so rollouts run on the host's CPU cores while the megatron
    step runs on the GPU; weight sync copies GPU shards into the engine's CPU model. Target: at most 10 s per CoD step.
    """
    cfg = smollm2_135m_cod_cpu()
    cfg.run.name = "smollm2_135m_cod_1gpu"
    cfg.run.device = "cuda"
    cfg.run.torch_threads = None  # the GPU machine's host cores are not shared
    cfg.parallel.gpus_per_node = 1
    cfg.rollout.backend = "inprocess"
    cfg.eval.interval = 0
    cfg.checkpoint.save_interval = 0
    cfg.optimizer.micro_batch_tokens = 8192  # 56 episodes of <= 640 tokens: a few micro-batches per step
    return cfg
