"""Every results table of README and docs/, regenerated from the data committed beside it.

Usage: ``python scripts/results_tables.py`` checks (exit 1 and a diff when a committed table differs from what its
data gives); ``--write`` rewrites them. A table lives between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` in a markdown file; :data:`TABLES` says which data file and which function make it.
``tests/test_results_tables.py`` runs the check, so a number edited by hand, or data changed without its table,
fails CI.

Covered (:data:`TABLES`): README's HiddenKey and CodeLock tables; ``docs/cod_effect.md``; the run, variant and
difference tables of ``docs/credit_ablation/{credit_ablation,lr5e-4,lr_cosine}.md`` and their excerpts in
``docs/credit_domain.md`` (per variant, per seed, the 5e-4 summary) and ``docs/update_branches.md`` (CodeLock), all
from the committed ``docs/credit_ablation/*.csv`` through ``credit_ablation_summary.py``'s own table functions; the
CodeLock probe table (``docs/credit_ablation/probe_reward_to_go_seed{2,3}.jsonl``); in ``docs/robustness.md`` the
seed table (``rtg_seeds.json`` through ``docs/robustness/seed_table.py``), the probe table
(``docs/robustness/probe_*.jsonl``) and the evaluation-noise table (``eval_noise_seed1234_afc02a1.jsonl``).

Removed, not covered (issue 28; each document says so where the numbers stood, keeping the command that makes them),
because their raw data was not committed: the training-reward column ("training, last 10 steps") of the credit
ablation tables (it needs the runs' ``metrics.jsonl``); the one-run CodeLock tables of ``docs/credit_domain.md``;
the one-seed HiddenKey learning comparison of ``docs/update_branches.md``; the 20-step windows of run
``rtg_seed1234`` (code before the RED fix) in ``docs/robustness.md``, and the prose numbers quoted from those runs.
The windows of the rerun of seeds 1234 and 1 (``docs/robustness/rerun_2026-12-07/*/metrics.jsonl``) are covered.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import importlib.util
import io
import json
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from credit_ablation_summary import at_tokens, read_csv, tables, variant_of, variant_table, versus_table  # noqa: E402
from seed_stats import fmt_ci  # noqa: E402
from summarize_runs import seed_table, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEARNS = 0.9
"""A CodeLock run learns when its best held-out combination reward (of 2, chance 0.5) reaches this."""


def summary_tables(path: Path) -> str:
    """``summarize_runs.py``'s markdown (runs, then the across-seed rows) from its JSON."""
    runs = json.loads(path.read_text())
    spread = seed_table(runs)
    across = f"\nAcross seeds (mean [95 % interval of the mean], sample sd, range):\n\n{spread}" if spread else ""
    return table(runs) + across


def run_table(path: Path) -> str:
    """The one-row-per-run table of ``summarize_runs.py`` alone."""
    return table(json.loads(path.read_text()))


