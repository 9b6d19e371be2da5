"""The seed table of docs/robustness.md from ``summarize_runs.py``'s JSON: ``python docs/robustness/seed_table.py J``.

Beside the spec's gap (positions >= 1 minus position 0) it shows position 0 and positions >= 1 apart: a policy that
always names one key at position 0 scores that key's share of the fixed evaluation packs there, not 1/4.
"""

import json
import statistics as st
import sys
from pathlib import Path


def ci(x: dict) -> str:
    """A gap with its 95 % interval."""
    lo, hi = x["gap_ci95"]
    return f"{x['gap']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def main(path: Path) -> None:
    """Print the per-seed rows and the across-seed line."""
    runs = json.loads(path.read_text())
    print(
        "| run | base gap (4) | final gap (4) [95 % CI] | final gap (8) [95 % CI] | final pos 0 / pos 1-3 (4) | "
        "training gap, last 10 | training pos 0 / pos 1-3, last 10 |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        m, t = r["final"]["cod_s4"]["mean"], r["train_reward_by_position_last10"]
        print(
            f"| {r['run']} | {r['base']['cod_s4']['gap']:+.2f} | {ci(r['final']['cod_s4'])} "
            f"| {ci(r['final']['cod_s8'])} "
            f"| {m[0]:.2f} / {st.mean(m[1:]):.2f} | {r['train_gap_last10']:+.2f} | {t[0]:.2f} / {st.mean(t[1:]):.2f} |"
        )
    for key, label in (("cod_s4", "final gap (4)"), ("cod_s8", "final gap (8)")):
        xs = [r["final"][key]["gap"] for r in runs]
        sd = st.stdev(xs) if len(xs) > 1 else 0.0
        print(
            f"\n{label} over {len(xs)} seeds: mean {st.mean(xs):+.3f}, sd {sd:.3f}, "
            f"min {min(xs):+.3f}, max {max(xs):+.3f}"
        )
    xs = [r["train_gap_last10"] for r in runs]
    print(f"\ntraining gap, last 10 steps: mean {st.mean(xs):+.3f}, min {min(xs):+.3f}, max {max(xs):+.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
