"""Layouts the CoD loop cannot run yet, refused at the entry of ``train`` and ``launch`` (before anything starts).

``finalize`` accepts them on purpose: a dry run, the sync planner and the sbatch golden of the 70B recipe (PP 4)
describe what the cluster job will look like. Each limit names the field to change and is lifted by the work that
makes the loop run it.
"""

from __future__ import annotations

from cod_megatron.config.base import require
from cod_megatron.config.layout import ParallelLayout
from cod_megatron.config.root import RunConfig


def check_loop_can_run(cfg: RunConfig, layout: ParallelLayout) -> None:
    """Raise ``ConfigError`` (dotted field) for what the CoD loop cannot run; ``run.mode=synthetic`` runs any layout."""
    if cfg.run.mode != "cod":
        return
    require(
        not (cfg.rollout.engine == "sglang" and layout.colocated and layout.pp > 1),
        "parallel.pp",
        f"colocated SGLang engines load CUDA-IPC handles from the trainer rank on each GPU, which needs every HF "
        f"tensor on every rank; with pp={layout.pp} a rank holds only its stage "
        "(use pp=1, or parallel.colocated=false)",
    )
    require(
        cfg.algorithm.teacher_coef == 0 or cfg.distill.enabled,
        "algorithm.teacher_coef",
        f"is {cfg.algorithm.teacher_coef}, but no teacher scores the samples (distill.teachers is empty): the loop "
        "would have no teacher log-probs for the loss",
    )
    require(
        not cfg.distill.enabled or cfg.rollout.backend == "ray",
        "distill.teachers",
        "teachers run as Ray actors (embedded engines on CPU, SGLang servers on GPUs): set rollout.backend=ray",
    )
    hybrid = cfg.model.arch == "qwen3_5"
    require(
        not (hybrid and layout.tp > 1),
        "parallel.tp",
        "the Qwen3.5 hybrid trains at tp=1 on this loop: its Gated DeltaNet out_norm gradient is not reduced over TP "
        "yet (the forward and the export are right at TP 2; docs/qwen3_5.md)",
    )
    require(
        not (hybrid and (layout.cp > 1 or layout.pp > 1)),
        "parallel.cp" if layout.cp > 1 else "parallel.pp",
        "the Qwen3.5 hybrid has no context parallelism, and pipeline stages are untested for it (docs/qwen3_5.md)",
    )
