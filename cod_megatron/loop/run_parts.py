"""The run's parts, built from the config in one place: trainer, engine arguments, rollout manager, schedule.

Training (``train.py``) and checkpoint evaluation (``eval/checkpoint_policy.py``) both build their policy, engines
and rollout manager here, so the reward rule, the prompt length limit and the sampling settings cannot drift
between the two.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cod_envs import registry
from cod_envs.registry import Domain
from cod_megatron.cod.episode import Episode, Lifecycle
from cod_megatron.cod.tokenization import LengthBudget
from cod_megatron.config import ParallelLayout, RunConfig
from cod_megatron.data.step_batch import StepBatch, TeacherScores, build_step_batch
from cod_megatron.engines.interface import InferenceEngine, ScoringEngine, ServingEngine
from cod_megatron.engines.sglang.devices import colocated_engine_ranks
from cod_megatron.infra.log import MetricsWriter, timed
from cod_megatron.infra.process_env import process_rank
from cod_megatron.loop.warm_start import ensure_warm_start
from cod_megatron.models.hf_config import hf_config_from_model
from cod_megatron.models.source import model_source
from cod_megatron.policy.trainer import PolicyTrainer
from cod_megatron.rollout.manager import DomainPlay, RolloutManager, TrainingRollouts
from cod_megatron.rollout.pack_source import PackSource, eval_suites
from cod_megatron.rollout.pipeline import OffPolicyRollouts, RolloutSchedule, SyncRollouts
from cod_megatron.rollout.rewards import reward_rule
from cod_megatron.rollout.teacher_scores import teacher_logprobs
from cod_megatron.rollout.token_play import Renderer

log = logging.getLogger("cod_megatron.loop.run_parts")


def start_trainer(
    cfg: RunConfig, layout: ParallelLayout, renderer: Renderer, *, with_optimizer: bool | None = None
) -> PolicyTrainer:
    """This rank's trainer: from ``checkpoint.load`` (resume; ``with_optimizer`` None: if saved), else the cached
    warm start, else the HF weights of ``model.hf_path``, else the fresh init.

    ``checkpoint.load`` wins over ``model.hf_path`` (a resumed run keeps its trained weights; hf_path then only
    names the tokenizer). Each rank reads only its TP/PP slices of the safetensors; the engines get the same weights
    through the first weight sync, before any rollout. Sets this process's torch threads first (``run.torch_threads``).
    """
    if cfg.run.torch_threads is not None:
        torch.set_num_threads(cfg.run.torch_threads)
    trainer = PolicyTrainer(cfg, layout)
    if load := resume_path(cfg):
        trainer.load(load, with_optimizer=with_optimizer)
        log.info("resumed from %s (step %d)", load, trainer.step)
    elif cfg.env.warm_start_steps:
        trainer.load(str(ensure_warm_start(cfg, layout, renderer)), with_optimizer=False)
    elif cfg.model.hf_path:
        trainer.load_hf(model_source(cfg.model.hf_path).weights_dir())
    return trainer


def engine_kwargs(cfg: RunConfig, renderer: Renderer) -> dict[str, Any]:
    """Arguments of an embedded engine for this model (its HF config, the renderer's end-of-turn stop, the run's
    device: on a GPU run the rollouts are generated there too, not on the host)."""
    return dict(
        hf_config=hf_config_from_model(cfg.model),
        stop_token_ids=[renderer.end_of_turn_id],
        pad_token_id=0,
        device=cfg.run.device,
    )


def ipc_engine_ranks(
    cfg: RunConfig, layout: ParallelLayout, engines: Sequence[InferenceEngine]
) -> list[list[int]] | None:
    """``WeightSync``'s ``engine_ranks``: set for colocated SGLang engines, whose weights are CUDA-IPC handles made
    on every trainer rank (embedded engines are sent tensors, disaggregated ones an NCCL broadcast). On GPUs each
    engine TP rank gets the trainer rank on its GPU, matched by device UUID wherever Ray placed it; collective (every
    rank calls it, ``engines`` on rank 0). On CPU (stand-in servers, shared memory) the layout's index rule."""
    if not (cfg.rollout.engine == "sglang" and layout.colocated):
        return None
    if cfg.run.device != "cuda":
        return layout.colocated_engine_ranks()
    return colocated_engine_ranks(engines)


def build_manager(
    cfg: RunConfig,
    domains: Domain | Sequence[Domain],
    engines: Sequence[ServingEngine],
    renderer: Renderer,
    *,
    temperature: float | None = None,
    run_seed: int | None = None,
    on_restart: Callable[[ServingEngine], None] | None = None,
) -> RolloutManager:
    """The rollout manager of ``domains`` (and of the evaluation suites' other domains) on ``engines`` with the run's
    sampling, retries, reward rule and length budget (``rollout.max_prompt_tokens``, ``max_response_tokens``,
    ``max_model_len``: cod.md 2.7)."""
    domains = [domains] if isinstance(domains, Domain) else list(domains)
    played = {d.name for d in domains}
    domains += [registry.load(n) for n in dict.fromkeys(s.domain for s in eval_suites(cfg)) if n not in played]
    r = cfg.rollout
    return RolloutManager(
        engines,
        {d.name: DomainPlay(d.env, reward_rule(cfg.algorithm, d)) for d in domains},
        renderer,
        max_new_tokens=cfg.rollout.max_response_tokens,
        temperature=cfg.rollout.temperature if temperature is None else temperature,
        run_seed=cfg.run.seed if run_seed is None else run_seed,
        retries=cfg.rollout.lifecycle_retries,
        on_restart=on_restart,
        length_limit=cfg.rollout.response_length_restraint,
        budget=LengthBudget(r.max_prompt_tokens, r.max_response_tokens, r.max_model_len),
    )


