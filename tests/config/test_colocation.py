"""Colocated engines: what validation refuses, what each recipe's processes get, and the planner agreeing with the
loop on whether the engines are released during the train step."""

from __future__ import annotations

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, apply_overrides, engines_released_for_train, finalize
from cod_megatron.config.colocation import ALLOC_CONF, expandable_segments, shares_gpus_with_engines
from cod_megatron.config.memory import plan_memory
from cod_megatron.launch.submit import SlurmSettings, job_env, ray_runtime_env

EXPANDABLE = f'run.env_vars={{"{ALLOC_CONF}": "expandable_segments:True"}}'


def _refused(recipe: str, *overrides: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        finalize(apply_overrides(cod_recipes.get(recipe), list(overrides)))
    return err.value


def test_colocated_sglang_engines_with_off_policy_rollouts_are_refused_by_name():
    err = _refused("qwen3_8b_cod_8gpu_h100", "rollout.off_policy=true")
    assert err.field == "rollout.off_policy"
    assert "parallel.colocated=false" in err.reason


def test_off_policy_is_fine_with_engines_on_their_own_gpus():
    cfg = apply_overrides(cod_recipes.get("qwen3_8b_cod_8gpu_h100"), ["rollout.off_policy=true"])
    apply_overrides(cfg, ["parallel.colocated=false", "parallel.engines=4", "parallel.engine_tp=2"])
    layout = finalize(cfg)
    assert not engines_released_for_train(cfg.rollout, layout)


def test_expandable_segments_are_refused_where_cuda_ipc_or_the_memory_saver_runs():
    err = _refused("qwen3_8b_cod_8gpu_h100", EXPANDABLE)
    assert err.field == "run.env_vars"
    assert "pidfd_getfd" in err.reason


@pytest.mark.parametrize(
    "value,on",
    [
        ("expandable_segments:True", True),
        ("max_split_size_mb:64, expandable_segments : true", True),
        ("expandable_segments:False", False),
        ("", False),
    ],
)
def test_expandable_segments_are_read_as_torch_reads_them(value, on):
    assert expandable_segments({ALLOC_CONF: value}) is on


SETTINGS = SlurmSettings(account="a", partition="p", time="01:00:00", container_image="i", socket_ifname="ib0")

# what the trainer processes (sbatch exports + Ray runtime env) and the SGLang servers of each recipe get
ALLOCATOR_PER_RECIPE = {
    "debug_cpu": None,
    "debug_cpu_code_lock": None,
    "debug_cpu_mix": None,
    "opd_cpu_mix": None,
    "smollm2_135m_cod_cpu": None,
    "smollm2_135m_cod_1gpu": None,
    "qwen3_8b_cod_8gpu_h100": None,  # colocated SGLang: CUDA IPC and the memory saver
    "llama3_70b_cod_64gpu_h100": "expandable_segments:True",  # engines on their own GPUs: NCCL broadcast only
    "qwen3_8b_cod_setting_a_24gpu_h100": "expandable_segments:True",  # the paper's settings: engines on their own node
    "qwen3_8b_cod_setting_b_32gpu_h100": "expandable_segments:True",
    "qwen3_8b_opd_three_domains_48gpu_h100": "expandable_segments:True",  # the 8B settings' layout, plus teachers
}


@pytest.mark.parametrize("recipe", cod_recipes.names())
def test_what_each_recipes_trainer_and_server_processes_get(recipe):
    from cod_megatron.engines.startup import _sglang_settings  # the servers' launch arguments, as started

    cfg = cod_recipes.get(recipe)
    layout = finalize(cfg)
    trainer = ray_runtime_env(job_env(cfg, SETTINGS, layout))["env_vars"]
    assert trainer.get(ALLOC_CONF) == ALLOCATOR_PER_RECIPE[recipe]
    if cfg.rollout.engine == "sglang":
        cfg.model.hf_path = cfg.rollout.sglang_model_path = "/models/x"  # only where the servers load from
        server, _, actor = _sglang_settings(cfg, layout, {})
        assert actor["env"].get(ALLOC_CONF) == ALLOCATOR_PER_RECIPE[recipe]
        assert server.enable_memory_saver is shares_gpus_with_engines(cfg.rollout, layout)
    if shares_gpus_with_engines(cfg.rollout, layout):
        assert not cfg.rollout.off_policy


def test_the_8b_recipe_is_colocated_on_policy_and_its_plan_counts_the_engines_released():
    cfg = cod_recipes.get("qwen3_8b_cod_8gpu_h100")
    layout = finalize(cfg)
    assert layout.colocated and not cfg.rollout.off_policy
    assert engines_released_for_train(cfg.rollout, layout)
    train = plan_memory(cfg, layout).phases[0]
    assert "engine (released)" in train.items and "kv cache" not in train.items


def test_colocated_engines_kept_during_the_train_step_are_counted_whole():
    """Embedded engines may stay colocated off-policy (nothing is released); the planner then counts them whole."""
    cfg = apply_overrides(cod_recipes.get("qwen3_8b_cod_8gpu_h100"), ["rollout.engine=embedded"])
    apply_overrides(cfg, ["rollout.off_policy=true"])
    layout = finalize(cfg)
    assert not engines_released_for_train(cfg.rollout, layout)
    train = plan_memory(cfg, layout).phases[0]
    assert "engine (released)" not in train.items and train.items["kv cache"] > 0
