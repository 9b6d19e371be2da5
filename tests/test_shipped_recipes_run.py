"""Every shipped recipe passes what the entry points check before launching: validation, the loop's limits, the
run's vocabulary and, for GPU recipes, the memory planner's fit on an 80 GB H100 (issue 33)."""

from __future__ import annotations

import pytest

import cod_recipes
from cod_megatron.config import check_loop_can_run, finalize
from cod_megatron.config.memory import check_fits
from cod_megatron.rollout.renderers import run_vocabulary


@pytest.mark.parametrize("name", cod_recipes.names())
def test_the_recipe_passes_the_checks_before_launch(name):
    cfg = cod_recipes.get(name)
    layout = finalize(cfg)
    check_loop_can_run(cfg, layout)
    if not cfg.model.hf_path:  # a word-level or tiny-tokenizer model: its vocabulary fits the model
        run_vocabulary(cfg)
    if cfg.run.device == "cuda":
        plan = check_fits(cfg, layout)
        assert plan is not None
