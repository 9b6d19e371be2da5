"""A short supervised warm start of the base model, cached on disk, for the training domains that offer one (the
registry's ``warm_start`` hook: HiddenKey's hint *following*, cod.md 9.8; a mixture's batches mix them by weight).

From scratch, RL cannot get a tiny model to the CoD effect: reading the hint and writing it are two copy skills
that each pay only once the other exists. The warm start teaches reading only; writing must come from RL.

It is plain maximum likelihood on the answer token, run through the RL path itself: every sample is an
:class:`~cod_megatron.cod.episode.Episode` with advantage 1, trained on-policy (``old = sg(logp)``, ratio 1, inside
any clip), whose loss gradient is exactly ``-mean_t grad log p``. It runs in its own :class:`PolicyTrainer` with its
own settings (:func:`warm_start_config`: a constant ``env.warm_start_lr``, never the RL run's schedule), so the RL
run starts from the saved weights with a fresh optimizer whether or not the cache was hit.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from cod_envs import registry
from cod_envs.hooks import WarmStart
from cod_megatron.cod.episode import Episode
from cod_megatron.cod.tokenization import WordRenderer
from cod_megatron.config import AlgorithmConfig, OptimizerConfig, ParallelLayout, RunConfig
from cod_megatron.data.denominators import step_denominators
from cod_megatron.data.episodes import pack_episodes
from cod_megatron.rollout.pack_source import pack_quotas

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainWarmStart:
    """One training domain's warm start and its weight in the run (a mixture splits each batch by weight)."""

    domain: str
    weight: float
    hook: WarmStart


def warm_start_hooks(cfg: RunConfig) -> list[DomainWarmStart]:
    """The warm starts the training domains offer (a domain without one is left out of a mixture's); a ValueError
    when none offers one."""
    hooks = [
        DomainWarmStart(d.name, d.weight, hook)
        for d in cfg.env.domains()
        if (hook := registry.load(d.name).warm_start) is not None
    ]
    if not hooks:
        names = ", ".join(d.name for d in cfg.env.domains())
        raise ValueError(f"env.warm_start_steps > 0, but no training domain ({names}) offers a warm start")
    return hooks


def warm_start_samples(cfg: RunConfig, hooks: list[DomainWarmStart], step: int) -> list[tuple[str, str]]:
    """Step ``step``'s (prompt, answer) pairs: ``env.warm_start_batch`` of them, split between the domains by weight
    with the training packs' quota rule; one domain's are exactly its hook's."""
    n, seed = cfg.env.warm_start_batch, cfg.run.seed * 100_003 + step
    if len(hooks) == 1:
        return hooks[0].hook.samples(n, seed)
    quotas = pack_quotas([h.weight for h in hooks], n, step + 1)
    return [pair for h, q in zip(hooks, quotas, strict=True) if q for pair in h.hook.samples(q, seed)]


def warm_start_config(cfg: RunConfig) -> RunConfig:
    """The warm start's own config: the run's model, seed and layout, and nothing of its RL training settings.

    Optimizer: megatron AdamW at the defaults of :class:`OptimizerConfig` with a constant ``env.warm_start_lr`` (no
    warmup, no decay, ``run.steps = env.warm_start_steps``): the RL run's ``optimizer.lr_decay_style``,
    ``warmup_steps``, ``min_lr``, betas, weight decay and clip, and ``run.steps``, do not reach it. Only how the
    step is executed comes from the run (``micro_batch_tokens``, the distributed optimizer, grad-reduce overlap,
    recompute). Loss: :class:`AlgorithmConfig`'s defaults (no KL, no entropy bonus), at temperature 1 (the model's
    own distribution, not the sampling one).
    """
    o = cfg.optimizer
    wcfg = copy.deepcopy(cfg)
    wcfg.run.steps = cfg.env.warm_start_steps
    wcfg.optimizer = OptimizerConfig(
        lr=cfg.env.warm_start_lr,
        warmup_steps=0,
        lr_decay_style="constant",
        micro_batch_tokens=o.micro_batch_tokens,
        use_distributed_optimizer=o.use_distributed_optimizer,
        overlap_grad_reduce=o.overlap_grad_reduce,
        recompute=o.recompute,
    )
    wcfg.algorithm = AlgorithmConfig(kl_coef=0.0, entropy_coef=0.0)
    wcfg.rollout.temperature = 1.0
    return wcfg


TRAINING_SOURCES = (
    "loop/warm_start.py",
    "policy/trainer.py",
    "policy/loss.py",
    "policy/pg_head.py",
    "policy/logprobs.py",
    "policy/model.py",
    "cod/losses.py",
    "data/episodes.py",
    "data/denominators.py",
)
"""The library files (under ``cod_megatron/``) that define the warm start's training math: this file (samples ->
episodes -> steps), the trainer (optimizer, scheduler, forward/backward), the loss path and the head, the model
build, and the packing and denominators. Hashed into the cache key (:func:`source_digest`), with the domain's module
that defines ``samples``, so that changed code trains a new warm start instead of reusing one it did not produce."""


