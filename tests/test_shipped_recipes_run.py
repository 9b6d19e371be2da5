"""Every shipped recipe passes what the entry points check before launching: validation, the loop's limits, the
run's vocabulary and, for GPU recipes, the memory planner's fit on an 80 GB H100 (issue 33)."""

from __future__ import annotations

import pytest

import cod_recipes
from cod_megatron.config import check_loop_can_run, finalize
from cod_megatron.config.memory import check_fits
from cod_megatron.rollout.pack_source import eval_suites
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


@pytest.mark.parametrize(
    ("name", "nodes"), [("qwen3_8b_cod_setting_a_24gpu_h100", 3), ("qwen3_8b_cod_setting_b_32gpu_h100", 4)]
)
def test_the_paper_settings_render_on_the_references_cluster_shape(name, nodes, capsys):
    """Setting A on 3 nodes, B on 4 (8 engine GPUs each; cod.md 10.4): the sbatch script renders, every suite parses."""
    from cod_megatron.launch.submit import main as launch

    assert launch(["--recipe", name, "--executor", "slurm", "--dry-run"]) == 0
    assert f"#SBATCH --nodes={nodes}" in capsys.readouterr().out
    cfg = cod_recipes.get(name)
    assert cfg.parallel.engines == 8 and cfg.parallel.tp * cfg.parallel.dp == (nodes - 1) * 8
    assert len(eval_suites(cfg)) >= 4 and all(s.rollouts == 3 for s in eval_suites(cfg))
