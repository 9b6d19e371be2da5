"""``eval.suites`` entries ``[NAME=]DOMAIN[:SETTING][/OPTION...]``: parsed once, bad ones refused naming the field
(issue 33)."""

from __future__ import annotations

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, apply_overrides, finalize
from cod_megatron.config.eval_suites import EvalSuite, parse_eval_suites
from cod_megatron.rollout.pack_source import eval_suites

DEFAULTS = {"setting": "easy", "pack_size": 4, "packs": 64}


def test_entries_parse_with_the_runs_defaults_and_a_derived_name():
    got = parse_eval_suites(
        ["frozenlake_obscure:hard/s8", "alchemy_random/s8/ralph_sample/n16", "hk=hidden_key/hidden/r3"], **DEFAULTS
    )
    assert got == [
        EvalSuite("frozenlake_obscure_hard_s8", "frozenlake_obscure", "hard", 8),
        EvalSuite("alchemy_random_s8_ralph_sample_n16", "alchemy_random", "easy", 8, "ralph_sample", packs=16),
        EvalSuite("hk", "hidden_key", "easy", 4, hints_visible=False, rollouts=3),
    ]


@pytest.mark.parametrize(
    ("entries", "field", "says"),
    [
        (["hidden_key/s1"], "eval.suites[0]", "at least 2"),
        (["hidden_key/s0"], "eval.suites[0]", "positive integer"),
        (["hidden_key", "hidden_key:easy/ralph"], "eval.suites[1]", "unknown option"),
        (["hidden_key:medium"], "eval.suites[0]", "easy, hard"),
        (["hidden_key/s8/s4"], "eval.suites[0]", "twice"),
        (["=hidden_key"], "eval.suites[0]", "expected"),
        (["hidden_key/s8", "hidden_key/s8"], "eval.suites", "appear twice"),
    ],
)
def test_a_bad_suite_names_its_field(entries, field, says):
    with pytest.raises(ConfigError) as err:
        parse_eval_suites(entries, **DEFAULTS)
    assert err.value.field == field and says in err.value.reason


def test_validation_runs_once_with_the_run_and_the_suites_take_its_defaults():
    with pytest.raises(ConfigError) as err:
        finalize(apply_overrides(cod_recipes.get("debug_cpu"), ["eval.suites=hidden_key/s8/n0"]))
    assert err.value.field == "eval.suites[0]"
    cfg = apply_overrides(cod_recipes.get("debug_cpu"), ["eval.suites=hidden_key,code_lock:hard/s8", "eval.packs=8"])
    finalize(cfg)
    assert eval_suites(cfg) == [
        EvalSuite("hidden_key_s4", "hidden_key", "easy", 4, packs=8),
        EvalSuite("code_lock_hard_s8", "code_lock", "hard", 8, packs=8),
    ]