def source_digest(paths: list[Path]) -> str:
    """sha256 over the bytes of ``paths`` (in order, each with its name): the code part of the cache key.

    Coarse on purpose: a comment edit in one of these files also retrains the warm start (minutes on CPU); a
    hand-bumped version number would be forgotten, and a stale warm start silently changes every result after it.
    """
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(cfg: RunConfig) -> dict:
    """Everything that determines the warm start's weights, as plain values.

    The model, the warm start's own optimizer, loss and temperature (:func:`warm_start_config`), its steps, batch
    and seed, the domain and its hook's ``cache_key``, the device and the trainer layout (they change the float
    summation order), and :func:`source_digest` of :data:`TRAINING_SOURCES` plus the domain's ``samples`` module.
    """
    wcfg, hooks = warm_start_config(cfg), warm_start_hooks(cfg)
    p = cfg.parallel
    here = Path(__file__).resolve().parent.parent  # the package root: TRAINING_SOURCES are relative to it
    sources = [here / s for s in TRAINING_SOURCES] + [Path(inspect.getfile(h.hook.samples)) for h in hooks]
    one = len(hooks) == 1  # a one-domain key as before the mixtures (its cached warm starts stay valid)
    return {
        "model": dataclasses.asdict(cfg.model),
        "optimizer": dataclasses.asdict(wcfg.optimizer),
        "algorithm": dataclasses.asdict(wcfg.algorithm),
        "temperature": wcfg.rollout.temperature,
        "steps": cfg.env.warm_start_steps,
        "batch": cfg.env.warm_start_batch,
        "seed": cfg.run.seed,
        "domain": hooks[0].domain if one else [f"{h.domain}@{h.weight:g}" for h in hooks],
        "options": hooks[0].hook.cache_key if one else [h.hook.cache_key for h in hooks],
        "device": cfg.run.device,
        "layout": [p.tp, p.pp, p.vpp, p.cp, p.ep, p.dp, p.sequence_parallel],
        "code": source_digest(sources),
    }


def cache_dir(cfg: RunConfig) -> Path:
    """Where this warm start is kept: ``<run dir>/../cache/warm_start/<hash of cache_key(cfg)>``."""
    key = json.dumps(cache_key(cfg), sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cfg.run.output_dir).parent / "cache" / "warm_start" / digest


def supervised_episode(renderer: WordRenderer, prompt: str, answer: str, index: int) -> Episode:
    """One (prompt, answer) pair as a trainable episode: loss on the answer token only, advantage 1."""
    prompt_ids, answer_ids = renderer.encode(prompt), renderer.encode(answer)
    ids = prompt_ids + answer_ids
    return Episode(
        pack_id=index,
        rollout=0,
        kind="solve",
        position=0,
        token_ids=ids,
        generated=[False] * len(prompt_ids) + [True] * len(answer_ids),
        rollout_logprobs=[0.0] * len(ids),
        turn_ids=[0] * len(ids),
        advantage=1.0,
    )


def ensure_warm_start(cfg: RunConfig, layout: ParallelLayout, renderer: WordRenderer) -> Path:
    """Train and save the warm start unless it is cached; returns the checkpoint directory (model weights only)."""
    import torch.distributed as dist

    from cod_megatron.policy.distributed import broadcast_from_rank0, data_parallel_rank
    from cod_megatron.policy.trainer import PolicyTrainer

    hooks = warm_start_hooks(cfg)
    many = dist.is_initialized() and dist.get_world_size() > 1
    lead = not many or dist.get_rank() == 0
    out = cache_dir(cfg)
    hit = (out / "done").exists()
    if broadcast_from_rank0(hit) if many else hit:  # every rank takes the same branch: training is collective
        log.info("warm start: cached %s", out)
        return out
    trainer = PolicyTrainer(warm_start_config(cfg), layout)
    t0, metrics = time.perf_counter(), {}
    for step in range(cfg.env.warm_start_steps):
        pairs = warm_start_samples(cfg, hooks, step)
        episodes = [supervised_episode(renderer, p, a, i) for i, (p, a) in enumerate(pairs)]
        ranks, _ = pack_episodes(episodes, budget=cfg.optimizer.micro_batch_tokens, dp=layout.dp)
        mine = ranks[data_parallel_rank()]  # every rank builds the same samples and takes its DP share
        metrics = trainer.train_step(mine, step_denominators([mb for r in ranks for mb in r]))
    log.info(
        "warm start: %d supervised steps in %.1f s (last loss %.4f)",
        cfg.env.warm_start_steps,
        time.perf_counter() - t0,
        metrics.get("loss", float("nan")),
    )
    tmp = out.with_name(out.name + ".tmp")
    if lead:
        shutil.rmtree(tmp, ignore_errors=True)
    if many:
        dist.barrier()
    trainer.step = 0
    trainer.save(str(tmp), with_optimizer=False)  # collective
    if lead:
        (tmp / "done").write_text(json.dumps({"steps": cfg.env.warm_start_steps, "loss": metrics.get("loss")}))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    if many:
        dist.barrier()
    return out
