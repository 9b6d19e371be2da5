"""``run.mode=synthetic``: the debug_cpu policy takes real optimizer steps on a synthetic packed batch."""

import json
import subprocess
import sys

import pytest

from tests.cli import ROOT, train_cli


def test_debug_cpu_synthetic_training_runs_and_lowers_the_loss(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cod_megatron.train",
            "--recipe",
            "debug_cpu",
            "run.steps=4",
            "run.mode=synthetic",
            f"run.output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SYNTHETIC" in r.stdout
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    losses = [row["train/loss"] for row in rows]
    assert losses[-1] < losses[0]
    assert all(row["train/update_ok"] == 1.0 and row["train/grad_norm"] > 0 for row in rows)


def _train(tmp_path, name, *overrides):
    return train_cli(tmp_path / name, "run.mode=synthetic", *overrides, timeout=300)


def test_resume_from_checkpoint_continues_the_same_trajectory(tmp_path):
    # 4 steps straight (saving at step 2) vs a new process that loads step 2 and runs steps 3-4: step 4's loss
    # depends on the update of step 3, hence on the restored Adam moments, not only on the weights
    straight = _train(tmp_path, "a", "run.steps=4", "checkpoint.save_interval=2")
    resumed = _train(tmp_path, "b", "run.steps=4", f"checkpoint.load={tmp_path / 'a' / 'checkpoints' / 'step_2'}")
    assert [row["step"] for row in resumed] == [3, 4]
    for got, want in zip(resumed, straight[2:], strict=True):
        assert got["train/loss"] == pytest.approx(want["train/loss"], rel=1e-6)
        assert got["train/grad_norm"] == pytest.approx(want["train/grad_norm"], rel=1e-6)
    assert resumed[0]["train/loss"] != pytest.approx(straight[0]["train/loss"], rel=1e-3)
