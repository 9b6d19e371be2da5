"""The root of the config tree and its single validation pass."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from cod_megatron.config import sections
from cod_megatron.config.base import check_types, require
from cod_megatron.config.colocation import check_colocation
from cod_megatron.config.layout import ParallelConfig, ParallelLayout
from cod_megatron.config.model import ModelConfig
from cod_megatron.config.teachers import parse_teachers


@dataclass(kw_only=True)
class RunConfig:
    """Everything a run needs; a recipe in ``recipes/`` returns one."""

    run: sections.RunSection = field(default_factory=sections.RunSection)
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    rollout: sections.RolloutConfig = field(default_factory=sections.RolloutConfig)
    algorithm: sections.AlgorithmConfig = field(default_factory=sections.AlgorithmConfig)
    env: sections.EnvConfig = field(default_factory=sections.EnvConfig)
    distill: sections.DistillConfig = field(default_factory=sections.DistillConfig)
    optimizer: sections.OptimizerConfig = field(default_factory=sections.OptimizerConfig)
    eval: sections.EvalConfig = field(default_factory=sections.EvalConfig)
    checkpoint: sections.CheckpointConfig = field(default_factory=sections.CheckpointConfig)
    logging: sections.LoggingConfig = field(default_factory=sections.LoggingConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict` (the ``run_config.json`` saved next to checkpoints); unknown keys are errors."""
        from cod_megatron.config.base import ConfigError

        sections = {}
        for f in dataclasses.fields(cls):
            section_cls = f.default_factory
            given = dict(data.get(f.name, {}))
            known = {x.name for x in dataclasses.fields(section_cls)}
            for key in sorted(set(given) - known):
                raise ConfigError(f"{f.name}.{key}", "unknown field")
            sections[f.name] = section_cls(**given)
        return cls(**sections)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for printing and for saving next to checkpoints)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Indented JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


def finalize(cfg: RunConfig) -> ParallelLayout:
    """Validate the whole tree once, after overrides, and return the parallel layout.

    ``model.hf_path`` is resolved before it (:func:`cod_megatron.models.source.resolve_model`: the shape fields of a
    checkpoint on this machine come from its ``config.json``), so the config stays free of model formats. Raises
    :class:`~cod_megatron.config.base.ConfigError` whose ``field`` is the dotted name of the bad value.
    """
    check_types(cfg, "")
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if hasattr(section, "check"):
            section.check(f.name)
    require(
        not (cfg.model.hf_path and cfg.env.warm_start_steps and cfg.checkpoint.load in (None, "auto")),
        "env.warm_start_steps",
        "a warm start trains a freshly initialised model, so the run would drop the weights of model.hf_path; set 0",
    )
    teachers = parse_teachers(cfg.distill.teachers, [d.name for d in cfg.env.domains()])
    opd_alone = bool(teachers) and cfg.distill.advantage == "opd"  # no CoD advantage: no baseline over G rollouts
    require(
        cfg.rollout.group_size >= 2 or opd_alone,
        "rollout.group_size",
        "the per-position baseline needs G >= 2 (G = 1 only for on-policy distillation alone, distill.advantage=opd)",
    )
    require(
        not teachers or cfg.algorithm.teacher_coef > 0,
        "algorithm.teacher_coef",
        f"is {cfg.algorithm.teacher_coef} with {len(teachers)} teacher(s) named: their log-probs would never reach the "
        "loss; set it > 0 (1: cod.md 8's OPD)",
    )
    # On GPUs each teacher's engines take devices of their own; on CPU they are embedded engines in Ray actors sharing
    # the cores, like the student's engine, so the layout places no device for them.
    on_devices = len(teachers) if cfg.run.device == "cuda" else 0
    layout = ParallelLayout.from_config(cfg.parallel, cfg.model, teachers=on_devices)
    check_colocation(cfg.run, cfg.rollout, layout)
    if cfg.run.output_dir is None:
        cfg.run.output_dir = f"runs/{cfg.run.name}"
    if cfg.run.device == "cpu":
        # Sequence and context parallelism run on CPU through the project's own norm and packed attention.
        require(cfg.rollout.engine == "embedded", "rollout.engine", "SGLang needs a GPU; use 'embedded' on CPU")
        require(cfg.model.params_dtype == "float32", "model.params_dtype", "CPU runs are float32")
    return layout
