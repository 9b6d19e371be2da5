"""The per-window table of docs/robustness.md: ``python docs/robustness/windows.py RUN_DIR...`` prints markdown.

Means over 20-step windows of fields ``train.py`` logs in ``metrics.jsonl``, and the in-loop held-out gap (packs of
4) evaluated at each window's last step.
"""

import json
import statistics as st
import sys
from pathlib import Path


def rows(run: Path) -> list[str]:
    """One markdown row per 20-step window of ``run``."""
    train = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r]
    evals = {d["step"]: d for d in (json.loads(p.read_text()) for p in run.glob("eval/step_*.json"))}
    out = []
    for lo in range(1, len(train) + 1, 20):
        w = [r for r in train if lo <= r["step"] < lo + 20]
        end, g = w[-1]["step"], [r["train/grad_norm"] for r in w]
        ev = evals.get(end)
        cells = [
            run.name,
            f"{lo}-{end}",
            f"{st.mean(r['rollout/gap'] for r in w):+.2f}",
            f"{st.mean(r['rollout/reward_pos_0'] for r in w):.2f}",
            f"{st.mean(r['train/entropy'] for r in w):.3f}",
            f"{st.median(g):.3f} / {max(g):.2f}",
            f"{sum(r['credit/red/applied'] for r in w):.0f}/{len(w)}",
            f"{st.mean(r['rollout/solve_format_error'] for r in w):.3f}",
            f"{st.mean(r['rollout/hint_parse_failure'] for r in w):.3f}",
            f"{ev['cod_s4']['gap']:+.2f}" if ev else "-",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(runs: list[Path]) -> None:
    """Print the table of ``runs``."""
    print(
        "| run | steps | training gap | pos-0 reward | entropy | grad norm median / max | RED applied | "
        "solve format err | hint parse fail | held-out gap (4) at end |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print("\n".join(rows(run)))


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
