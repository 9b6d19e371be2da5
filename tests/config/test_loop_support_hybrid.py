"""The loop refuses the Qwen3.5 hybrid where it does not train correctly yet (issue 36): TP > 1 (GDN's out_norm
gradient is not reduced over TP), CP and PP; the layouts still validate for dry runs."""

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, apply_overrides, finalize
from cod_megatron.config.loop_support import check_loop_can_run
from cod_recipes.models import tiny_qwen3_5


@pytest.mark.parametrize(
    "overrides, field",
    [(["parallel.tp=2"], "parallel.tp"), (["parallel.pp=2"], "parallel.pp"), (["parallel.cp=2"], "parallel.cp")],
)
def test_hybrid_layouts_the_loop_cannot_train_are_refused(overrides, field):
    cfg = cod_recipes.get("debug_cpu")
    cfg.model = tiny_qwen3_5()
    check_loop_can_run(cfg, finalize(apply_overrides(cfg, [])))  # tp = 1: runs
    bad = apply_overrides(cfg, [*overrides, "parallel.engines=2", "parallel.colocated=true"])
    layout = finalize(bad)
    with pytest.raises(ConfigError) as err:
        check_loop_can_run(bad, layout)
    assert err.value.field == field
