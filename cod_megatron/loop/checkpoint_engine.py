"""A trainer checkpoint in an embedded engine on this host: the policy of the checkpoint CLI, and a teacher.

The directory is one the training loop wrote (``checkpoints/step_N`` with its ``run_config.json``): the policy is
rebuilt from that config, the checkpoint is loaded under a one-process layout (dist-checkpoints reshard), and the
weights reach an in-process embedded engine through the same Megatron -> HF sync as in training. It starts a
one-process ``torch.distributed`` group of its own, so it runs where no other is (the CLI, a teacher's Ray actor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cod_megatron.config import RunConfig, finalize

if TYPE_CHECKING:
    from cod_megatron.cod.tokenization import ChatRenderer
    from cod_megatron.engines.embedded import EmbeddedEngine


def load_run_config(ckpt: str | Path) -> RunConfig:
    """The run config saved next to a training checkpoint, re-laid-out for one CPU/GPU process."""
    path = Path(ckpt) / "run_config.json"
    if not path.exists():
        raise FileNotFoundError(f"{ckpt} has no run_config.json: not a checkpoint written by cod_megatron.train")
    cfg = RunConfig.from_dict(json.loads(path.read_text()))
    p = cfg.parallel
    p.tp = p.pp = p.cp = p.dp = p.engines = p.engine_tp = 1
    p.vpp, p.sequence_parallel, p.colocated = None, False, True
    cfg.rollout.backend, cfg.rollout.engine = "inprocess", "embedded"
    cfg.run.device = "cuda" if torch.cuda.is_available() else "cpu"  # this machine's, not the training run's
    cfg.optimizer.use_distributed_optimizer = False
    return cfg


def checkpoint_engine(
    ckpt: str | Path, max_new_tokens: int | None = None, device: str | None = None, suites: list[str] | None = None
) -> tuple[RunConfig, EmbeddedEngine, ChatRenderer]:
    """(run config, embedded engine holding the checkpoint's weights, renderer): the policy on this host.

    ``device``: None picks this machine's (CUDA when present); the probes pass ``cpu``. ``suites``: replace the
    run's ``eval.suites`` (before the renderer is built: a word-level model's vocabulary covers their domains).
    """
    from cod_megatron.engines.embedded import EmbeddedEngine
    from cod_megatron.loop.run_parts import engine_kwargs, start_trainer
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.rollout.renderers import run_renderer
    from cod_megatron.sync.weight_sync import WeightSync

    cfg = load_run_config(ckpt)
    cfg.checkpoint.load, cfg.env.warm_start_steps = str(ckpt), 0
    cfg.rollout.max_response_tokens = max_new_tokens or cfg.rollout.max_response_tokens
    cfg.run.device = device or cfg.run.device
    cfg.eval.suites = cfg.eval.suites if suites is None else suites
    layout = finalize(cfg)
    renderer = run_renderer(cfg)  # the model's tokenizer, whichever domain it is evaluated on
    init_distributed(layout, rank=0, world_size=1, seed=cfg.run.seed)
    try:
        trainer = start_trainer(cfg, layout, renderer, with_optimizer=False)
        engine = EmbeddedEngine(**engine_kwargs(cfg, renderer))
        WeightSync(cfg.model, [engine]).sync(trainer.model, trainer.step)
    finally:
        destroy_distributed()
    return cfg, engine, renderer
