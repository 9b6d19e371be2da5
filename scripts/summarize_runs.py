"""Summarise CoD-effect runs (scripts/cod_effect.sh) into one markdown table and one JSON file.

Usage: ``python scripts/summarize_runs.py outputs/cod_effect [--out docs/cod_effect]``. For every run directory it
reads ``eval/step_0.json`` (the warm-started base model) and the last ``eval/step_N.json`` (held-out pack seeds,
one rollout per pack, temperature 1) plus the training metrics (mean gap of the last 10 steps, seconds per step
and its breakdown), and writes ``<out>.md``, ``<out>.json``, ``<out>.csv`` (one row per run) and copies of each
run's training-curve PNG. Runs named ``<variant>_seed<N>`` also get one row per variant across seeds (mean, sample
standard deviation, min and max, and the 95 % t interval of the mean): one seed's interval says nothing about the
next seed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shutil
import statistics
from pathlib import Path

from seed_stats import fmt_ci

SEED_SUFFIX = re.compile(r"_seed\d+$")


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


def _spread(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{fmt_ci(xs, signed=True)} sd {sd:.2f}, range [{min(xs):+.2f}, {max(xs):+.2f}]"


def seed_table(summaries: list[dict]) -> str:
    """Markdown: one row per variant run at two or more seeds: mean [95 % t interval], sample sd and range."""
    groups: dict[str, list[dict]] = {}
    for s in summaries:
        groups.setdefault(SEED_SUFFIX.sub("", s["run"]), []).append(s)
    lines = [
        f"| {name} | {len(g)} | {_spread([s['final']['cod_s4']['gap'] for s in g])} | "
        f"{_spread([s['final']['cod_s8']['gap'] for s in g])} | {_spread([s['train_gap_last10'] for s in g])} |"
        for name, g in groups.items()
        if len(g) > 1
    ]
    if not lines:
        return ""
    head = (
        "| variant | seeds | final gap, packs of 4 | final gap, packs of 8 | training gap, last 10 steps |\n"
        "|---|---|---|---|---|\n"
    )
    return head + "\n".join(lines) + "\n"


def csv_rows(summaries: list[dict]) -> str:
    """CSV: one row per run, the headline numbers with their 95 % interval bounds."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["run", "steps", "base_gap_s4", "gap_s4", "gap_s4_lo", "gap_s4_hi", "gap_s8", "gap_s8_lo", "gap_s8_hi"]
        + ["hint_blind_gap_s8", "train_gap_last10"]
    )
    for s in summaries:
        f = s["final"]
        w.writerow(
            [s["run"], s["steps"], round(s["base"]["cod_s4"]["gap"], 4)]
            + [round(x, 4) for k in ("cod_s4", "cod_s8") for x in (f[k]["gap"], *f[k]["gap_ci95"])]
            + [round(f["hint_blind_s8"]["gap"], 4), round(s["train_gap_last10"], 4)]
        )
    return buf.getvalue()


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
    spread = seed_table(summaries)
    md += f"\nAcross seeds (mean [95 % interval of the mean], sample sd, range):\n\n{spread}" if spread else ""
    args.out.with_suffix(".md").write_text(md)
    args.out.with_suffix(".csv").write_text(csv_rows(summaries))
    for r in runs:
        if (r / "reward_by_position.png").exists():
            shutil.copy(r / "reward_by_position.png", args.out.parent / f"{args.out.name}_{r.name}.png")
    print(md)


if __name__ == "__main__":
    main()
