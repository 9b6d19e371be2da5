"""debug_cpu_mix: two domains in one run (issue 32): the shared vocabulary, and two real steps of the loop with
packs of both domains in their quota's numbers and metrics per domain."""

import json
import math

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, apply_overrides, finalize
from cod_megatron.rollout.renderers import run_renderer, shared_vocabulary
from tests.cli import train_cli


def test_one_vocabulary_serves_both_domains_ids_of_the_first_unchanged():
    hidden_key, code_lock = shared_vocabulary(["hidden_key"]), shared_vocabulary(["code_lock"])
    both = shared_vocabulary(["hidden_key", "code_lock"])
    assert both[: len(hidden_key)] == hidden_key and set(both) == set(hidden_key) | set(code_lock)
    cfg = cod_recipes.get("debug_cpu_mix")
    finalize(cfg)
    assert run_renderer(cfg).vocab_size == len(both) == cfg.model.vocab_size
    # a one-domain run (a teacher) can speak the mixture's vocabulary: its own field, not train_domains
    teacher = apply_overrides(cod_recipes.get("debug_cpu"), ["env.vocabulary_domains=hidden_key,code_lock"])
    teacher.model.vocab_size = len(both)
    assert run_renderer(teacher).vocab_size == len(both)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["env.vocabulary_domains=hidden_key,frozenlake_obscure"], "env.vocabulary_domains"),  # words and chat
        (["model.vocab_size=44"], "model.vocab_size"),  # HiddenKey's alone: CodeLock's words have no id
    ],
)
def test_vocabularies_that_cannot_serve_the_run_are_refused(overrides, field):
    cfg = apply_overrides(cod_recipes.get("debug_cpu_mix"), overrides)
    with pytest.raises(ConfigError) as err:
        run_renderer(cfg)
    assert err.value.field == field


@pytest.mark.slow
def test_two_steps_of_the_mixture_train_both_domains(tmp_path):
    """Weights 3:1 over 4 packs: 3 HiddenKey packs and 1 CodeLock pack per step, G 2, in-process engines; RED per
    domain. Fails if the loop falls back to the first domain (no CodeLock lifecycle, no ``rollout/code_lock/``)."""
    small = ["env.warm_start_steps=2", "rollout.packs_per_step=4", "rollout.group_size=2", "eval.packs=2"]
    small += ["rollout.backend=inprocess", "eval.pack_sizes=[4]", "algorithm.red_level=domain"]
    out = tmp_path / "run"
    rows = train_cli(
        out, *small, "env.train_domains=hidden_key@3,code_lock@1", "run.steps=2", "eval.interval=2",
        recipe="debug_cpu_mix",
    )  # fmt: skip
    assert [r["step"] for r in rows] == [0, 1, 2]
    for r in rows[1:]:
        assert math.isfinite(r["train/loss"]) and r["rollout/failed_lifecycles"] == 0
        assert (r["rollout/hidden_key/lifecycles"], r["rollout/code_lock/lifecycles"]) == (6, 2)
        for domain in ("hidden_key", "code_lock"):
            assert {f"rollout/{domain}/reward_pos_{j}" for j in range(4)} <= set(r)
            assert r[f"rollout/{domain}/generated_tokens"] > 0
            assert f"credit/{domain}/red/applied" in r and r[f"packing/{domain}/trained_tokens"] > 0
    for domain in ("hidden_key", "code_lock"):
        assert f"eval/{domain}/cod_s4_gap" in rows[2]
    report = json.loads((out / "eval" / "step_2.json").read_text())
    assert len(report["code_lock/cod_s4"]["mean"]) == 4
    assert (out / "reward_by_position_code_lock.png").exists() and (out / "reward_by_position_hidden_key.png").exists()
    packs = [json.loads(line) for line in (out / "eval" / "step_2_packs.jsonl").read_text().splitlines()]
    assert {p["domain"] for p in packs} == {"hidden_key", "code_lock"}
