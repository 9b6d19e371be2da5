"""Typed config tree: sections, the root RunConfig, overrides and the ParallelLayout (all pure Python)."""

from cod_megatron.config.base import ConfigError
from cod_megatron.config.colocation import engines_released_for_train
from cod_megatron.config.layout import LayoutError, ParallelConfig, ParallelLayout
from cod_megatron.config.loop_support import check_loop_can_run
from cod_megatron.config.model import ModelConfig
from cod_megatron.config.overrides import apply_override, apply_overrides
from cod_megatron.config.root import RunConfig, finalize
from cod_megatron.config.sections import (
    AlgorithmConfig,
    CheckpointConfig,
    EnvConfig,
    EvalConfig,
    LoggingConfig,
    OptimizerConfig,
    RolloutConfig,
    RunSection,
)

__all__ = [
    "AlgorithmConfig",
    "CheckpointConfig",
    "ConfigError",
    "EnvConfig",
    "EvalConfig",
    "LayoutError",
    "LoggingConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ParallelConfig",
    "ParallelLayout",
    "RolloutConfig",
    "RunConfig",
    "RunSection",
    "apply_override",
    "apply_overrides",
    "check_loop_can_run",
    "engines_released_for_train",
    "finalize",
]
