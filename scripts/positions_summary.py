"""Summarise one training run by pack position: held-out evaluations, training windows and seconds per step.

Usage: ``python scripts/positions_summary.py RUN_DIR [--window 5]``. Reads ``RUN_DIR/eval/step_*.json`` (the in-loop
evaluator: CoD and hint-blind curves with the gap's 95 % interval) and ``RUN_DIR/metrics.jsonl`` (training reward
by position, ``time/*`` seconds), and prints markdown tables for a README.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _curve(x: dict) -> str:
    lo, hi = x["gap_ci95"]
    return f"{' '.join(f'{m:.2f}' for m in x['mean'])} | {x['gap']:+.2f} [{lo:+.2f}, {hi:+.2f}] | {x['n']}"


def summary(run: Path, window: int) -> str:
    """The markdown tables of ``run``."""
    out = ["| eval step | curve | reward by position | gap [95 % CI] | packs |", "|---|---|---|---|---|"]
    for path in sorted(run.glob("eval/step_*.json"), key=lambda p: int(p.stem.split("_")[1])):
        report = json.loads(path.read_text())
        for name, curve in report.items():
            if isinstance(curve, dict) and "mean" in curve:
                out.append(f"| {report['step']} | {name} | {_curve(curve)} |")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train/loss" in r]
    positions = sorted(int(k.rsplit("_", 1)[1]) for k in train[0] if k.startswith("rollout/reward_pos_"))
    out += ["", "| training steps | reward by position (mean) | gap | solve format errors |", "|---|---|---|---|"]
    for chunk in (train[i : i + window] for i in range(0, len(train), window)):
        means = [statistics.mean(r[f"rollout/reward_pos_{p}"] for r in chunk) for p in positions]
        fmt = statistics.mean(r.get("rollout/solve_format_error", 0.0) for r in chunk)
        gap = statistics.mean(means[1:]) - means[0]
        span = f"{chunk[0]['step']}-{chunk[-1]['step']}"
        out.append(f"| {span} | {' '.join(f'{m:.2f}' for m in means)} | {gap:+.2f} | {fmt:.2f} |")
    times = {k: statistics.mean(r.get(k, 0.0) for r in train) for k in train[-1] if k.startswith("time/")}
    total = sum(v for k, v in times.items() if k != "time/eval_s")
    parts = ", ".join(f"{k.removeprefix('time/').removesuffix('_s')} {v:.1f}" for k, v in times.items())
    out += ["", f"Seconds per step (mean of {len(train)}): {total:.1f} without evaluation ({parts})."]
    return "\n".join(out)


def main() -> None:
    """CLI entry."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--window", type=int, default=5)
    args = p.parse_args()
    print(summary(args.run, args.window))


if __name__ == "__main__":
    main()
