"""Summarise CodeLock credit-ablation runs (scripts/credit_ablation.sh): combination reward by evaluation step.

On CodeLock the in-loop "gap" (positions >= 1 minus position 0) mixes a reveal task into the later positions, so
this reads the quantity the domain is about: mean held-out reward at the *combination* positions (>= F, the code
length), with hints shown and hidden, in packs of 4 and 8, plus the training reward at those positions over the
last 10 steps. Runs named ``<variant>_seed<N>`` are also pooled per variant: the mean over seeds with its 95 % t
interval, at the last step (the same optimizer steps for every variant) and at the same generated tokens (update
branches generate more per step, so they are also read at the evaluation whose cumulative generated tokens are
nearest the smallest total of any run). Only runs that reached ``--steps`` are read. Writes ``OUT.md`` (tables),
``OUT.csv`` (one row per run and evaluation step), ``OUT.png`` (combination reward by step and by generated
tokens, variant means with their intervals) and ``OUT_positions.png`` (final reward by pack position in packs of 4
and 8).

    python scripts/credit_ablation_summary.py outputs/credit_ablation --out docs/credit_ablation/credit_ablation
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path

from seed_stats import diff_ci95, fmt_ci, mean_ci95

CODE_LENGTH = 2  # CodeLock's default F: positions 0..F-1 reveal, F.. combine
SEED_SUFFIX = re.compile(r"_seed\d+$")


def combination(means: list[float]) -> float:
    """Mean reward over the combination positions of one evaluation curve."""
    return statistics.mean(means[CODE_LENGTH:])


def cumulative_tokens(run: Path) -> dict[int, float]:
    """Generated tokens (solves, updates and update branches) summed over training steps 1..s, by step s."""
    total, out = 0.0, {0: 0.0}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line) if line.strip() else {}
        if "perf/generated_tokens" in r:
            total += r["perf/generated_tokens"]
            out[int(r["step"])] = total
    return out


def run_rows(run: Path) -> list[dict]:
    """One row per evaluation step of ``run``."""
    tokens = cumulative_tokens(run)
    rows = []
    for f in sorted((run / "eval").glob("step_*.json"), key=lambda p: int(p.stem.split("_")[1])):
        r = json.loads(f.read_text())
        rows.append(
            {
                "run": run.name,
                "step": int(r["step"]),
                "generated_tokens": int(tokens.get(int(r["step"]), max(tokens.values()))),
                **{f"{k}_combination": round(combination(r[k]["mean"]), 3) for k in ("cod_s4", "hint_blind_s4")},
                **{f"{k}_combination": round(combination(r[k]["mean"]), 3) for k in ("cod_s8", "hint_blind_s8")},
                "cod_s4_by_position": " ".join(f"{x:.2f}" for x in r["cod_s4"]["mean"]),
                "cod_s8_by_position": " ".join(f"{x:.2f}" for x in r["cod_s8"]["mean"]),
            }
        )
    return rows


def training_tail(run: Path, last: int = 10) -> float:
    """Training reward at the combination positions, mean over the last ``last`` logged steps."""
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [s for s in steps if s.get("step", 0) >= 1 and "rollout/reward_pos_0" in s][-last:]
    keys = sorted(k for k in steps[0] if k.startswith("rollout/reward_pos_"))[CODE_LENGTH:]
    return statistics.mean(statistics.mean(s[k] for k in keys) for s in steps)


def variant_of(run_name: str) -> str:
    """``reward_to_go_seed2`` -> ``reward_to_go``."""
    return SEED_SUFFIX.sub("", run_name)


def read_csv(path: Path) -> dict[str, list[dict]]:
    """``OUT.csv`` back into the per-run rows :func:`run_rows` made (the tables below read nothing else but the
    training reward, which needs the run directories)."""
    table: dict[str, list[dict]] = {}
    for r in csv.DictReader(path.open()):
        row = {k: (int(v) if k in ("step", "generated_tokens") else v) for k, v in r.items()}
        row.update({k: float(v) for k, v in r.items() if k.endswith("_combination")})
        table.setdefault(r["run"], []).append(row)
    for rows in table.values():
        rows.sort(key=lambda x: x["step"])
    return table


def run_table(table: dict[str, list[dict]], training: dict[str, float] | None = None) -> list[str]:
    """Markdown: one row per run; the training column only when ``training`` (by run name) is given."""
    head = "| run | last step | combination reward, packs of 4: best (step) / final | hints hidden, final "
    head += "| packs of 8, final | training, last 10 steps |" if training else "| packs of 8, final |"
    lines = [head + " final reward by position (4) |", "|---" * (7 if training else 6) + "|"]
    for name, rows in table.items():
        best = max(rows[1:] or rows, key=lambda r: r["cod_s4_combination"])
        last = rows[-1]
        train = f" {training[name]:.2f} |" if training else ""
        lines.append(
            f"| {name} | {last['step']} | {best['cod_s4_combination']:.2f} ({best['step']}) / "
            f"{last['cod_s4_combination']:.2f} | {last['hint_blind_s4_combination']:.2f} | "
            f"{last['cod_s8_combination']:.2f} |{train} {last['cod_s4_by_position']} |"
        )
    return lines


def at_tokens(rows: list[dict], budget: float) -> dict:
    """The evaluation whose cumulative generated tokens are nearest ``budget``."""
    return min(rows, key=lambda r: abs(r["generated_tokens"] - budget))


def variant_table(table: dict[str, list[dict]], training: dict[str, float] | None = None) -> list[str]:
    """Markdown: one row per variant, means over its seeds with 95 % t intervals, at equal steps and equal tokens;
    the training column only when ``training`` (by run name) is given."""
    groups: dict[str, list[str]] = {}
    for name in table:
        groups.setdefault(variant_of(name), []).append(name)
    budget = min(rows[-1]["generated_tokens"] for rows in table.values())
    lines = [
        f"| variant | seeds | final (step {max(rows[-1]['step'] for rows in table.values())}), packs of 4 "
        f"| packs of 8 | hints hidden (4) |{' training, last 10 steps |' if training else ''} best evaluation "
        f"| at {budget / 1e3:.0f}K generated tokens (step) | generated tokens per step |",
        "|---" * (9 if training else 8) + "|",
    ]
    for name, members in groups.items():
        rows = [table[m] for m in members]
        last = [r[-1] for r in rows]
        same = [at_tokens(r, budget) for r in rows]
        steps = "/".join(sorted({str(r["step"]) for r in same}))
        train = f" {fmt_ci([training[m] for m in members])} |" if training else ""
        lines.append(
            f"| {name} | {len(members)} | {fmt_ci([r['cod_s4_combination'] for r in last])} "
            f"| {fmt_ci([r['cod_s8_combination'] for r in last])} "
            f"| {fmt_ci([r['hint_blind_s4_combination'] for r in last])} |{train}"
            f" {fmt_ci([max(x['cod_s4_combination'] for x in r[1:] or r) for r in rows])} "
            f"| {fmt_ci([r['cod_s4_combination'] for r in same])} ({steps}) "
            f"| {statistics.mean(r['generated_tokens'] / max(r['step'], 1) for r in last):.0f} |"
        )
    return lines


def versus_table(table: dict[str, list[dict]], reference: str) -> list[str]:
    """Markdown: each variant minus ``reference`` (Welch 95 % interval of the difference of the seed means)."""
    finals: dict[str, list[float]] = {}
    bests: dict[str, list[float]] = {}
    for name, rows in table.items():
        finals.setdefault(variant_of(name), []).append(rows[-1]["cod_s4_combination"])
        bests.setdefault(variant_of(name), []).append(max(r["cod_s4_combination"] for r in rows[1:] or rows))
    if len(finals.get(reference, [])) < 2:
        return []

    def cell(xs: list[float], ys: list[float]) -> str:
        d, lo, hi = diff_ci95(xs, ys)
        return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"

    lines = [
        f"| {name} | {len(finals[name])} vs {len(finals[reference])} "
        f"| {cell(finals[name], finals[reference])} | {cell(bests[name], bests[reference])} |"
        for name in finals
        if name != reference and len(finals[name]) >= 2
    ]
    head = [f"| variant minus {reference} | seeds | final, packs of 4 | best evaluation |", "|---|---|---|---|"]
    return head + lines if lines else []


def tables(table: dict[str, list[dict]], training: dict[str, float] | None, reference: str) -> list[str]:
    """``OUT.md``'s lines: the run table, the per-variant table and the differences to ``reference``."""
    lines = run_table(table, training)
    lines += ["", "Per variant: mean over seeds [95 % t interval of the mean].", "", *variant_table(table, training)]
    versus = versus_table(table, reference)
    return lines + (["", "Differences of the seed means [Welch 95 % interval]:", "", *versus] if versus else [])


