"""Summarise the pre-registered real-model runs (scripts/smollm2_seeds.sh): the CoD curve over seeds, per-pack data.

Reads every ``RUN_DIR/seed<N>/eval/step_*_packs.jsonl`` (the in-loop evaluator's per-pack rewards, packs of 4, hints
shown = ``cod`` and hidden = ``hint_blind``, the same packs in both). Per run and evaluation step it forms the numbers
``docs/preregistration/2026-12-07_smollm2_cod_effect.md`` names:

- ``hint_effect``: mean over packs of (mean reward at positions 1..k-1 with hints shown - the same with hints hidden),
  paired by pack (H1);
- ``gap``: mean reward at positions 1..k-1 minus position 0, hints shown (H2); ``gap_hidden`` the same, hidden;
- the reward at each position, shown and hidden.

Across runs: the mean over seeds with its 95 % t interval (``seed_stats.mean_ci95``, df = seeds - 1); a run counts
only at the steps it reached. Writes ``OUT.md`` (tables), ``OUT.csv`` (one row per run and step) and ``OUT.png``
(reward by position at each evaluation step, seed means with their intervals, shown and hidden).

    python scripts/real_model_seeds_summary.py outputs/smollm2_seeds --out docs/real_model/seeds/smollm2_seeds
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path

from seed_stats import fmt_ci, mean_ci95

RUN = re.compile(r"^seed(\d+)$")


def pack_rows(path: Path, pack_size: int) -> dict[str, dict[int, list[float]]]:
    """``{variant: {pack index: rewards by position}}`` of one evaluation's per-pack file, packs of ``pack_size``."""
    out: dict[str, dict[int, list[float]]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["pack_size"] == pack_size:
            out.setdefault(row["variant"], {})[row["pack"]] = row["rewards"]
    return out


def run_numbers(packs: dict[str, dict[int, list[float]]]) -> dict[str, float]:
    """The pre-registered numbers of one run at one step (see the module docstring)."""
    shown, hidden = packs["cod"], packs["hint_blind"]
    if shown.keys() != hidden.keys():
        raise ValueError("hints shown and hidden must be evaluated on the same packs")
    later = lambda r: statistics.mean(r[1:])  # noqa: E731
    out = {
        "packs": float(len(shown)),
        "hint_effect": statistics.mean(later(shown[i]) - later(hidden[i]) for i in shown),
        "gap": statistics.mean(later(r) - r[0] for r in shown.values()),
        "gap_hidden": statistics.mean(later(r) - r[0] for r in hidden.values()),
    }
    size = len(next(iter(shown.values())))
    for pos in range(size):
        out[f"shown_pos{pos}"] = statistics.mean(r[pos] for r in shown.values())
        out[f"hidden_pos{pos}"] = statistics.mean(r[pos] for r in hidden.values())
    return out


def collect(root: Path, pack_size: int) -> list[dict]:
    """One row per (run, evaluation step)."""
    rows = []
    for run in sorted(p for p in root.iterdir() if p.is_dir() and RUN.match(p.name)):
        for path in sorted(run.glob("eval/step_*_packs.jsonl"), key=lambda p: int(p.stem.split("_")[1])):
            step = int(path.stem.split("_")[1])
            rows.append({"run": run.name, "step": step, **run_numbers(pack_rows(path, pack_size))})
    return rows


def _by_position(rows: list[dict], variant: str, pack_size: int) -> str:
    return " ".join(f"{statistics.mean(r[f'{variant}_pos{p}'] for r in rows):.2f}" for p in range(pack_size))


def tables(rows: list[dict], pack_size: int) -> str:
    """Markdown: per step, the seed means with their intervals; then every run."""
    steps = sorted({r["step"] for r in rows})
    out = [
        "| step | seeds | hint effect (H1) | gap, shown (H2) | gap, hidden | reward by position, shown | hidden |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        at = [r for r in rows if r["step"] == step]
        out.append(
            f"| {step} | {len(at)} | {fmt_ci([r['hint_effect'] for r in at], True)} | "
            f"{fmt_ci([r['gap'] for r in at], True)} | {fmt_ci([r['gap_hidden'] for r in at], True)} | "
            f"{_by_position(at, 'shown', pack_size)} | {_by_position(at, 'hidden', pack_size)} |"
        )
    out += ["", "| run | step | packs | hint effect | gap | gap, hidden |", "|---|---|---|---|---|---|"]
    out += [
        f"| {r['run']} | {r['step']} | {r['packs']:.0f} | {r['hint_effect']:+.3f} | {r['gap']:+.3f} | "
        f"{r['gap_hidden']:+.3f} |"
        for r in rows
    ]
    return "\n".join(out) + "\n"


def plot(rows: list[dict], pack_size: int, path: Path) -> None:
    """Reward by pack position at each evaluation step: seed means with their 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted({r["step"] for r in rows})
    fig, axes = plt.subplots(1, len(steps), figsize=(3.6 * len(steps), 3.2), sharey=True, squeeze=False)
    for ax, step in zip(axes[0], steps, strict=True):
        at = [r for r in rows if r["step"] == step]
        for variant, label in (("shown", "hints shown"), ("hidden", "hints hidden")):
            stats = [mean_ci95([r[f"{variant}_pos{p}"] for r in at]) for p in range(pack_size)]
            means = [m for m, _, _ in stats]
            err = [[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]]
            ax.errorbar(range(pack_size), means, yerr=err, marker="o", capsize=3, label=label)
        ax.set_title(f"step {step} ({len(at)} seeds)")
        ax.set_xlabel("pack position")
        ax.set_xticks(range(pack_size))
    axes[0][0].set_ylabel("held-out reward")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the directory scripts/smollm2_seeds.sh wrote (seed<N>/ runs)")
    ap.add_argument("--out", type=Path, help="write OUT.md, OUT.csv and OUT.png (default: print the tables)")
    ap.add_argument("--pack-size", type=int, default=4)
    args = ap.parse_args()
    rows = collect(args.root, args.pack_size)
    if not rows:
        raise SystemExit(f"no seed<N>/eval/step_*_packs.jsonl under {args.root}")
    text = tables(rows, args.pack_size)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text)
        with args.out.with_suffix(".csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        plot(rows, args.pack_size, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
