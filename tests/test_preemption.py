"""A SIGTERM (Slurm's warning before the time limit, ``timeout``) stops a running `make train` cleanly: the step in
flight finishes, it is checkpointed, the engines and Ray end, exit 0; ``checkpoint.load=auto`` resumes it with the
same next step as a run that was never stopped."""

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from cod_megatron.config import RunConfig
from cod_megatron.loop.run_parts import resume_path
from tests.cli import start_train, train_cli

SMALL = ["env.warm_start_steps=3", "rollout.packs_per_step=2", "rollout.group_size=4", "eval.interval=0"]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigterm_checkpoints_the_finished_step_exits_0_and_resumes_with_the_same_next_step(tmp_path):
    out = tmp_path / "run"
    # checkpointing on, but no periodic save is reached: the checkpoint must come from the stop
    proc = start_train(out, tmp_path / "train.log", *SMALL, "run.steps=500", "checkpoint.save_interval=1000")
    try:
        started = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    finally:
        proc.kill()
    text = (tmp_path / "train.log").read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "stopped by SIGTERM" in text
    stopped_at = _rows(out)[-1]["step"]
    assert [r["step"] for r in _rows(out)] == list(range(1, stopped_at + 1))  # the step in flight finished
    ckpt = out / "checkpoints" / f"step_{stopped_at}"
    assert (ckpt / "run_config.json").exists(), text[-3000:]
    time.sleep(2)
    assert [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []

    # a requeued job: the same command line with checkpoint.load=auto, one more step; vs a run never stopped
    log = tmp_path / "resumed.log"
    rows = train_cli(out, *SMALL, "checkpoint.load=auto", f"run.steps={stopped_at + 1}", log=log)
    # metrics.jsonl is appended to: the stopped run's steps, then exactly step N + 1 (a resume that ignored the
    # checkpoint would replay 1 .. N + 1 and still end on the same last row as the straight run)
    assert [r["step"] for r in rows] == list(range(1, stopped_at + 2)), [r["step"] for r in rows]
    assert f"resumed from {ckpt} (step {stopped_at})" in log.read_text(), log.read_text()[-3000:]
    resumed = rows[-1]
    straight = train_cli(tmp_path / "straight", *SMALL, f"run.steps={stopped_at + 1}")[-1]
    assert resumed["step"] == straight["step"] == stopped_at + 1
    for key in ("train/loss", "train/grad_norm", "rollout/reward_pos_0"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6, abs=1e-9), key


def test_auto_resume_takes_the_newest_complete_checkpoint(tmp_path):
    cfg = RunConfig()
    cfg.run.output_dir, cfg.checkpoint.load = str(tmp_path), "auto"
    assert resume_path(cfg) is None  # nothing saved yet: a fresh start
    for step, complete in ((2, True), (10, True), (12, False)):  # step_12 was cut short: no run_config.json
        (tmp_path / "checkpoints" / f"step_{step}").mkdir(parents=True)
        if complete:
            (tmp_path / "checkpoints" / f"step_{step}" / "run_config.json").write_text("{}")
    assert resume_path(cfg) == str(tmp_path / "checkpoints" / "step_10")
    cfg.checkpoint.load = "/some/dir"
    assert resume_path(cfg) == "/some/dir"