def plot(table: dict[str, list[dict]], runs: list[Path], out: Path) -> None:
    """OUT.png: combination reward by step and by generated tokens; OUT_positions.png: final reward by position."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    groups: dict[str, list[list[dict]]] = {}
    for run in runs:
        groups.setdefault(variant_of(run.name), []).append(table[run.name])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for name, rows in groups.items():
        n = min(len(r) for r in rows)
        stats = [mean_ci95([r[i]["cod_s4_combination"] for r in rows]) for i in range(n)]
        m, lo, hi = ([s[k] for s in stats] for k in range(3))
        for ax, key in zip(axes, ("step", "generated_tokens"), strict=True):
            x = [statistics.mean(r[i][key] for r in rows) for i in range(n)]
            ax.plot(x, m, marker="o", label=f"{name} ({len(rows)} seeds)")
            ax.fill_between(x, lo, hi, alpha=0.15)
    for ax, label in zip(axes, ("training step", "generated tokens (mean over seeds)"), strict=True):
        ax.axhline(0.5, color="k", linestyle="dashed", linewidth=0.8, label="chance (hint-blind)")
        ax.set_xlabel(label)
    axes[0].set_ylabel("held-out reward, combination positions (of 2)")
    axes[0].legend(fontsize=7)
    fig.suptitle("CodeLock (debug_cpu_code_lock): credit ablation, mean over seeds and 95 % interval")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, size in zip(axes, ("cod_s4_by_position", "cod_s8_by_position"), (4, 8), strict=True):
        for name, rows in groups.items():
            curves = [[float(v) for v in r[-1][key].split()] for r in rows]
            stats = [mean_ci95([c[j] for c in curves]) for j in range(size)]
            ax.errorbar(
                range(size),
                [s[0] for s in stats],
                yerr=[[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]],
                marker="o",
                capsize=3,
                label=f"{name} ({len(rows)} seeds)",
            )
        ax.set_xlabel(f"pack position (packs of {size}; 0..{CODE_LENGTH - 1} reveal, then combination)")
        ax.set_xticks(range(size))
    axes[0].set_ylabel("held-out reward (of 2), final evaluation")
    axes[0].legend(fontsize=7)
    fig.suptitle("CodeLock: final reward by pack position, mean over seeds and 95 % interval")
    fig.tight_layout()
    fig.savefig(out.parent / f"{out.name}_positions.png", dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="the directory scripts/credit_ablation.sh wrote")
    p.add_argument("--out", type=Path, required=True, help="prefix of the .md / .csv / .png written")
    p.add_argument("--steps", type=int, default=120, help="the runs' length (unfinished runs are left out)")
    p.add_argument("--reference", default="reward_to_go", help="the variant the others are compared with")
    args = p.parse_args()
    runs = sorted(
        d
        for d in args.runs.iterdir()
        if (d / "eval" / f"step_{args.steps}.json").exists() and (d / "metrics.jsonl").exists()
    )
    table = {r.name: run_rows(r) for r in runs}
    all_rows = [row for rows in table.values() for row in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(all_rows[0]))
        writer.writeheader()
        writer.writerows(all_rows)
    lines = tables(table, {r.name: training_tail(r) for r in runs}, args.reference)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(table, runs, args.out)


if __name__ == "__main__":
    main()
