"""``metrics.jsonl`` of a resumed run: the steps after the checkpoint are run again, so their old rows go."""

from __future__ import annotations

import json

from cod_megatron.infra.log import MetricsWriter


def _steps(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_a_resumed_run_logs_each_step_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = MetricsWriter(path, tensorboard=False)
    for step in range(0, 14):  # step 0: the base model's evaluation; killed after step 13, checkpoint at step 10
        first.write(step, {"train/loss": float(step)})
    resumed = MetricsWriter(path, tensorboard=False, resumed_at=10)
    for step in range(11, 16):
        resumed.write(step, {"train/loss": float(step)})
    assert _steps(path) == list(range(0, 16))


def test_a_fresh_run_keeps_what_is_there(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 3}) + "\n")
    MetricsWriter(path, tensorboard=False, resumed_at=0).write(1, {})
    MetricsWriter(path, tensorboard=False).write(2, {})
    assert _steps(path) == [3, 1, 2]
