"""Every results table of README and docs/, regenerated from the data committed beside it.

Usage: ``python scripts/results_tables.py`` checks (exit 1 and a diff when a committed table differs from what its
data gives); ``--write`` rewrites them. A table lives between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` in a markdown file; :data:`TABLES` says which data file and which function make it.
``tests/test_results_tables.py`` runs the check, so a number edited by hand, or data changed without its table,
fails CI.

Tables not covered yet (their raw data is not committed; each names why in its document): the run-by-run tables of
``docs/credit_ablation/*.md`` and ``docs/credit_domain.md`` (made by ``credit_ablation_summary.py`` from run
directories), ``docs/update_branches.md``, the RED-window and probe tables of ``docs/robustness.md``.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


@dataclass(frozen=True)
class Table:
    """One results table: where it is shown, the committed data it comes from, and how."""

    name: str
    document: str
    data: str
    make: Callable[[Path], str]


TABLES = [
    Table("cod_effect", "README.md", "docs/cod_effect.json", run_table),
    Table("cod_effect_full", "docs/cod_effect.md", "docs/cod_effect.json", summary_tables),
    Table("rtg_seeds", "docs/robustness/rtg_seeds.md", "docs/robustness/rtg_seeds.json", summary_tables),
    Table("code_lock_credit", "README.md", "docs/credit_ablation/credit_ablation.csv", code_lock_credit),
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
