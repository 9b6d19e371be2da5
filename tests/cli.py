"""Run the training CLI as a user does (a subprocess from the repository root) and read its metrics."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_cli(
    out: Path, *overrides: str, timeout: int = 600, recipe: str = "debug_cpu", log: Path | None = None
) -> list[dict]:
    """``python -m cod_megatron.train --recipe RECIPE run.output_dir=OUT ...``; the metrics.jsonl rows (its stdout
    and stderr written to ``log`` if given)."""
    r = subprocess.run(
        [sys.executable, "-m", "cod_megatron.train", "--recipe", recipe, f"run.output_dir={out}", *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    if log is not None:
        log.write_text(r.stdout + r.stderr)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def start_train(out: Path, log: Path, *overrides: str) -> subprocess.Popen:
    """``python -m cod_megatron.train --recipe debug_cpu`` in the background (output to ``log``, a file: a full pipe
    would block the trainer), returned once its first step is in ``metrics.jsonl``."""
    import time

    cmd = [sys.executable, "-m", "cod_megatron.train", "--recipe", "debug_cpu", f"run.output_dir={out}", *overrides]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline, metrics = time.time() + 300, out / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().strip()):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError("training did not reach its first step:\n" + log.read_text()[-3000:])
        time.sleep(0.5)
    return proc