def step_batch(
    cfg: RunConfig,
    layout: ParallelLayout,
    lifecycles: list[Lifecycle],
    teachers: Mapping[str, ScoringEngine],
    metrics: dict[str, float],
) -> StepBatch:
    """The step's micro-batches: credit, with the teachers' log-probs when the run distils, and packing."""
    return build_step_batch(
        lifecycles,
        cfg.algorithm,
        budget=cfg.optimizer.micro_batch_tokens,
        dp=layout.dp,
        teacher_scores=teacher_scores(cfg, layout, teachers, metrics) if teachers else None,
        keep_cod_advantage=cfg.distill.advantage == "cod_plus_opd",
    )


def teacher_scores(
    cfg: RunConfig, layout: ParallelLayout, teachers: Mapping[str, ScoringEngine], metrics: dict[str, float]
) -> TeacherScores:
    """The step's scoring hook (on-policy distillation): every training sample to its domain's teacher, in chunks of
    a student engine's concurrency (what the memory planner budgets a teacher's KV cache for), failures retried like
    a lifecycle's; its wall time goes to ``time/teacher_s`` (inside ``credit_pack``)."""
    chunk = math.ceil(cfg.rollout.packs_per_step * cfg.rollout.group_size / layout.engines)

    def score(samples: Sequence[tuple[str, Episode]]) -> list[list[float]]:
        with timed(metrics, "teacher"):
            return teacher_logprobs(samples, teachers, chunk=chunk, retries=cfg.rollout.lifecycle_retries)

    return score


def training_rollouts(cfg: RunConfig, manager: RolloutManager, source: PackSource) -> TrainingRollouts:
    """The run's training batches: ``rollout.group_size`` lifecycles per pack, the algorithm's update branches."""
    return TrainingRollouts(
        manager,
        source,
        cfg.rollout.group_size,
        hint_visible=cfg.env.hint_visible,
        update_branches=cfg.algorithm.update_branches,
        branch_horizon=cfg.algorithm.branch_horizon,
    )


def rollout_schedule(
    cfg: RunConfig, rollouts: TrainingRollouts, version: Callable[[], int], first_step: int
) -> RolloutSchedule:
    """Training batches generated on demand, or ahead of time by a producer thread (``rollout.off_policy``)."""
    if cfg.rollout.off_policy:
        return OffPolicyRollouts(rollouts.generate, version, first=first_step)
    return SyncRollouts(rollouts.generate, version)


def checkpoint_dir(cfg: RunConfig) -> Path:
    """Where the run's ``step_N`` checkpoints go: ``checkpoint.dir``, else ``<run.output_dir>/checkpoints``."""
    return Path(cfg.checkpoint.dir or Path(cfg.run.output_dir) / "checkpoints")


def metrics_writer(cfg: RunConfig, writes: bool, resumed_at: int) -> MetricsWriter:
    """``<output_dir>/metrics.jsonl`` on the rank that ``writes`` (a no-op writer elsewhere or when switched off); a
    run resumed at step ``resumed_at`` drops the rows of the steps it runs again."""
    path = Path(cfg.run.output_dir) / "metrics.jsonl" if writes and cfg.logging.metrics_jsonl else None
    return MetricsWriter(path, resumed_at=resumed_at)


def resume_path(cfg: RunConfig) -> str | None:
    """``checkpoint.load`` as a directory; ``auto``: the newest complete ``step_N`` of this run (None before the first
    one: a fresh start), so a requeued job resumes where it stopped. Complete = its ``run_config.json`` exists, the
    file :func:`save_checkpoint` writes last."""
    if cfg.checkpoint.load != "auto":
        return cfg.checkpoint.load
    done = [p for p in checkpoint_dir(cfg).glob("step_*") if (p / "run_config.json").exists()]
    done = [p for p in done if p.name.removeprefix("step_").isdigit()]
    return str(max(done, key=lambda p: int(p.name.removeprefix("step_")))) if done else None


def save_checkpoint(trainer: PolicyTrainer, cfg: RunConfig, step: int) -> Path:
    """Trainer checkpoint plus the run's config (what ``cod_megatron.eval --policy DIR`` needs)."""
    path = checkpoint_dir(cfg) / f"step_{step}"
    trainer.save(str(path))  # collective over every rank
    if process_rank().is_first:
        (path / "run_config.json").write_text(cfg.to_json())
    return path


def stop_here(cfg: RunConfig, trainer: PolicyTrainer) -> None:
    """A requested stop: checkpoint the last finished step (when checkpointing is on and it is not saved yet)."""
    step, every = trainer.step, cfg.checkpoint.save_interval
    if every and step and step % every:
        path = save_checkpoint(trainer, cfg, step)
        log.warning("stopping: saved %s (resume with checkpoint.load=auto)", path)
    elif every and step:
        log.warning("stopping: step %d is already checkpointed (resume with checkpoint.load=auto)", step)
    else:
        log.warning("stopping after step %d (checkpointing is off: checkpoint.save_interval=0)", step)


@contextmanager
def memory_released(engines: Sequence[InferenceEngine]) -> Iterator[None]:
    """Colocated engines give their GPU memory back for the train step and take it again after it, also when the
    step raises (a SIGTERM stop still checkpoints and evaluates with them). The trainer's cached free blocks go back
    to the driver first: the engines resume into memory the caching allocator would otherwise keep."""
    for engine in engines:
        engine.release_memory()
    try:
        yield
    finally:
        if engines and torch.cuda.is_available():
            torch.cuda.empty_cache()
        for engine in engines:
            engine.resume_memory()