def code_lock_outcomes(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Per credit variant, each seed's (final, best) held-out combination reward, packs of 4; best excludes step 0
    (the warm start), final is the last evaluated step."""
    runs: dict[str, list[dict]] = {}
    for row in csv.DictReader(path.open()):
        runs.setdefault(row["run"], []).append(row)
    out: dict[str, list[tuple[float, float]]] = {}
    for run, rows in runs.items():
        rows.sort(key=lambda r: int(r["step"]))
        values = [float(r["cod_s4_combination"]) for r in rows]
        out.setdefault(re.sub(r"_seed\d+$", "", run), []).append((values[-1], max(values[1:] or values)))
    return out


def _cell(seeds: list[tuple[float, float]] | None, bold: bool) -> str:
    if not seeds:
        return "not run"
    final, best = fmt_ci([f for f, _ in seeds]), fmt_ci([b for _, b in seeds])
    learn = f"{sum(b >= LEARNS for _, b in seeds)} of {len(seeds)}"
    return f"**{final}** / {best} / **{learn}**" if bold else f"{final} / {best} / {learn}"


def code_lock_credit(path: Path) -> str:
    """The README's CodeLock credit table: learning rate 1e-3 (``path``) beside 5e-4 (``lr5e-4.csv`` next to it)."""
    high, low = code_lock_outcomes(path), code_lock_outcomes(path.with_name("lr5e-4.csv"))
    labels = {
        "reward_to_go": "reward-to-go (the spec's)",
        "outcome": "outcome (lifecycle total)",
        "own": "own episode",
        "branches2": "reward-to-go + update branches (B 2, k 1)",
    }
    lines = [
        "| credit | learning rate 1e-3 (debug_cpu's, pre-registered): final / best / learn | 5e-4 (chosen after seeing "
        "the 1e-3 runs; the recipe's now): final / best / learn |",
        "|---|---|---|",
    ]
    for key, label in labels.items():
        lines.append(f"| {label} | {_cell(high.get(key), False)} | {_cell(low.get(key), key == 'reward_to_go')} |")
    return "\n".join(lines) + "\n"


def credit_ablation_tables(path: Path) -> str:
    """``credit_ablation_summary.py``'s ``OUT.md`` from its ``OUT.csv``, less the training column (it needs the
    runs' ``metrics.jsonl``, not committed)."""
    return "\n".join(tables(read_csv(path), None, "reward_to_go")) + "\n"


def credit_variants(path: Path) -> str:
    """The per-variant table and the differences to reward-to-go of ``credit_ablation_summary.py``, from its CSV."""
    runs = read_csv(path)
    diffs = ["", "Differences of the seed means [Welch 95 % interval]:", "", *versus_table(runs, "reward_to_go")]
    return "\n".join(variant_table(runs) + diffs) + "\n"


CREDITS = {
    "reward_to_go": "reward-to-go",
    "outcome": "outcome",
    "own": "own",
    "branches2": "reward-to-go + update branches (B 2, k 1)",
}


def _best(rows: list[dict]) -> dict:
    """The evaluation with the best combination reward (packs of 4), step 0 (the warm start) left out."""
    return max(rows[1:] or rows, key=lambda r: r["cod_s4_combination"])


def _learnt(x: float) -> str:
    return f"**{x:.2f}**" if x >= LEARNS else f"{x:.2f}"


def _best_final(rows: list[dict] | None) -> str:
    """``best (its step) / final`` of one run, a value >= LEARNS in bold; ``not run`` without rows."""
    if not rows:
        return "not run"
    best = _best(rows)
    return f"{_learnt(best['cod_s4_combination'])} ({best['step']}) / {_learnt(rows[-1]['cod_s4_combination'])}"


def credit_per_seed(path: Path) -> str:
    """One row per seed, one column per credit: best (its step) / final combination reward; bold where >= LEARNS."""
    runs = read_csv(path)
    seeds = sorted({int(re.search(r"\d+$", name).group()) for name in runs})
    lines = ["| seed | " + " | ".join(CREDITS.values()) + " |", "|---" * (len(CREDITS) + 1) + "|"]
    for seed in seeds:
        cells = [_best_final(runs.get(f"{credit}_seed{seed}")) for credit in CREDITS]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _by_credit(path: Path) -> dict[str, list[list[dict]]]:
    out: dict[str, list[list[dict]]] = {}
    for name, rows in read_csv(path).items():
        out.setdefault(variant_of(name), []).append(rows)
    return out


def credit_lr(path: Path) -> str:
    """docs/credit_domain.md's table of one learning rate's ablation (``path``): per credit, over seeds."""
    lines = [
        "| credit | final (step {}) | best evaluation | hints hidden | runs that learn (best >= 0.9) "
        "| per run: best / final |",
        "|---|---|---|---|---|---|",
    ]
    by_credit = _by_credit(path)
    for credit in sorted(by_credit, key=list(CREDITS).index):
        runs = by_credit[credit]
        final = [r[-1]["cod_s4_combination"] for r in runs]
        best = [_best(r)["cod_s4_combination"] for r in runs]
        hidden = sum(r[-1]["hint_blind_s4_combination"] for r in runs) / len(runs)
        learn = f"{sum(b >= LEARNS for b in best)} of {len(runs)}"
        bold = "**{}**" if credit == "reward_to_go" else "{}"
        lines.append(
            f"| {CREDITS.get(credit, credit)} | {bold.format(fmt_ci(final))} | {fmt_ci(best)} | {hidden:.2f} "
            f"| {bold.format(learn)} | {', '.join(f'{b:.2f}/{f:.2f}' for b, f in zip(best, final, strict=True))} |"
        )
    lines[0] = lines[0].format(max(r[-1]["step"] for runs in by_credit.values() for r in runs))
    return "\n".join(lines) + "\n"


def branches_code_lock(path: Path) -> str:
    """docs/update_branches.md's CodeLock table: reward-to-go with B = 1 and B = 2, k = 1, over seeds."""
    runs = _by_credit(path)
    budget = min(r[-1]["generated_tokens"] for rs in runs.values() for r in rs)
    lines = [
        f"| variant | final (step {runs['reward_to_go'][0][-1]['step']}) | best evaluation "
        f"| at about {budget / 1e3:.0f}K generated tokens | generated tokens per step "
        "| runs that learn (best >= 0.9) |",
        "|---|---|---|---|---|---|",
    ]
    per_step = {k: sum(r[-1]["generated_tokens"] / r[-1]["step"] for r in runs[k]) / len(runs[k]) for k in runs}
    for key, label in (("reward_to_go", "B = 1"), ("branches2", "B = 2, k = 1")):
        same = [at_tokens(r, budget) for r in runs[key]]
        best = [_best(r)["cod_s4_combination"] for r in runs[key]]
        ratio = per_step[key] / per_step["reward_to_go"]
        steps = "/".join(sorted({str(r["step"]) for r in same}))
        lines.append(
            f"| {label} | {fmt_ci([r[-1]['cod_s4_combination'] for r in runs[key]])} | {fmt_ci(best)} "
            f"| {fmt_ci([r['cod_s4_combination'] for r in same])} (step {steps}) "
            f"| {per_step[key]:,.0f}{f' (x{ratio:.1f})' if key != 'reward_to_go' else ''} "
            f"| {sum(b >= LEARNS for b in best)} of {len(best)} |"
        )
    return "\n".join(lines) + "\n"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


CODE_LOCK_PROBES = {2: "probe_reward_to_go_seed2.jsonl", 3: "probe_reward_to_go_seed3.jsonl"}
CODE_LOCK_PROBE = ("write_b", "follow_b", "keep_add", "write_a", "reveal_valid_pos0")
CODE_LOCK_STEPS = (20, 40, 80, 120)


def code_lock_probe(path: Path) -> str:
    """docs/credit_domain.md's probe table: ``code_lock_probe.py``'s JSON lines of reward-to-go seeds 2 and 3
    (:data:`CODE_LOCK_PROBES`, in ``path``'s folder); a valid-reveal probability below 0.5 in bold."""
    lines = [
        "| checkpoint | write_b: update 1 writes the revealed b word | follow_b: the answer copies the hint's b word "
        "| keep_add: update 1 keeps a and adds b | write_a: update 0 writes the revealed a word | reveal_valid_pos0 |",
        "|---|---|---|---|---|---|",
    ]
    for seed, name in CODE_LOCK_PROBES.items():
        probes = {int(p["checkpoint"].rsplit("_", 1)[1]): p for p in _jsonl(path.with_name(name))}
        cells = []
        for key in CODE_LOCK_PROBE:
            values = [probes[s][key] for s in CODE_LOCK_STEPS]
            bold = key.startswith("reveal_valid")
            cells.append(" / ".join(f"**{v:.2f}**" if bold and v < 0.5 else f"{v:.2f}" for v in values))
        steps = " / ".join(map(str, CODE_LOCK_STEPS))
        lines.append(f"| seed {seed}, step {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


HIDDEN_KEY_PROBES = ("probe_seed1234_afc02a1.jsonl", "probe_seed1234_redfix.jsonl", "probe_seed1_redfix.jsonl")


def hidden_key_probe(path: Path) -> str:
    """docs/robustness.md's probe table: ``hidden_key_probe.py``'s JSON lines, ``path`` then the fixed-RED runs."""
    lines = [
        "| run / checkpoint | pos-0 answer entropy (nats) | pos-0 top key (prob) | follow P(kX \\| hint kX) "
        "| write P(first = kX), by key k0..k3 | likeliest 2nd hint token |",
        "|---|---|---|---|---|---|",
    ]
    for name in HIDDEN_KEY_PROBES:
        for p in _jsonl(path.with_name(name)):
            parts = Path(p["checkpoint"]).parts
            by_key = " ".join(f"{x:.2f}" for x in p["write_first_by_key"])
            second = ", ".join(f"{k} {v:.2f}" for k, v in p["write_second_top"].items())
            lines.append(
                f"| {parts[-3]}/{parts[-1]} | {p['solve_none_entropy']:.3f} | {p['solve_none_top_key']} "
                f"({p['solve_none_top_prob']:.3f}) | {p['follow']:.3f} | {p['write_first']:.2f} ({by_key}) | {second} |"
            )
    return "\n".join(lines) + "\n"


def eval_noise(path: Path) -> str:
    """docs/robustness.md's evaluation-noise table (packs of 4) from ``cod_megatron.eval``'s JSON lines: per
    checkpoint and number of packs, each evaluation seed's gap; more than three seeds in one short row."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in _jsonl(path):
        if r["pack_size"] == 4:
            groups.setdefault((int(r["policy"].rsplit("_", 1)[1]), r["packs"]), []).append(r)
    lines = ["| checkpoint | packs | seed | gap [95 % CI] | reward by position |", "|---|---|---|---|---|"]
    for (step, packs), runs in groups.items():
        runs.sort(key=lambda r: r["seed"])
        seeds = " / ".join(str(r["seed"]) for r in runs)
        if len(runs) > 3:
            sd = statistics.stdev(r["gap"] for r in runs)
            gaps = " / ".join(f"{r['gap']:+.2f}" for r in runs) + f" (sd {sd:.2f})"
            where = "position 0: " + " / ".join(f"{r['reward_by_position'][0]:.2f}" for r in runs)
        else:
            gaps = " / ".join(f"{r['gap']:+.2f} [{r['gap_ci95'][0]:.2f}, {r['gap_ci95'][1]:.2f}]" for r in runs)
            where = " ".join(f"{x:.2f}" for x in runs[0]["reward_by_position"]) + f" (seed {runs[0]['seed']})"
        lines.append(f"| step {step} | {packs} | {seeds} | {gaps} | {where} |")
    return "\n".join(lines) + "\n"


def _robustness_script(name: str):
    """A script of ``docs/robustness/`` loaded as a module (they live beside the data they summarise)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "robustness" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rtg_seed_table(path: Path) -> str:
    """docs/robustness.md's seed table: ``docs/robustness/seed_table.py``'s output from ``summarize_runs.py``'s JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _robustness_script("seed_table").main(path)
    return out.getvalue()


WINDOW_RUNS = ("reward_to_go_seed1234", "reward_to_go_seed1")
RERUN = "docs/robustness/rerun_2026-12-07"


def robustness_windows(path: Path) -> str:
    """docs/robustness.md's 20-step windows of the rerun's ``metrics.jsonl`` (``docs/robustness/windows.py``)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _robustness_script("windows").main([path.parent.parent / run for run in WINDOW_RUNS])
    return out.getvalue()


@dataclass(frozen=True)
class Table:
    """One results table: where it is shown, the committed data it comes from, and how."""

    name: str
    document: str
    data: str
    make: Callable[[Path], str]
    also: tuple[str, ...] = ()
    """Further data files ``make`` reads (beside ``data``)."""


CSV_1E3 = "docs/credit_ablation/credit_ablation.csv"
PROBES = tuple(f"docs/credit_ablation/{n}" for n in CODE_LOCK_PROBES.values())
TABLES = [
    Table("cod_effect", "README.md", "docs/cod_effect.json", run_table),
    Table("cod_effect_full", "docs/cod_effect.md", "docs/cod_effect.json", summary_tables),
    Table("rtg_seeds", "docs/robustness/rtg_seeds.md", "docs/robustness/rtg_seeds.json", summary_tables),
    Table("code_lock_credit", "README.md", CSV_1E3, code_lock_credit, ("docs/credit_ablation/lr5e-4.csv",)),
    *(
        Table(
            f"credit_ablation_{n}",
            f"docs/credit_ablation/{n}.md",
            f"docs/credit_ablation/{n}.csv",
            credit_ablation_tables,
        )
        for n in ("credit_ablation", "lr5e-4", "lr_cosine")
    ),
    Table("credit_variants", "docs/credit_domain.md", CSV_1E3, credit_variants),
    Table("credit_per_seed", "docs/credit_domain.md", CSV_1E3, credit_per_seed),
    Table("code_lock_probe", "docs/credit_domain.md", PROBES[0], code_lock_probe, PROBES[1:]),
    Table("credit_lr5e-4", "docs/credit_domain.md", "docs/credit_ablation/lr5e-4.csv", credit_lr),
    Table("branches_code_lock", "docs/update_branches.md", CSV_1E3, branches_code_lock),
    Table("rtg_seed_table", "docs/robustness.md", "docs/robustness/rtg_seeds.json", rtg_seed_table),
    Table(
        "hidden_key_probe",
        "docs/robustness.md",
        f"docs/robustness/{HIDDEN_KEY_PROBES[0]}",
        hidden_key_probe,
        tuple(f"docs/robustness/{n}" for n in HIDDEN_KEY_PROBES[1:]),
    ),
    Table("eval_noise", "docs/robustness.md", "docs/robustness/eval_noise_seed1234_afc02a1.jsonl", eval_noise),
    Table(
        "robustness_windows",
        "docs/robustness.md",
        f"{RERUN}/{WINDOW_RUNS[0]}/metrics.jsonl",
        robustness_windows,
        tuple(f"{RERUN}/{run}/metrics.jsonl" for run in WINDOW_RUNS[1:])
        + tuple(
            str(p.relative_to(ROOT)) for run in WINDOW_RUNS for p in sorted((ROOT / RERUN / run).glob("eval/*.json"))
        ),
    ),
]


def block(name: str) -> re.Pattern[str]:
    """The marked block of table ``name`` (its lines may be indented, as in a list item)."""
    return re.compile(rf"(<!-- results:{name} -->\n)(.*?)(^[ \t]*<!-- /results:{name} -->)", re.S | re.M)


def _indented(text: str, indent: str) -> str:
    return "".join(indent + line if line.strip() else line for line in text.splitlines(keepends=True))


def render(doc: str, t: Table, root: Path = ROOT) -> str:
    """``doc`` with table ``t`` regenerated in place; a KeyError when its markers are missing."""
    match = block(t.name).search(doc)
    if match is None:
        raise KeyError(f"{t.document}: no <!-- results:{t.name} --> ... <!-- /results:{t.name} --> block")
    indent = re.match(r"[ \t]*", match.group(3)).group(0)
    fresh = _indented(t.make(root / t.data), indent)
    return doc[: match.start(2)] + fresh + doc[match.end(2) :]


def check(root: Path = ROOT, write: bool = False) -> list[str]:
    """Diffs of every stale table (rewritten when ``write``); empty when all match their data."""
    diffs = []
    for doc_name in dict.fromkeys(t.document for t in TABLES):
        path = root / doc_name
        old = path.read_text()
        new = old
        for t in (t for t in TABLES if t.document == doc_name):
            new = render(new, t, root)
        if new != old:
            diffs.append("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), doc_name, doc_name)))
            if write:
                path.write_text(new)
    return diffs


def main() -> int:
    """CLI entry: 0 when every table matches its data (or was rewritten)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="rewrite stale tables instead of failing")
    args = p.parse_args()
    diffs = check(write=args.write)
    for d in diffs:
        print(d)
    print(f"{len(TABLES)} tables, {len(diffs)} document(s) {'rewritten' if args.write else 'stale'}")
    return 0 if args.write or not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
