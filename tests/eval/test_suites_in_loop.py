"""Evaluation suites in the loop (issue 33): every suite at every evaluation step, Ralph packing, rollout seeds and a
domain the run does not train on."""

from __future__ import annotations

import json
import math

import pytest

import cod_recipes
from cod_megatron.config import apply_overrides
from cod_megatron.eval.__main__ import main as eval_main
from cod_megatron.rollout.renderers import vocabulary_domains

SUITES = "eval.suites=hidden_key/s8/n4,hk_ralph=hidden_key/ralph_sample/n4/r2,code_lock/hidden/n4"


def test_the_vocabulary_covers_the_suites_domains():
    cfg = apply_overrides(cod_recipes.get("debug_cpu_mix"), ["env.train_domains=hidden_key", SUITES])
    assert vocabulary_domains(cfg) == ["hidden_key", "code_lock"]


@pytest.mark.slow
def test_two_steps_evaluate_every_suite_including_ralph_and_another_domain(tmp_path):
    from tests.cli import train_cli

    small = ["env.warm_start_steps=2", "rollout.packs_per_step=2", "rollout.group_size=2", "rollout.backend=inprocess"]
    out = tmp_path / "run"
    rows = train_cli(
        out, *small, "env.train_domains=hidden_key", SUITES, "run.steps=2", "eval.interval=2",
        "checkpoint.save_interval=2", recipe="debug_cpu_mix",
    )  # fmt: skip
    assert [r["step"] for r in rows] == [0, 1, 2]
    for r in (rows[0], rows[2]):  # the base model at step 0, then every evaluation step
        for name in ("hidden_key_s8_n4", "hk_ralph", "code_lock_s4_hidden_n4"):
            assert math.isfinite(r[f"eval/{name}/gap"]), name
        assert {"eval/hk_ralph/gap_rollout_0", "eval/hk_ralph/gap_rollout_1"} <= set(r)
        assert not any(k.startswith("eval/cod_s") for k in r)  # the suites replace the default set
    report = json.loads((out / "eval" / "step_2.json").read_text())
    assert len(report["hidden_key_s8_n4"]["pooled"]["mean"]) == 8 and len(report["hk_ralph"]["by_rollout"]) == 2
    packs = [json.loads(line) for line in (out / "eval" / "step_2_packs.jsonl").read_text().splitlines()]
    ralph = [p for p in packs if p["suite"] == "hk_ralph"]
    assert len(ralph) == 8 and all(len(set(p["rows"])) == 1 for p in ralph)  # one task repeated: the Ralph loop
    assert {p["rollout"] for p in ralph} == {0, 1}
    assert {p["variant"] for p in packs if p["suite"] == "code_lock_s4_hidden_n4"} == {"hint_blind"}
    assert (out / "eval" / "step_2_hk_ralph.png").exists()

    # the checkpoint CLI runs the same suites through the same evaluator: the in-loop numbers of step 2 again
    cli = tmp_path / "cli"
    assert eval_main(["--policy", str(out / "checkpoints" / "step_2"), "--out", str(cli)] + [
        arg for spec in SUITES.removeprefix("eval.suites=").split(",") for arg in ("--suite", spec)
    ]) == 0  # fmt: skip
    again = json.loads((cli / "step_2.json").read_text())
    for name in ("hidden_key_s8_n4", "hk_ralph", "code_lock_s4_hidden_n4"):
        assert again[name]["pooled"]["mean"] == report[name]["pooled"]["mean"], name
