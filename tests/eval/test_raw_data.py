"""Every evaluation keeps its raw data: per-pack rewards from which its summary (means, intervals, gap) recomputes;
evaluation packs have their own seed."""

from __future__ import annotations

import json

import pytest

import cod_recipes
from cod_envs import registry
from cod_megatron.config import apply_overrides, finalize
from cod_megatron.eval.__main__ import evaluate, main
from cod_megatron.eval.stats import gap_stats, position_stats
from cod_megatron.rollout.pack_source import PackSource


def _recomputed(rows: list[dict]) -> tuple[list[float], float]:
    rewards = [r["rewards"] for r in sorted(rows, key=lambda r: r["pack"])]
    return position_stats(rewards).mean, gap_stats(rewards)[0]


def test_the_cli_summary_recomputes_from_its_per_pack_rows(tmp_path):
    assert main(["--env", "hidden_key", "--policy", "oracle", "--policy", "random", "--hint-blind", "--packs", "7",
                 "--pack-size", "4", "--out", str(tmp_path)]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "hidden_key_easy_cod.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "hidden_key_easy_cod_packs.jsonl").read_text().splitlines()]
    assert len(summary) == 4 and all("per_pack" not in s for s in summary)
    for s in summary:
        mine = [r for r in rows if r["policy"] == s["policy"]]
        assert len(mine) == s["packs"] == 7 and all(len(r["rows"]) == 4 for r in mine)
        means, gap = _recomputed(mine)
        assert means == s["reward_by_position"] and gap == s["gap"]


def test_a_constant_position_says_why_its_interval_has_no_width():
    result = evaluate("hidden_key", "oracle", packs=6, pack_size=4)
    notes = result["ci95_notes"]
    for mean, (lo, hi), note in zip(result["reward_by_position"], result["ci95_by_position"], notes, strict=True):
        assert (lo == hi) == (note is not None)
        if note:
            assert note == f"all 6 values are {mean:g}"


def _packs(*overrides: str):
    cfg = apply_overrides(cod_recipes.get("debug_cpu"), list(overrides))
    finalize(cfg)
    source = PackSource(registry.load(cfg.env.train_domains[0]), cfg)
    return source, [(p.seed, [t.data for t in p.tasks]) for p in source.eval_packs(3, 4)]


def test_evaluation_packs_have_their_own_seed():
    base_source, base = _packs()
    same_source, same = _packs("eval.data_seed=0")  # env.data_seed is 0: the packs of every run so far
    other_source, other = _packs("eval.data_seed=5")
    assert same == base and other != base
    assert other_source.train_rows == base_source.train_rows  # training data does not move with it
    moved_source, moved = _packs("env.data_seed=5", "eval.data_seed=0")
    assert moved == base and moved_source.train_rows != base_source.train_rows


@pytest.mark.parametrize("bad", ["eval.data_seed=x"])
def test_a_bad_eval_seed_names_the_field(bad):
    from cod_megatron.config import ConfigError

    with pytest.raises(ConfigError) as err:
        apply_overrides(cod_recipes.get("debug_cpu"), [bad])
    assert err.value.field == "eval.data_seed"


def _train_and_held_out(recipe: str, overrides: list[str]) -> tuple[object, list, list]:
    cfg = apply_overrides(cod_recipes.get(recipe), overrides)
    finalize(cfg)
    source = PackSource(registry.load(cfg.env.train_domains[0]), cfg)
    train = [p for step in range(1, cfg.run.steps + 1) for p in source.train_packs(step)]
    held_out = [p for size in cfg.eval.pack_sizes for p in source.eval_packs(cfg.eval.packs, size)]
    return cfg, train, held_out


PREREGISTERED = ["eval.data_seed=20261207"]  # docs/preregistration/2026-12-07_code_lock_credit.md
E3 = ["eval.data_seed=20261209", "env.setting=hard"]  # docs/preregistration/2026-12-07_code_lock_hard_confirmatory.md


@pytest.mark.parametrize(
    "recipe, overrides",
    [
        ("debug_cpu", []),
        ("debug_cpu_code_lock", PREREGISTERED),
        ("debug_cpu_code_lock", [*PREREGISTERED, "env.setting=hard"]),
        ("debug_cpu_code_lock", E3),
    ],
    ids=["debug_cpu", "code_lock_prereg_easy", "code_lock_prereg_hard", "code_lock_e3_hard"],
)
def test_evaluation_packs_share_no_row_or_pack_seed_with_training(recipe, overrides):
    """docs/robustness.md H7: the held-out packs (64 of 4 and 64 of 8) against the 120 training steps, for debug_cpu
    and for the pre-registered CodeLock runs."""
    cfg, train, held_out = _train_and_held_out(recipe, overrides)
    train_rows = {json.dumps(t.data, sort_keys=True) for p in train for t in p.tasks}
    train_seeds = {p.seed for p in train}
    assert len(train_rows) == cfg.run.steps * cfg.rollout.packs_per_step * cfg.rollout.pack_size  # 3,840 distinct
    rows = [json.dumps(t.data, sort_keys=True) for p in held_out for t in p.tasks]
    assert (len(rows), len(held_out)) == (768, 128)
    assert [r for r in rows if r in train_rows] == []
    assert [p.seed for p in held_out if p.seed in train_seeds] == []


def test_the_preregistered_evaluation_packs_are_fresh():
    """The pre-registration's packs share no pack seed or row with the evaluation packs the recipe's learning rate
    was chosen on (eval.data_seed unset: env.data_seed's)."""
    _, _, used = _train_and_held_out("debug_cpu_code_lock", [])
    _, _, fresh = _train_and_held_out("debug_cpu_code_lock", PREREGISTERED)
    used_rows = {json.dumps(t.data, sort_keys=True) for p in used for t in p.tasks}
    assert {p.seed for p in fresh} & {p.seed for p in used} == set()
    assert [t.data for p in fresh for t in p.tasks if json.dumps(t.data, sort_keys=True) in used_rows] == []


def test_the_confirmatory_evaluation_packs_are_fresh():
    """E3's packs share no pack seed or row with E2's (the same setting, eval.data_seed=20261207) or with the
    recipe's default evaluation packs on ``hard``."""
    _, _, fresh = _train_and_held_out("debug_cpu_code_lock", E3)
    fresh_rows = {json.dumps(t.data, sort_keys=True) for p in fresh for t in p.tasks}
    for other in ([*PREREGISTERED, "env.setting=hard"], ["env.setting=hard"]):
        _, _, used = _train_and_held_out("debug_cpu_code_lock", other)
        assert {p.seed for p in fresh} & {p.seed for p in used} == set()
        assert {json.dumps(t.data, sort_keys=True) for p in used for t in p.tasks} & fresh_rows == set()


SMOLLM2_PREREGISTERED = [  # docs/preregistration/2026-12-07_smollm2_cod_effect.md, scripts/smollm2_seeds.sh
    "run.steps=60",
    "eval.packs=64",
    "eval.pack_sizes=[4]",
    "eval.data_seed=20261208",
]


def test_the_preregistered_real_model_evaluation_packs_are_fresh():
    """The SmolLM2 pre-registration's 64 packs share no row or pack seed with its 60 training steps, nor with the
    evaluation packs of the README's 20-step run (eval.data_seed unset)."""
    _, train, fresh = _train_and_held_out("smollm2_135m_cod_cpu", SMOLLM2_PREREGISTERED)
    _, _, used = _train_and_held_out("smollm2_135m_cod_cpu", ["run.steps=20"])
    assert len(fresh) == 64
    fresh_rows = {json.dumps(t.data, sort_keys=True) for p in fresh for t in p.tasks}
    for other in (train, used):
        assert {p.seed for p in fresh} & {p.seed for p in other} == set()
        assert {json.dumps(t.data, sort_keys=True) for p in other for t in p.tasks} & fresh_rows == set()
