"""Config tree, dotted overrides, recipes and the CLI's dry run."""

import dataclasses
import json
import subprocess
import sys

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, RunConfig, apply_overrides, finalize
from cod_megatron.infra.cli import handle_common, parser


@pytest.mark.parametrize("name", cod_recipes.names())
def test_every_recipe_builds_and_validates(name):
    cfg = cod_recipes.get(name)
    layout = finalize(cfg)
    assert layout.trainer_world_size >= 1
    assert cfg.model.num_parameters() > 0


def test_recipes_are_the_expected_set_and_fresh_each_call():
    assert {"debug_cpu", "qwen3_8b_cod_8gpu_h100", "llama3_70b_cod_64gpu_h100"} <= set(cod_recipes.names())
    a, b = cod_recipes.get("debug_cpu"), cod_recipes.get("debug_cpu")
    a.optimizer.lr = 5.0
    assert b.optimizer.lr != 5.0


def test_recipe_model_sizes_match_the_public_checkpoints():
    assert abs(cod_recipes.get("qwen3_8b_cod_8gpu_h100").model.num_parameters() / 1e9 - 8.19) < 0.05
    assert abs(cod_recipes.get("llama3_70b_cod_64gpu_h100").model.num_parameters() / 1e9 - 70.55) < 0.05


def test_overrides_are_parsed_by_field_type():
    cfg = cod_recipes.get("debug_cpu")
    apply_overrides(
        cfg,
        [
            "optimizer.lr=3e-4",
            "rollout.group_size=6",
            "parallel.colocated=false",
            "algorithm.credit=outcome",
            "checkpoint.load=none",
            "env.train_domains=a,b",
            "model.kv_channels=32",
            'run.env_vars={"X": "1"}',
        ],
    )
    assert cfg.optimizer.lr == 3e-4 and cfg.rollout.group_size == 6 and cfg.parallel.colocated is False
    assert cfg.algorithm.credit == "outcome" and cfg.checkpoint.load is None
    assert cfg.env.train_domains == ["a", "b"] and cfg.model.kv_channels == 32 and cfg.run.env_vars == {"X": "1"}


@pytest.mark.parametrize(
    "item,field",
    [
        ("optimizer.lrr=1", "optimizer.lrr"),
        ("nosuch.x=1", "nosuch"),
        ("rollout.group_size=many", "rollout.group_size"),
        ("algorithm.credit=everything", "algorithm.credit"),
        ("parallel.colocated=maybe", "parallel.colocated"),
        ("optimizer=1", "optimizer"),
        ("optimizer.lr", "optimizer.lr"),
    ],
)
def test_bad_override_names_the_field(item, field):
    with pytest.raises(ConfigError) as e:
        apply_overrides(cod_recipes.get("debug_cpu"), [item])
    assert e.value.field == field


@pytest.mark.parametrize(
    "item,field",
    [
        ("optimizer.lr=-1", "optimizer.lr"),
        ("rollout.group_size=1", "rollout.group_size"),
        ("rollout.max_model_len=50", "rollout.max_model_len"),
        ("rollout.max_prompt_tokens=0", "rollout.max_prompt_tokens"),  # the length budget's caps (cod.md 2.7)
        ("rollout.max_response_tokens=0", "rollout.max_response_tokens"),
        ("parallel.tp=3", "parallel.tp"),
        ("algorithm.gamma=1.5", "algorithm.gamma"),
        ("parallel.sequence_parallel=true", "parallel.sequence_parallel"),  # needs tp > 1
        ("parallel.cp=2 parallel.dp=2 parallel.ep=3 parallel.engines=4", "parallel.ep"),  # ep must divide dp*cp
        ("rollout.engine=sglang", "rollout.engine"),
        ("model.num_query_groups=3", "model.num_query_groups"),
        ("algorithm.step_penalty_coef=-0.1", "algorithm.step_penalty_coef"),
        ("algorithm.hint_penalty=-1", "algorithm.hint_penalty"),
        ("algorithm.len_zero_penalty=10 algorithm.len_full_penalty=10", "algorithm.len_full_penalty"),
        ("optimizer.lr_decay_style=cosine optimizer.min_lr=1", "optimizer.min_lr"),
        ("model.hf_path=org/model", "env.warm_start_steps"),  # debug_cpu warm-starts: it would drop the HF weights
        ("algorithm.update_branches=0", "algorithm.update_branches"),
        ("algorithm.branch_horizon=0", "algorithm.branch_horizon"),
        ("algorithm.update_branches=2 algorithm.credit=outcome", "algorithm.credit"),  # branches need reward-to-go
        ("algorithm.update_branches=2 algorithm.returns=sliding_window_mean", "algorithm.returns"),
    ],
)
def test_bad_value_fails_validation_with_dotted_name(item, field):
    cfg = apply_overrides(cod_recipes.get("debug_cpu"), item.split())
    with pytest.raises(ConfigError) as e:
        finalize(cfg)
    assert e.value.field == field


