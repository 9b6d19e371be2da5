"""Two CoD steps of the tiny Qwen3.5 hybrid through the whole loop (`python -m cod_megatron.train`), in process: the
trainer's log-probs of the first step's rollouts equal the embedded engine's (the mismatch metric), both steps
train, and the step-2 checkpoint is written."""

import json
import math

import pytest

from tests.cli import train_cli

HYBRID = [
    "model.arch=qwen3_5",
    "model.kv_channels=32",
    "model.rope_theta=10000000",
    "model.rotary_percent=0.25",
    "model.full_attention_interval=4",
    "model.linear_num_key_heads=2",
    "model.linear_num_value_heads=4",
    "model.linear_key_head_dim=16",
    "model.linear_value_head_dim=16",
]


@pytest.mark.slow
def test_two_cod_steps_of_the_hybrid_with_the_step0_gate(tmp_path):
    small = ["env.warm_start_steps=3", "rollout.packs_per_step=2", "rollout.group_size=4", "eval.packs=4"]
    rows = train_cli(tmp_path / "run", *small, *HYBRID, "run.steps=2", "eval.interval=0", "rollout.backend=inprocess",
                     "checkpoint.save_interval=2")  # fmt: skip
    steps = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    # step 1: the engine sampled with the weights the trainer holds, so their log-probs agree
    assert 0 <= steps[0]["train/mismatch_abs_logp_diff"] < 1e-5
    for r in steps:
        assert math.isfinite(r["train/loss"]) and r["train/grad_norm"] > 0 and r["rollout/failed_lifecycles"] == 0
    # the run was the hybrid, and its dist-checkpoint (megatron's GDN sharded state dict) was written
    ckpt = tmp_path / "run" / "checkpoints" / "step_2"
    model = json.loads((ckpt / "run_config.json").read_text())["model"]
    assert (model["arch"], model["full_attention_interval"]) == ("qwen3_5", 4)
