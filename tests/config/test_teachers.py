"""``distill.teachers`` (issue 35): one teacher per training domain, placed beside the student's engines by the
layout and budgeted by the memory planner, every refusal naming its dotted field."""

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, apply_overrides, finalize
from cod_megatron.config.loop_support import check_loop_can_run
from cod_megatron.config.memory import check_fits, plan_memory
from cod_megatron.config.teachers import Teacher, parse_teachers

MIX = ["hidden_key", "code_lock"]


def test_teachers_parse_in_training_domain_order():
    got = parse_teachers(["code_lock=runs/cl/checkpoints/step_120", "hidden_key = /ckpt/hk "], MIX)
    assert got == [Teacher("hidden_key", "/ckpt/hk"), Teacher("code_lock", "runs/cl/checkpoints/step_120")]
    assert parse_teachers([], MIX) == []  # no distillation


@pytest.mark.parametrize(
    "entries, field, reason",
    [
        (["hidden_key"], "distill.teachers[0]", "DOMAIN=PATH"),
        (["=runs/x", "code_lock=y"], "distill.teachers[0]", "DOMAIN=PATH"),
        (["hidden_key=a", "code_lock="], "distill.teachers[1]", "DOMAIN=PATH"),
        (["hidden_key=a", "hidden_key=b", "code_lock=c"], "distill.teachers", "more than one teacher for hidden_key"),
        (["hidden_key=a", "code_lock=b", "alchemy=c"], "distill.teachers", "alchemy, which is not trained"),
        (["hidden_key=a"], "distill.teachers", "no teacher for the training domain code_lock"),
    ],
)
def test_bad_teachers_name_the_field(entries, field, reason):
    with pytest.raises(ConfigError) as err:
        parse_teachers(entries, MIX)
    assert err.value.field == field and reason in str(err.value)


def test_finalize_checks_teachers_against_the_recipes_domains():
    cfg = apply_overrides(
        cod_recipes.get("debug_cpu_mix"), ["distill.teachers=hidden_key=/t/hk", "algorithm.teacher_coef=1"]
    )
    with pytest.raises(ConfigError) as err:
        finalize(cfg)
    assert err.value.field == "distill.teachers" and "code_lock" in str(err.value)
    cfg = apply_overrides(
        cod_recipes.get("debug_cpu_mix"),
        ["distill.teachers=hidden_key=/t/hk,code_lock=/t/cl", "algorithm.teacher_coef=1"],
    )
    layout = finalize(cfg)
    assert cfg.distill.enabled and layout.teachers == 0  # on CPU teachers are engines sharing the cores, no devices


def test_teachers_get_their_own_devices_beside_the_students():
    base = cod_recipes.get("qwen3_8b_cod_8gpu_h100")
    student = finalize(apply_overrides(base, []))
    cfg = apply_overrides(
        base,
        [
            "env.train_domains=frozenlake_obscure,alchemy_random",
            "distill.teachers=frozenlake_obscure=/t/fl,alchemy_random=/t/al",
            "algorithm.teacher_coef=1",
            "parallel.teacher_engines=2",
            "parallel.teacher_engine_tp=2",
        ],
    )
    layout = finalize(cfg)
    assert layout.teacher_gpus == 2 * 2 * 2 and layout.world_size == student.world_size + 8
    assert layout.nodes == student.nodes + 1
    assert layout.teacher_bundles() == [[{"GPU": 1.0, "CPU": 1.0}] * 2] * 4
    assert layout.describe()["teachers"] == {"count": 2, "engines_each": 2, "engine_tp": 2, "gpus": 8}
    odd = apply_overrides(cfg, ["parallel.teacher_engines=1", "parallel.teacher_engine_tp=1"])
    with pytest.raises(ConfigError) as err:  # 8 + 2 devices do not fill whole nodes of 8
        finalize(odd)
    assert err.value.field == "parallel.gpus_per_node"
    with pytest.raises(ConfigError) as err:
        finalize(apply_overrides(cfg, ["parallel.teacher_engine_tp=16"]))
    assert err.value.field == "parallel.teacher_engine_tp"


