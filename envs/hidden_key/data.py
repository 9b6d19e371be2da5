"""HiddenKey rows: ``python -m cod_envs.hidden_key.data --train-size N --test-size M --seed S --out DIR``.

A row is a task seed (it draws the distractors) plus the domain options, so a data file describes itself. Train
and test seeds are disjoint by construction (the lowest bit is the split), and the rows depend only on the
arguments, so every process that regenerates them gets the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cod_envs.hidden_key.env import HiddenKeyOptions

SPLITS = ("train", "test")
SETTINGS: dict[str, dict[str, Any]] = {"easy": {"reveal_key": True}, "hard": {"reveal_key": False}}
"""``easy``: feedback names the key; ``hard``: right/wrong only (the hint must hold eliminated keys)."""


def _row_seed(seed: int, split: str, i: int) -> int:
    """A 62-bit seed whose lowest bit is the split, so train and test can never share one."""
    digest = hashlib.sha256(f"hidden_key/rows/{seed}/{split}/{i}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 2) << 1 | SPLITS.index(split)


def make_rows(n: int, seed: int, split: str, setting: str = "easy", **options: Any) -> list[dict[str, Any]]:
    """``n`` distinct rows ``{"seed": int, **options}`` of ``split``; ``options`` override the setting's defaults."""
    if split not in SPLITS:
        raise ValueError(f"make_rows: split must be one of {SPLITS}, got {split!r}")
    if setting not in SETTINGS:
        raise ValueError(f"make_rows: setting must be one of {sorted(SETTINGS)}, got {setting!r}")
    if n < 0:
        raise ValueError(f"make_rows: n must be >= 0, got {n}")
    opts = HiddenKeyOptions(**(SETTINGS[setting] | options))
    fields = {k: getattr(opts, k) for k in HiddenKeyOptions.FIELDS} | {"hint_max_tokens": opts.hint_cap}
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    i = 0
    while len(rows) < n:
        s = _row_seed(seed, split, i)
        i += 1
        if s not in seen:
            seen.add(s)
            rows.append({"seed": s, **fields})
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object per line."""
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> int:
    """CLI entry: writes ``train.jsonl`` and ``test.jsonl`` under ``--out``; returns the exit code."""
    p = argparse.ArgumentParser(prog="cod_envs.hidden_key.data", description=__doc__.splitlines()[0])
    p.add_argument("--train-size", type=int, default=50_000)
    p.add_argument("--test-size", type=int, default=4_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--setting", default="easy", choices=sorted(SETTINGS))
    p.add_argument("--num-keys", type=int, default=None)
    p.add_argument("--num-distractors", type=int, default=None)
    p.add_argument("--distractor-vocab", type=int, default=None)
    p.add_argument("--reveal-key", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--answer-max-tokens", type=int, default=None)
    p.add_argument("--hint-max-tokens", type=int, default=None)
    args = p.parse_args(argv)
    if args.train_size < 0 or args.test_size < 0:
        p.error("--train-size and --test-size must be >= 0")
    options = {k: getattr(args, k) for k in HiddenKeyOptions.FIELDS if getattr(args, k) is not None}
    try:
        train = make_rows(args.train_size, args.seed, "train", args.setting, **options)
        test = make_rows(args.test_size, args.seed, "test", args.setting, **options)
    except ValueError as e:
        p.error(str(e))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "train.jsonl", train)
    write_rows(out / "test.jsonl", test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
