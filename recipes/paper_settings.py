"""The paper's 8B experiments (cod.md 10.4): Qwen3-8B trained on FrozenLake-Obscure (setting A, 3 nodes) or on
FrozenLake-Obscure + Alchemy-Random easy (setting B, 4 nodes), evaluated in-domain out of distribution, across
domains and in the Ralph loop, with rollout seeds 0-2 (the reference's 1-3) at every evaluation."""

from cod_megatron.config import RunConfig
from cod_recipes.env_vars import SEPARATE_ENGINES_ENV
from cod_recipes.qwen3_8b import qwen3_8b_cod_8gpu_h100

CROSS_DOMAIN = ["terminal/s8/r3", "terminal_ralph=terminal/s8/ralph_sample/r3"]
"""Terminal, never trained on, in CoD-Deploy packs of 8 and in the Ralph loop (cod.md 10.4, 10.5)."""


def _paper_8b(trainer_dp: int, name: str) -> RunConfig:
    """The reference's cluster shape: 8 SGLang engines at TP 1 on one node, the trainer (TP 2 x DP ``trainer_dp``,
    sequence parallel, full recompute at 16,384 tokens) on the others; off-policy rollouts as the spec's 8B column
    (staleness 20, sync every 4 steps: the engines have their own GPUs); evaluation every 25 steps and at step 0
    (the base model)."""
    cfg = qwen3_8b_cod_8gpu_h100()
    cfg.run.name = name
    cfg.parallel.tp, cfg.parallel.dp = 2, trainer_dp
    cfg.parallel.engines, cfg.parallel.engine_tp = 8, 1
    cfg.parallel.colocated = False
    cfg.run.env_vars |= SEPARATE_ENGINES_ENV
    cfg.rollout.off_policy = True
    cfg.eval.interval = 25
    cfg.eval.packs = 64
    return cfg


def qwen3_8b_cod_setting_a_24gpu_h100() -> RunConfig:
    """Setting A: trained on FrozenLake-Obscure (easy maps, packs of 4) on 3 x 8 H100 (8 engine GPUs + a 16-GPU
    trainer, TP 2 x DP 8); suites: FrozenLake hard in packs of 8, Alchemy easy and Terminal in CoD-Deploy and in the
    Ralph loop."""
    cfg = _paper_8b(trainer_dp=8, name="qwen3_8b_cod_setting_a")
    cfg.env.train_domains = ["frozenlake_obscure:easy"]
    cfg.eval.suites = [
        "frozenlake_obscure:hard/s8/r3",
        "alchemy_random:easy/s8/r3",
        "alchemy_ralph=alchemy_random:easy/s8/ralph_sample/r3",
        *CROSS_DOMAIN,
    ]
    return cfg


def qwen3_8b_cod_setting_b_32gpu_h100() -> RunConfig:
    """Setting B: FrozenLake-Obscure + Alchemy-Random easy, 1:1, on 4 x 8 H100 (8 engine GPUs + a 24-GPU trainer,
    TP 2 x DP 12); suites: FrozenLake hard and Alchemy hard in packs of 8, Terminal in CoD-Deploy and Ralph."""
    cfg = _paper_8b(trainer_dp=12, name="qwen3_8b_cod_setting_b")
    cfg.env.train_domains = ["frozenlake_obscure:easy@1", "alchemy_random:easy@1"]
    cfg.eval.suites = ["frozenlake_obscure:hard/s8/r3", "alchemy_random:hard/s8/r3", *CROSS_DOMAIN]
    return cfg


V2_DOMAINS = ("pde_discovery", "optimal_control", "grid_navigation")
"""The paper's v2 domains, merged into one student by on-policy distillation from a CoD teacher each (cod.md 8)."""


def qwen3_8b_opd_three_domains_48gpu_h100() -> RunConfig:
    """The paper's v2 OPD at 8B (cod.md 8; the 27B version follows the Qwen3.5/3.6 work): one Qwen3-8B student
    distilled from three per-domain CoD teachers (PDE Discovery, Optimal Control, Grid Navigation, 1:1:1) on 6 x 8
    H100: the reference's 8 engine GPUs + a 16-GPU trainer (TP 2 x DP 8) as in the paper's 8B settings, and each
    teacher on 8 SGLang servers at TP 1 of its own node.

    OPD alone (``distill.advantage=opd``), ``A_t = logp_teacher_t - sg(logp_theta_t)`` (``teacher_coef=1``), REC
    with clip none, G = 1 (the 64 lifecycles per step of the CoD recipe, as 64 packs of one), staleness 5, weight
    sync every step; evaluation at steps 0-60 every 5 on all three domains. ``distill.teachers`` names HF
    directories on the cluster (a checkpoint of this project is exported first: ``python -m cod_megatron.convert
    mcore-to-hf``); override them with the teachers' paths.
    """
    cfg = _paper_8b(trainer_dp=8, name="qwen3_8b_opd_three_domains")
    cfg.env.train_domains = [f"{d}@1" for d in V2_DOMAINS]
    cfg.distill.teachers = [f"{d}=/checkpoints/cod_teachers/{d}/hf" for d in V2_DOMAINS]
    cfg.distill.advantage = "opd"
    cfg.algorithm.teacher_coef = 1.0
    cfg.algorithm.clip_mode = "none"
    cfg.parallel.teacher_engines, cfg.parallel.teacher_engine_tp = 8, 1
    cfg.rollout.packs_per_step *= cfg.rollout.group_size
    cfg.rollout.group_size = 1
    cfg.rollout.max_staleness, cfg.rollout.sync_interval = 5, 1
    cfg.run.steps = 60
    cfg.eval.interval = 5
    cfg.eval.suites = list(V2_DOMAINS)
    return cfg
