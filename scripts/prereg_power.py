"""How often a seed comparison's Welch interval would exclude 0, by simulation (the pre-registration's power table).

Both arms are drawn normal with one seed-to-seed sd, taken from committed per-seed results (default: CodeLock's final
held-out combination reward at 5e-4, reward-to-go and outcome, ``docs/credit_ablation/lr5e-4.csv``, pooled); the
interval is the one the reports use (``scripts/seed_stats.diff_ci95``), so power and report cannot disagree.

    .venv/bin/python scripts/prereg_power.py            # about 10 s
    .venv/bin/python scripts/prereg_power.py --csv docs/preregistration/results/code_lock_hard_summary.csv \
        --ns 5 10 15 20 --deltas 0.2 0.4 0.5 0.6 0.8        # the CodeLock E3 pre-registration
    .venv/bin/python scripts/prereg_power.py --one-sample-sd 0.05 0.1 0.15   # the real-model pre-registration
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
from pathlib import Path

from seed_stats import diff_ci95, mean_ci95

ROOT = Path(__file__).resolve().parents[1]


def final_by_variant(csv_path: Path, step: int = 120) -> dict[str, list[float]]:
    """Each variant's per-seed combination reward (packs of 4) at ``step``."""
    out: dict[str, list[float]] = {}
    with csv_path.open() as f:
        for row in csv.DictReader(f):
            if int(row["step"]) == step:
                out.setdefault(row["run"].rsplit("_seed", 1)[0], []).append(float(row["cod_s4_combination"]))
    return out


def power(delta: float, sd: float, n: int, reps: int, rng: random.Random) -> float:
    """Share of simulated n-vs-n comparisons whose interval lies wholly above 0."""
    hits = 0
    for _ in range(reps):
        a = [rng.gauss(delta, sd) for _ in range(n)]
        b = [rng.gauss(0.0, sd) for _ in range(n)]
        hits += diff_ci95(a, b)[1] > 0
    return hits / reps


def power_one_sample(delta: float, sd: float, n: int, reps: int, rng: random.Random) -> float:
    """Share of simulated n-seed means of a within-run difference whose t interval lies wholly above 0."""
    hits = 0
    for _ in range(reps):
        hits += mean_ci95([rng.gauss(delta, sd) for _ in range(n)])[1] > 0
    return hits / reps


def one_sample_table(sds: list[float], reps: int, rng: random.Random) -> None:
    """The real-model pre-registration's table: a within-run difference averaged over n seeds, per seed-level sd."""
    ns = (3, 5, 10)
    print("| seed-level sd | true difference | " + " | ".join(f"{n} seeds" for n in ns) + " |")
    print("|---|---|" + "---|" * len(ns))
    for sd in sds:
        for delta in (0.1, 0.2, 0.3):
            cells = " | ".join(f"{power_one_sample(delta, sd, n, reps, rng):.2f}" for n in ns)
            print(f"| {sd:.2f} | {delta:+.1f} | {cells} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=ROOT / "docs/credit_ablation/lr5e-4.csv")
    ap.add_argument("--reps", type=int, default=4000)
    ap.add_argument("--ns", type=int, nargs="+", default=[5, 10, 20, 40], help="seeds per arm (columns)")
    ap.add_argument("--deltas", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8], help="true differences (rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--one-sample-sd",
        type=float,
        nargs="+",
        help="instead: power of a within-run difference's mean over seeds, for these seed-level sds",
    )
    args = ap.parse_args()
    if args.one_sample_sd:
        one_sample_table(args.one_sample_sd, args.reps, random.Random(args.seed))
        return
    finals = final_by_variant(args.csv)
    rtg, out = finals["reward_to_go"], finals["outcome"]
    sd = ((statistics.variance(rtg) + statistics.variance(out)) / 2) ** 0.5
    print(f"seed sd (pooled reward_to_go, outcome; {len(rtg)} + {len(out)} seeds): {sd:.2f}")
    print(f"observed reward_to_go - outcome: {statistics.mean(rtg) - statistics.mean(out):+.2f}")
    rng = random.Random(args.seed)
    ns = args.ns
    print("| true difference | " + " | ".join(f"{n} seeds per arm" for n in ns) + " |")
    print("|---|" + "---|" * len(ns))
    for delta in args.deltas:
        print(f"| {delta:+.1f} | " + " | ".join(f"{power(delta, sd, n, args.reps, rng):.2f}" for n in ns) + " |")


if __name__ == "__main__":
    main()