def test_update_branches_validate_and_default_to_off():
    cfg = cod_recipes.get("debug_cpu")
    assert (cfg.algorithm.update_branches, cfg.algorithm.branch_horizon) == (1, 1)
    cfg = apply_overrides(
        cfg, ["algorithm.update_branches=3", "algorithm.branch_horizon=9", "algorithm.returns=discounted"]
    )
    finalize(cfg)  # a horizon past the pack's end plays what is left; 'own' / 'outcome' credit stay off with B = 1
    finalize(apply_overrides(cod_recipes.get("debug_cpu"), ["algorithm.credit=own", "algorithm.branch_horizon=2"]))


def test_validation_runs_after_overrides_so_overrides_can_fix_each_other():
    # tp=2 alone breaks the colocated engine count; the engines override that follows makes it valid again.
    cfg = apply_overrides(cod_recipes.get("qwen3_8b_cod_8gpu_h100"), ["parallel.dp=2", "parallel.engines=4"])
    assert finalize(cfg).trainer_world_size == 4


def test_type_check_catches_values_set_by_recipes():
    cfg = RunConfig()
    cfg.rollout.group_size = "8"  # a recipe bug, not an override
    with pytest.raises(ConfigError) as e:
        finalize(cfg)
    assert e.value.field == "rollout.group_size"


def test_every_field_has_a_known_type():
    # so that every field can be overridden from the command line
    def walk(obj, prefix):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                yield from walk(v, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}", v

    def read(obj, name):
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    cfg = cod_recipes.get("debug_cpu")
    for name, value in list(walk(cfg, "")):
        text = json.dumps(value) if isinstance(value, (dict, list)) else ("none" if value is None else str(value))
        apply_overrides(cfg, [f"{name}={text}"])
        # the printed value parses back to itself: same value, same type (a parser that accepted the text but
        # turned "False" into True or 1e-3 into 0 would otherwise pass)
        back = read(cfg, name)
        assert back == value and type(back) is type(value), (name, text, value, back)
    finalize(cfg)


def test_cli_dry_run_prints_config_and_layout(capsys):
    rc = handle_common(
        parser("t", "t").parse_args(["--recipe", "llama3_70b_cod_64gpu_h100", "--dry-run", "rollout.group_size=16"])
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["rollout"]["group_size"] == 16
    assert out["layout"]["trainer"] | {} == {
        "tp": 8,
        "pp": 4,
        "vpp": 5,
        "cp": 1,
        "ep": 1,
        "dp": 1,
        "sequence_parallel": True,
        "world_size": 32,
    }
    assert out["layout"]["job"]["nodes"] == 8


def test_cli_rejects_bad_override_with_nonzero_exit():
    r = subprocess.run(
        [sys.executable, "-m", "cod_megatron.train", "--recipe", "debug_cpu", "parallel.tp=3", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "parallel.tp" in r.stderr


def test_cli_dry_run_in_its_own_process():
    r = subprocess.run(
        [sys.executable, "-m", "cod_megatron.train", "--recipe", "debug_cpu", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["config"]["run"]["name"] == "debug_cpu"


@pytest.mark.parametrize("name", cod_recipes.names())
def test_cli_dry_run_every_recipe(name, capsys):
    """The same entry point in this process (one interpreter start per recipe was ~15 s of CI each)."""
    from cod_megatron.train import main

    assert main(["--recipe", name, "--dry-run"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["config"]["run"]["name"]


def test_run_name_names_the_run_directory_unless_output_dir_is_given():
    cfg = apply_overrides(cod_recipes.get("debug_cpu"), ["run.name=abc"])
    finalize(cfg)
    assert cfg.run.output_dir == "runs/abc"
    cfg = apply_overrides(cod_recipes.get("debug_cpu"), ["run.name=abc", "run.output_dir=/tmp/x"])
    finalize(cfg)
    assert cfg.run.output_dir == "/tmp/x"


def test_torch_threads_is_a_count_or_none():
    cfg = apply_overrides(cod_recipes.get("debug_cpu"), ["run.torch_threads=0"])
    with pytest.raises(ConfigError) as e:
        finalize(cfg)
    assert e.value.field == "run.torch_threads"
    assert apply_overrides(cod_recipes.get("debug_cpu"), ["run.torch_threads=2"]).run.torch_threads == 2
