"""Do two runs log the same numbers? For refactors that must not change behaviour.

Usage: ``python scripts/same_metrics.py RUN_A RUN_B`` compares ``metrics.jsonl`` step by step and every
``eval/step_<n>_packs.jsonl``, ignoring wall-clock fields (``time/*``, ``perf/*``); exit 0 when every other value is
equal (bitwise: no tolerance), else 1 with the first differences.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CLOCK = ("time/", "perf/")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(CLOCK)}


def differences(a: Path, b: Path) -> list[str]:
    """Every differing step / key / evaluation file of runs ``a`` and ``b`` (empty: the same)."""
    out: list[str] = []
    ra, rb = _rows(a / "metrics.jsonl"), _rows(b / "metrics.jsonl")
    if len(ra) != len(rb):
        out.append(f"metrics.jsonl: {len(ra)} rows vs {len(rb)}")
    for x, y in zip(ra, rb, strict=False):
        x, y = _strip(x), _strip(y)
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                out.append(f"step {x.get('step')}: {key} {x.get(key)!r} vs {y.get(key)!r}")
    evals = sorted({p.name for run in (a, b) for p in (run / "eval").glob("step_*_packs.jsonl")})
    for name in evals:
        fa, fb = a / "eval" / name, b / "eval" / name
        if not (fa.exists() and fb.exists()) or _rows(fa) != _rows(fb):
            out.append(f"eval/{name} differs")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    diffs = differences(Path(argv[0]), Path(argv[1]))
    rows = len(_rows(Path(argv[0]) / "metrics.jsonl"))
    print("\n".join(diffs[:20]) if diffs else f"same: {rows} steps, every logged value except time/* and perf/*")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
