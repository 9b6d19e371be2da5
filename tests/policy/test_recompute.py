"""Activation recompute (megatron-core's selective and full): the same loss and gradients, less saved memory."""

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, apply_overrides, finalize
from cod_megatron.config.memory import plan_memory
from tests.dist import free_port
from tests.policy.parallel_utils import batches, local_grads, tiny_cfg


def _step(recompute: str):
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = tiny_cfg("model.num_layers=2", f"optimizer.recompute={recompute}")
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port(), seed=3)
    try:
        trainer = PolicyTrainer(cfg, layout)
        t = trainer.tconfig
        settings = (t.recompute_granularity, t.recompute_method, t.recompute_num_layers)
        metrics = trainer.train_step(batches(cfg.model.vocab_size, n=2))
        return settings, metrics, local_grads(trainer)
    finally:
        destroy_distributed()


def test_selective_and_full_recompute_give_the_same_loss_and_gradients():
    base_settings, base, base_grads = _step("none")
    assert base_settings == (None, None, None)
    for mode, settings in (("selective", ("selective", None, None)), ("full", ("full", "uniform", 1))):
        got_settings, metrics, grads = _step(mode)
        assert got_settings == settings
        assert metrics["loss"] == pytest.approx(base["loss"], abs=1e-6)
        assert metrics["grad_norm"] == pytest.approx(base["grad_norm"], rel=1e-6)
        for name, g in base_grads.items():
            assert (grads[name] - g).abs().max() <= 1e-6, (mode, name)


def test_full_recompute_shrinks_the_planned_activations():
    cfg = cod_recipes.get("qwen3_8b_cod_8gpu_h100")
    plans = {}
    for mode in ("none", "full"):
        c = apply_overrides(cod_recipes.get("qwen3_8b_cod_8gpu_h100"), [f"optimizer.recompute={mode}"])
        plans[mode] = plan_memory(c, finalize(c)).phases[0].items["activations"]
    assert plans["full"] < plans["none"] / 5
    assert cfg.optimizer.micro_batch_tokens == 16_384 and cfg.optimizer.recompute == "full"


def test_an_unknown_recompute_mode_names_the_field():
    with pytest.raises(ConfigError) as e:
        finalize(apply_overrides(cod_recipes.get("debug_cpu"), ["optimizer.recompute=some"]))
    assert e.value.field == "optimizer.recompute"
