"""CPU recipes: the embedded default that `make train` runs and the tests build on."""

from cod_megatron.config import RunConfig
from cod_recipes.common import base_cod, cpu_on_policy
from cod_recipes.models import tiny_qwen3

HIDDEN_KEY_VOCAB = 44
"""HiddenKey's word vocabulary with K = 4 keys and D = 16 distractors (cod.md 9.8): one word, one token id."""


def debug_cpu() -> RunConfig:
    """The CoD effect on 2 CPU cores: a tiny megatron-core Qwen3-style GPT learns HiddenKey (cod.md 9.8) by RL.

    One trainer process (TP = PP = DP = 1, gloo, float32) and one embedded transformers engine as a Ray actor,
    colocated. Packs of 4, G = 8, 8 packs per step; the spec's REC loss with adaptive RED and reward-to-go credit,
    on-policy (weights synced every step). The base model gets a short supervised warm start in hint *following*
    (cached); writing the key into the hint has to come from RL.
    """
    cfg = cpu_on_policy(base_cod())
    cfg.run.name = "debug_cpu"
    cfg.run.steps = 120
    cfg.model = tiny_qwen3()
    cfg.model.vocab_size = HIDDEN_KEY_VOCAB
    cfg.env.train_domains = ["hidden_key"]
    cfg.env.num_train_rows = 50_000
    cfg.env.warm_start_steps = 100
    cfg.env.warm_start_lr = 1e-3
    cfg.env.warm_start_batch = 64
    cfg.rollout.group_size = 8
    cfg.rollout.packs_per_step = 8
    cfg.rollout.pack_size = 4
    cfg.rollout.max_prompt_tokens = 64
    cfg.rollout.max_response_tokens = 8
    cfg.rollout.max_model_len = 128
    cfg.eval.interval = 20
    cfg.eval.packs = 64
    cfg.eval.pack_sizes = [4, 8]
    cfg.optimizer.lr = 1e-3
    cfg.optimizer.micro_batch_tokens = 4096
    return cfg


CODE_LOCK_VOCAB = 35
"""CodeLock's word vocabulary with a code of F = 2 slots and W = 4 words per slot: one word, one token id."""


def debug_cpu_code_lock() -> RunConfig:
    """debug_cpu's model, loop and budget on CodeLock (docs/credit_domain.md): the CPU domain where credit decides.

    Packs of 4: two reveal tasks (two guesses each, chance reward 2) and two combination tasks, so an update
    episode's value shows only at positions 2 and 3. Evaluated in packs of 4 and 8. The warm start teaches hint
    *following* only (combination answers copied from the hint, uniform reveal guesses); writing the revealed words
    into the hint has to come from RL. ``algorithm.credit=outcome`` is the ablation the domain is built for. Learning
    rate 5e-4 (half debug_cpu's), chosen on reward-to-go over 5 seeds and used for every credit.
    """
    cfg = debug_cpu()
    cfg.run.name = "debug_cpu_code_lock"
    cfg.model.vocab_size = CODE_LOCK_VOCAB
    cfg.env.train_domains = ["code_lock"]
    cfg.rollout.pack_size = 4
    # debug_cpu's 1e-3 learns CodeLock in 3 of 5 reward-to-go seeds and loses part of it by step 120; 5e-4 in 4 of 5
    # (final combination reward 0.58 -> 1.07, 5 seeds; docs/credit_domain.md, "A lower learning rate")
    cfg.optimizer.lr = 5e-4
    return cfg


MIX_VOCAB = 57
"""HiddenKey's 44 words, then CodeLock's 13 others (``rollout.renderers.shared_vocabulary``)."""


def debug_cpu_mix() -> RunConfig:
    """Two domains in one CPU run (issue 32): HiddenKey and CodeLock 1:1, each step's 8 packs split 4 + 4, each pack
    within one domain, one word vocabulary for both, each domain's warm start in every warm-start batch by weight.

    debug_cpu's model, loop, budget and learning rate (1e-3; not tuned for the mixture); evaluated on each domain's
    held-out packs (``eval/hidden_key/...``, ``eval/code_lock/...``); RED over the whole batch
    (``algorithm.red_level=domain`` fits one temperature per domain).
    """
    cfg = debug_cpu()
    cfg.run.name = "debug_cpu_mix"
    cfg.model.vocab_size = MIX_VOCAB
    cfg.env.train_domains = ["hidden_key@1", "code_lock@1"]
    return cfg


OPD_TEACHERS_DIR = "runs/opd_teachers"
"""Where ``scripts/opd_teachers.sh`` writes the CPU teachers (``<domain>/checkpoints/step_120``)."""


def opd_cpu_mix() -> RunConfig:
    """On-policy distillation on CPU (issue 35, cod.md 8): debug_cpu_mix's student (model, mixture vocabulary, warm
    starts, HiddenKey + CodeLock 1:1) distils from one CoD teacher per domain, trained alone on that domain with the
    mixture's vocabulary (``scripts/opd_teachers.sh`` first: 120 steps each, ~15 min on 2 cores).

    The paper's v2 form: OPD alone (``distill.advantage=opd``: the CoD advantages are zeroed), REC with clip none,
    ``A_t = logp_teacher_t - sg(logp_theta_t)`` (``algorithm.teacher_coef=1``), G = 1. Packs per step: 32 of G = 1
    (32 lifecycles), where the CoD mixture plays 8 packs of G = 8 (64): OPD's samples need no group, each is scored.
    Teachers run as Ray actors next to the student's engine.
    """
    cfg = debug_cpu_mix()
    cfg.run.name = "opd_cpu_mix"
    cfg.env.vocabulary_domains = ["hidden_key", "code_lock"]
    cfg.distill.teachers = [f"{d}={OPD_TEACHERS_DIR}/{d}/checkpoints/step_120" for d in ("hidden_key", "code_lock")]
    cfg.distill.advantage = "opd"
    cfg.algorithm.teacher_coef = 1.0
    cfg.algorithm.clip_mode = "none"
    cfg.rollout.group_size = 1
    cfg.rollout.packs_per_step = 32
    return cfg
