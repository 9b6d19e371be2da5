"""Summarise the mixture evidence (scripts/mixture_evidence.sh, scripts/opd_evidence.sh): every arm on every suite.

Arms are the run names without ``_seed<N>``: ``mix`` (CoD RL on HiddenKey + CodeLock), ``hidden_key`` and
``code_lock`` (each domain trained alone on the mixture's model, vocabulary and warm starts), ``opd`` (the mixture
student distilled from the single-domain arms). Every run is evaluated on the same suites (each domain in packs of 4
and 8, the Ralph loop, hints hidden). Per suite the number read is the mean held-out reward at the positions whose
task can use a note (HiddenKey: >= 1; CodeLock: >= its code length 2, the combination tasks), and position 0 beside
it. Only runs that reached ``--steps`` are read; every arm is read at the same step.

Writes ``OUT.md`` (per suite: each arm's mean over seeds with its 95 % t interval at the last step, position 0 and
the gap (later positions minus position 0) likewise, then each arm minus ``mix`` with Welch's interval),
``OUT.csv`` (one row per run, evaluation step and suite, with the reward at every position) and ``OUT.png`` (the
later-position reward by step per suite, arm means with their intervals).

    python scripts/mixture_evidence_summary.py outputs/mixture_evidence --out docs/mixture/mixture_evidence
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path

from seed_stats import diff_ci95, fmt_ci, mean_ci95

FIRST_USEFUL = {"hidden_key": 1, "code_lock": 2}
"""The first pack position whose task a note can help with, by domain."""
RUN = re.compile(r"^(?P<arm>.+)_seed(?P<seed>\d+)$")


def later(means: list[float], domain: str) -> float:
    """Mean reward over the positions a note can help with."""
    return statistics.mean(means[FIRST_USEFUL.get(domain, 1) :])


def tokens_per_step(run: Path) -> float:
    """Mean generated tokens per training step (``perf/generated_tokens``; 0 when the run logged none): OPD's arm
    plays 64 packs of G = 1 where CoD plays 8 of G = 8, so equal steps should mean about equal tokens."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    tokens = [r["perf/generated_tokens"] for r in rows if "perf/generated_tokens" in r]
    return statistics.mean(tokens) if tokens else 0.0


def run_rows(run: Path) -> list[dict]:
    """One row per evaluation step and suite of ``run``."""
    arm = RUN.match(run.name)
    assert arm, run.name
    per_step = round(tokens_per_step(run)) if (run / "metrics.jsonl").is_file() else 0
    rows = []
    for f in sorted((run / "eval").glob("step_*.json"), key=lambda p: int(p.stem.split("_")[1])):
        report = json.loads(f.read_text())
        for name, entry in report.items():
            if not isinstance(entry, dict) or "suite" not in entry:
                continue
            means, domain = entry["pooled"]["mean"], entry["suite"]["domain"]
            rows.append(
                {
                    "run": run.name,
                    "arm": arm["arm"],
                    "seed": int(arm["seed"]),
                    "step": int(report["step"]),
                    "suite": name,
                    "domain": domain,
                    "later": round(later(means, domain), 4),
                    "pos0": round(means[0], 4),
                    "gap": round(later(means, domain) - means[0], 4),
                    "by_position": " ".join(f"{x:.3f}" for x in means),
                    "generated_tokens_per_step": per_step,
                }
            )
    return rows


def collect(root: Path, steps: int) -> list[dict]:
    """Rows of every ``<arm>_seed<N>`` run under ``root`` that reached ``steps``."""
    rows = []
    for run in sorted(p for p in root.iterdir() if p.is_dir() and RUN.match(p.name)):
        if (run / "eval" / f"step_{steps}.json").is_file():
            rows += run_rows(run)
    return rows


def tables(rows: list[dict], steps: int, reference: str = "mix") -> list[str]:
    """OUT.md's lines: per suite, every arm at ``steps`` over its seeds, then every arm minus ``reference``."""
    final = [r for r in rows if r["step"] == steps]
    budget: dict[str, dict[str, int]] = {}
    for r in final:
        budget.setdefault(r["arm"], {})[r["run"]] = r["generated_tokens_per_step"]
    lines = [
        "| arm | runs | generated tokens per training step (mean over runs) |",
        "|---|---|---|",
        *(f"| {arm} | {len(t)} | {statistics.mean(t.values()):.0f} |" for arm, t in budget.items()),
        "",
        f"Step {steps}. Later positions: the mean held-out reward where a note can help (HiddenKey >= 1, CodeLock "
        ">= 2); mean over seeds [95 % t interval]; differences: Welch 95 % interval of the difference of seed means.",
        "",
    ]
    for suite in dict.fromkeys(r["suite"] for r in final):
        arms: dict[str, list[dict]] = {}
        for r in final:
            if r["suite"] == suite:
                arms.setdefault(r["arm"], []).append(r)
        head = "| arm | seeds | later positions | position 0 | gap (later - position 0) | minus mix, later positions |"
        lines += [f"### {suite}", "", head, "|---|---|---|---|---|---|"]
        ref = [r["later"] for r in arms.get(reference, [])]
        for arm, xs in arms.items():
            vs = ""
            if arm != reference and len(xs) >= 2 and len(ref) >= 2:
                d, lo, hi = diff_ci95([r["later"] for r in xs], ref)
                vs = f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
            lines.append(
                f"| {arm} | {len(xs)} | {fmt_ci([r['later'] for r in xs])} | {fmt_ci([r['pos0'] for r in xs])} "
                f"| {fmt_ci([r['gap'] for r in xs], signed=True)} | {vs} |"
            )
        lines.append("")
    return lines


def plot(rows: list[dict], out: Path) -> None:
    """OUT.png: one panel per suite, the later-position reward by step, each arm's seed mean with its interval."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    suites = list(dict.fromkeys(r["suite"] for r in rows))
    cols = 4
    fig, axes = plt.subplots((len(suites) + cols - 1) // cols, cols, figsize=(4 * cols, 3.2 * ((len(suites) + 3) // 4)))
    for ax, suite in zip(getattr(axes, "flat", [axes]), suites, strict=False):
        arms: dict[str, dict[int, list[float]]] = {}
        for r in rows:
            if r["suite"] == suite:
                arms.setdefault(r["arm"], {}).setdefault(r["step"], []).append(r["later"])
        for arm, by_step in arms.items():
            x = sorted(by_step)
            stats = [mean_ci95(by_step[s]) for s in x]
            ax.plot(x, [s[0] for s in stats], marker="o", label=arm)
            ax.fill_between(x, [s[1] for s in stats], [s[2] for s in stats], alpha=0.15)
        ax.set_title(suite, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(-0.05, 1.05)
    getattr(axes, "flat", [axes])[0].legend(fontsize=7)
    fig.suptitle("held-out reward at the positions a note can help with (mean over seeds, 95 % t interval)")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    plt.close(fig)


def main() -> int:
    """Read the runs, write OUT.md / OUT.csv / OUT.png, print the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, required=True, help="path without suffix")
    p.add_argument("--steps", type=int, default=120)
    args = p.parse_args()
    rows = collect(args.root, args.steps)
    if not rows:
        raise SystemExit(f"no run under {args.root} reached step {args.steps}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    md = tables(rows, args.steps)
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    plot(rows, args.out)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