def test_the_memory_planner_budgets_a_teacher_phase_and_blames_its_tp():
    overrides = [
        "env.train_domains=frozenlake_obscure",
        "distill.teachers=frozenlake_obscure=/t/fl",
        "algorithm.teacher_coef=1",
    ]
    cfg = apply_overrides(cod_recipes.get("qwen3_8b_cod_8gpu_h100"), [*overrides, "parallel.gpus_per_node=9"])
    plan = plan_memory(cfg, finalize(cfg))
    teacher = next(p for p in plan.phases if p.name == "teacher")
    assert teacher.fits and teacher.items["teacher weights"] == pytest.approx(
        cfg.model.num_parameters() * 2 / 2**30
    )  # bf16, one engine at TP 1
    base = cod_recipes.get("qwen3_8b_cod_8gpu_h100")
    assert "teacher" not in [p.name for p in plan_memory(base, finalize(base)).phases]
    student_kv = next(p for p in plan_memory(base, finalize(base)).phases if p.name == "rollout").items["kv cache"]
    assert teacher.items["kv cache"] == pytest.approx(student_kv)  # chunks of one student engine's concurrency
    big = cod_recipes.get("llama3_70b_cod_64gpu_h100")  # its 70B engines run at TP 8; a teacher at TP 1 cannot
    big = apply_overrides(big, [*overrides, "parallel.teacher_engines=8", "parallel.teacher_engine_tp=1"])
    check_fits(cod_recipes.get("llama3_70b_cod_64gpu_h100"), finalize(cod_recipes.get("llama3_70b_cod_64gpu_h100")))
    with pytest.raises(ConfigError) as err:
        check_fits(big, finalize(big))
    assert err.value.field == "parallel.teacher_engine_tp" and "teacher phase" in str(err.value)


def test_teachers_and_their_coefficient_come_together():
    """Teachers without a coefficient would be started and never read (a config error); a coefficient without
    teachers has no log-probs to compare with in the loop (refused before it starts; a trainer given teacher log-probs
    by other means takes it)."""
    with pytest.raises(ConfigError) as err:
        finalize(
            apply_overrides(cod_recipes.get("debug_cpu_mix"), ["distill.teachers=hidden_key=/t/hk,code_lock=/t/cl"])
        )
    assert err.value.field == "algorithm.teacher_coef"
    cfg = apply_overrides(cod_recipes.get("debug_cpu_mix"), ["algorithm.teacher_coef=1"])
    layout = finalize(cfg)
    with pytest.raises(ConfigError) as err:
        check_loop_can_run(cfg, layout)
    assert err.value.field == "algorithm.teacher_coef"


def test_the_loop_runs_teachers_only_where_it_can_start_them():
    """CPU teachers are Ray actors; in-process or GPU teachers are refused before anything starts."""
    on = ["distill.teachers=hidden_key=/t/hk,code_lock=/t/cl", "algorithm.teacher_coef=1"]
    cfg = apply_overrides(cod_recipes.get("debug_cpu_mix"), on)
    check_loop_can_run(cfg, finalize(cfg))  # ray backend on CPU
    inprocess = apply_overrides(cod_recipes.get("debug_cpu_mix"), [*on, "rollout.backend=inprocess"])
    with pytest.raises(ConfigError) as err:
        check_loop_can_run(inprocess, finalize(inprocess))
    assert err.value.field == "distill.teachers"


def test_one_rollout_per_pack_only_for_distillation_alone():
    """G = 1 leaves no group for the CoD baseline: allowed only when the CoD advantages are dropped (OPD alone)."""
    on = ["distill.teachers=hidden_key=/t/hk,code_lock=/t/cl", "algorithm.teacher_coef=1", "rollout.group_size=1"]
    finalize(apply_overrides(cod_recipes.get("debug_cpu_mix"), on))
    with pytest.raises(ConfigError) as err:
        finalize(apply_overrides(cod_recipes.get("debug_cpu_mix"), [*on, "distill.advantage=cod_plus_opd"]))
    assert err.value.field == "rollout.group_size"
