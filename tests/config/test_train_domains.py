"""``env.train_domains`` entries ``NAME[:SETTING][@WEIGHT]``: parsed once, bad ones refused with the field's name."""

from __future__ import annotations

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, apply_overrides, finalize
from cod_megatron.config.train_domains import TrainDomain, parse_train_domains


def test_entries_parse_with_the_default_setting_and_weight():
    got = parse_train_domains(["hidden_key", "code_lock:hard@2", "alchemy_random@0.5"], "easy")
    assert got == [
        TrainDomain("hidden_key", "easy", 1.0),
        TrainDomain("code_lock", "hard", 2.0),
        TrainDomain("alchemy_random", "easy", 0.5),
    ]


@pytest.mark.parametrize(
    ("entries", "field", "says"),
    [
        (["hidden_key@0"], "env.train_domains[0]", "positive"),
        (["hidden_key", "code_lock@-1"], "env.train_domains[1]", "positive"),
        (["hidden_key@nan"], "env.train_domains[0]", "positive"),
        (["hidden_key@x"], "env.train_domains[0]", "not a number"),
        (["hidden_key:medium"], "env.train_domains[0]", "easy, hard"),
        ([":easy"], "env.train_domains[0]", "NAME[:SETTING][@WEIGHT]"),
        (["hidden_key", "hidden_key:hard"], "env.train_domains", "more than once"),
        ([], "env.train_domains", "at least one"),
    ],
)
def test_a_bad_entry_names_its_field(entries, field, says):
    with pytest.raises(ConfigError) as err:
        parse_train_domains(entries, "easy")
    assert err.value.field == field and says in err.value.reason


def test_validation_refuses_a_zero_weight_before_anything_runs():
    cfg = apply_overrides(cod_recipes.get("debug_cpu"), ["env.train_domains=[hidden_key,code_lock@0]"])
    with pytest.raises(ConfigError) as err:
        finalize(cfg)
    assert err.value.field == "env.train_domains[1]"
