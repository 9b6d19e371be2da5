"""What the CoD loop cannot run yet fails at the entry of ``train`` and ``launch``, naming the field, before anything
starts; ``finalize``, ``--dry-run`` and the sync planner keep accepting such layouts (the 70B golden uses PP 4)."""

import subprocess
import sys

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, apply_overrides, check_loop_can_run, finalize
from cod_megatron.rollout.renderers import run_vocabulary
from tests.cli import ROOT

CASES = [
    # a mixture of a word-level and a chat domain: one tokenizer cannot serve both (issue 32 lifted one domain per run)
    (["env.train_domains=hidden_key,frozenlake_obscure"], "env.vocabulary_domains"),
]


def _refused_before_start(cfg, layout) -> None:
    """What the entry points check before starting anything: the loop's limits and the run's vocabulary."""
    check_loop_can_run(cfg, layout)
    run_vocabulary(cfg)


@pytest.mark.parametrize("overrides,field", CASES)
def test_finalize_accepts_but_the_loop_check_names_the_field(overrides, field):
    cfg = apply_overrides(cod_recipes.get("debug_cpu"), overrides)
    layout = finalize(cfg)  # a valid layout: dry runs and planners take it
    with pytest.raises(ConfigError) as e:
        _refused_before_start(cfg, layout)
    assert e.value.field == field
    synthetic = apply_overrides(cod_recipes.get("debug_cpu"), [*overrides, "run.mode=synthetic"])
    check_loop_can_run(synthetic, finalize(synthetic))  # the policy-only check runs any layout


def test_colocated_sglang_with_pipeline_parallelism_is_refused_by_parallel_pp():
    """Colocated engines load CUDA-IPC handles from every trainer rank, and a PP rank holds only its stage."""
    cfg = apply_overrides(cod_recipes.get("qwen3_8b_cod_8gpu_h100"), ["parallel.pp=2", "parallel.dp=2"])
    with pytest.raises(ConfigError) as e:
        check_loop_can_run(cfg, finalize(cfg))
    assert e.value.field == "parallel.pp" and "CUDA-IPC" in e.value.reason
    shipped = cod_recipes.get("qwen3_8b_cod_8gpu_h100")  # PP 1, colocated SGLang: runs
    check_loop_can_run(shipped, finalize(shipped))


def test_the_70b_recipe_passes_the_loop_check():
    """PP 4 x VPP 5: the interleaved schedule runs in the loop (``tests/sync/test_pipeline_sync.py``)."""
    cfg = cod_recipes.get("llama3_70b_cod_64gpu_h100")
    check_loop_can_run(cfg, finalize(cfg))


@pytest.mark.parametrize("module", ["cod_megatron.train", "cod_megatron.launch"])
@pytest.mark.parametrize("overrides,field", CASES)
def test_the_entry_points_exit_2_before_anything_starts(tmp_path, module, overrides, field):
    cmd = [sys.executable, "-m", module, "--recipe", "debug_cpu", *overrides, f"run.output_dir={tmp_path}/run"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, (r.stdout + r.stderr)[-2000:]
    assert f"config error: {field}:" in r.stderr
    assert not (tmp_path / "run").exists()  # nothing was started or written
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert dry.returncode == 0, dry.stderr[-2000:]
