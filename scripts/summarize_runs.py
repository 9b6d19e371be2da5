"""Summarise CoD-effect runs (scripts/cod_effect.sh) into one markdown table and one JSON file.

Usage: ``python scripts/summarize_runs.py outputs/cod_effect [--out docs/cod_effect]``. For every run directory it
reads ``eval/step_0.json`` (the warm-started base model) and the last ``eval/step_N.json`` (held-out pack seeds,
one rollout per pack, temperature 1) plus the training metrics (mean gap of the last 10 steps, seconds per step
and its breakdown), and writes ``<out>.md``, ``<out>.json`` and copies of each run's training-curve PNG.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path


def _fmt(x: dict) -> str:
    lo, hi = x["gap_ci95"]
    return f"{x['gap']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def summarize(run: Path) -> dict:
    """The headline numbers of one run directory."""
    evals = sorted(run.glob("eval/step_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    base, last = json.loads(evals[0].read_text()), json.loads(evals[-1].read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train/loss" in r]
    tail = train[-10:]
    times = {k: statistics.mean(r.get(k, 0.0) for r in train[1:]) for k in train[-1] if k.startswith("time/")}
    return {
        "run": run.name,
        "steps": train[-1]["step"],
        "base": {k: v for k, v in base.items() if k != "step"},
        "final": {k: v for k, v in last.items() if k != "step"},
        "train_gap_last10": statistics.mean(r["rollout/gap"] for r in tail),
        "train_reward_by_position_last10": [
            statistics.mean(r[f"rollout/reward_pos_{j}"] for r in tail) for j in range(4)
        ],
        "seconds_per_step": times,
    }


def table(summaries: list[dict]) -> str:
    """Markdown: one row per run."""
    head = (
        "| run | base gap (eval, packs of 4) | final gap, packs of 4 | final gap, packs of 8 (CoD-Deploy) | "
        "final gap, hints hidden (8) | training gap, last 10 steps | final reward by position (4) |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for s in summaries:
        f, b = s["final"], s["base"]
        pos = " ".join(f"{m:.2f}" for m in f["cod_s4"]["mean"])
        lines.append(
            f"| {s['run']} | {_fmt(b['cod_s4'])} | {_fmt(f['cod_s4'])} | {_fmt(f['cod_s8'])} | "
            f"{_fmt(f['hint_blind_s8'])} | {s['train_gap_last10']:+.2f} | {pos} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    """CLI entry."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--out", type=Path, default=Path("docs/cod_effect"))
    args = p.parse_args()
    runs = sorted(d for d in args.runs.iterdir() if (d / "metrics.jsonl").exists() and any(d.glob("eval/*.json")))
    summaries = [summarize(r) for r in runs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summaries, indent=1))
    md = table(summaries)
    args.out.with_suffix(".md").write_text(md)
    for r in runs:
        if (r / "reward_by_position.png").exists():
            shutil.copy(r / "reward_by_position.png", args.out.parent / f"{args.out.name}_{r.name}.png")
    print(md)


if __name__ == "__main__":
    main()
