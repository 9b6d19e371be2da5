"""A trainer checkpoint as an evaluation policy: weights -> embedded engine -> the same runner as training.

``python -m cod_megatron.eval --policy <checkpoint dir>`` lands here. The directory is one the training loop wrote
(``checkpoints/step_N`` with its ``run_config.json``): the policy is rebuilt from that config, the checkpoint is
loaded under a one-process layout (dist-checkpoints reshard), and the weights reach an in-process embedded engine
through the same Megatron -> HF sync as in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cod_megatron.cod.pack_forming import FormedPack
from cod_megatron.loop.checkpoint_engine import checkpoint_engine, load_run_config

__all__ = ["checkpoint_engine", "checkpoint_rollouts", "evaluate_checkpoint_suites", "load_run_config"]


def checkpoint_rollouts(
    ckpt: str | Path,
    domain: Any,
    packs: list[FormedPack],
    *,
    seed: int,
    temperature: float,
    hint_visible: bool = True,
    max_new_tokens: int | None = None,
) -> list[list[float] | None]:
    """Solve rewards by position, one lifecycle per pack (in pack order; None where a judge error dropped it),
    sampled from the checkpoint's policy.

    ``max_new_tokens``: the response cap per model call (None: the run's), so that a model trained on a short-answer
    domain can be evaluated on one that needs longer answers.
    """
    from cod_megatron.loop.run_parts import build_manager

    cfg, engine, renderer = checkpoint_engine(ckpt, max_new_tokens)
    manager = build_manager(cfg, domain, [engine], renderer, temperature=temperature, run_seed=seed)
    result = manager.run(
        [fp.pack for fp in packs],
        1,
        step=0,
        hint_visible=hint_visible,
        env_task_idx=[list(fp.env_task_idx) for fp in packs],
    )
    return [None if lc.has_judge_error else lc.solve_rewards() for lc in result.lifecycles]


def evaluate_checkpoint_suites(ckpt: str | Path, suites: list[str], out: str | Path) -> dict[str, float]:
    """The in-loop evaluation of ``eval.suites`` (``suites``) on a checkpoint: the same :class:`Evaluator`, packs and
    seeds as the training run's evaluation at that step would use, so a suite of the run reproduces its in-loop
    numbers; writes ``step_<n>.json``, ``step_<n>_packs.jsonl`` and the PNGs under ``out``. Returns the metrics."""
    from cod_envs import registry
    from cod_megatron.eval.in_loop import Evaluator
    from cod_megatron.loop.run_parts import build_manager
    from cod_megatron.rollout.pack_source import PackSource

    cfg, engine, renderer = checkpoint_engine(ckpt, suites=suites)
    cfg.run.output_dir = str(out)
    domains = [registry.load(d.name) for d in cfg.env.domains()]
    manager = build_manager(cfg, domains, [engine], renderer, temperature=cfg.eval.temperature)
    evaluator = Evaluator(manager, PackSource(domains, cfg), cfg)
    evaluator.out = Path(out)
    name = Path(ckpt).name
    step = int(name.removeprefix("step_")) if name.startswith("step_") and name[5:].isdigit() else 0
    return evaluator.evaluate(step)
