"""Summarise CodeLock credit-ablation runs (scripts/credit_ablation.sh): combination reward by evaluation step.

On CodeLock the in-loop "gap" (positions >= 1 minus position 0) mixes a reveal task into the later positions, so
this reads the quantity the domain is about: mean held-out reward at the *combination* positions (>= F, the code
length), with hints shown and hidden, in packs of 4 and 8, plus the training reward at those positions over the
last 10 steps. Writes ``OUT.md`` (table), ``OUT.csv`` and ``OUT.png`` (curves).

    python scripts/credit_ablation_summary.py outputs/credit_ablation --out docs/credit_ablation
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

CODE_LENGTH = 2  # CodeLock's default F: positions 0..F-1 reveal, F.. combine


def combination(means: list[float]) -> float:
    """Mean reward over the combination positions of one evaluation curve."""
    return statistics.mean(means[CODE_LENGTH:])


def run_rows(run: Path) -> list[dict]:
    """One row per evaluation step of ``run``."""
    rows = []
    for f in sorted((run / "eval").glob("step_*.json"), key=lambda p: int(p.stem.split("_")[1])):
        r = json.loads(f.read_text())
        rows.append(
            {
                "run": run.name,
                "step": int(r["step"]),
                **{f"{k}_combination": round(combination(r[k]["mean"]), 3) for k in ("cod_s4", "hint_blind_s4")},
                **{f"{k}_combination": round(combination(r[k]["mean"]), 3) for k in ("cod_s8", "hint_blind_s8")},
                "cod_s4_by_position": " ".join(f"{x:.2f}" for x in r["cod_s4"]["mean"]),
            }
        )
    return rows


def training_tail(run: Path, last: int = 10) -> float:
    """Training reward at the combination positions, mean over the last ``last`` logged steps."""
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [s for s in steps if s.get("step", 0) >= 1 and "rollout/reward_pos_0" in s][-last:]
    keys = sorted(k for k in steps[0] if k.startswith("rollout/reward_pos_"))[CODE_LENGTH:]
    return statistics.mean(statistics.mean(s[k] for k in keys) for s in steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="the directory scripts/credit_ablation.sh wrote")
    p.add_argument("--out", type=Path, required=True, help="prefix of the .md / .csv / .png written")
    args = p.parse_args()
    runs = sorted(d for d in args.runs.iterdir() if (d / "eval").is_dir() and (d / "metrics.jsonl").exists())
    table = {r.name: run_rows(r) for r in runs}
    all_rows = [row for rows in table.values() for row in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(all_rows[0]))
        writer.writeheader()
        writer.writerows(all_rows)
    lines = [
        "| run | last step | combination reward, packs of 4: best (step) / final | hints hidden, final "
        "| packs of 8, final | training, last 10 steps | final reward by position (4) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        rows = table[run.name]
        best = max(rows[1:] or rows, key=lambda r: r["cod_s4_combination"])
        last = rows[-1]
        lines.append(
            f"| {run.name} | {last['step']} | {best['cod_s4_combination']:.2f} ({best['step']}) / "
            f"{last['cod_s4_combination']:.2f} | {last['hint_blind_s4_combination']:.2f} | "
            f"{last['cod_s8_combination']:.2f} | {training_tail(run):.2f} | {last['cod_s4_by_position']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rows in table.items():
        ax.plot([r["step"] for r in rows], [r["cod_s4_combination"] for r in rows], marker="o", label=name)
    ax.axhline(0.5, color="k", linestyle="dashed", linewidth=0.8, label="chance (hint-blind)")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out reward, combination positions (of 2)")
    ax.set_title("CodeLock (debug_cpu_code_lock): credit ablation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
