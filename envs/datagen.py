"""Shared pieces of the per-domain data generators: split check, row seeds, JSONL writer and command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SEED_SPACE = 2**30
"""Row seeds are ``2 * k + split bit`` for ``k`` drawn below this."""
SPLITS: dict[str, int] = {"train": 0, "test": 1}
"""Split name -> the bit its row seeds carry (train even, test odd), so the splits never share a row."""


def split_bit(split: str) -> int:
    """The seed bit of ``split``; a ValueError names the splits for anything else."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return SPLITS[split]


def check_setting(setting: str, choices: Sequence[str]) -> None:
    """A ValueError naming ``choices`` (shown as given) unless ``setting`` is one of them."""
    if setting not in choices:
        raise ValueError(f"setting must be one of {choices}, got {setting!r}")


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    """One JSON object per line, keys sorted, so equal rows give byte-identical files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def data_parser(description: str | None) -> argparse.ArgumentParser:
    """``--train-size --test-size --seed --out``; a domain adds its own options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--test-size", type=int, default=4_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def write_splits(make_rows: Callable[..., list[dict[str, Any]]], args: argparse.Namespace, *extra: Any) -> None:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``args.out`` (train and test seeds are disjoint by design)."""
    write_jsonl(make_rows(args.train_size, args.seed, "train", *extra), args.out / "train.jsonl")
    write_jsonl(make_rows(args.test_size, args.seed, "test", *extra), args.out / "test.jsonl")


def data_main(
    make_rows: Callable[..., list[dict[str, Any]]],
    description: str | None,
    argv: list[str] | None,
    setting: str,
    settings: Sequence[str] | None = None,
) -> None:
    """A domain's data CLI: the common options, ``--setting`` from ``settings`` (default ``setting``) when the domain
    has more than one, then ``train.jsonl`` and ``test.jsonl`` written under ``--out``."""
    parser = data_parser(description)
    if settings is not None:
        parser.add_argument("--setting", choices=settings, default=setting)
    args = parser.parse_args(argv)
    write_splits(make_rows, args, args.setting if settings is not None else setting)


def distinct_row_seeds(n: int, seed: int, split_bit: int, salt: int, space: int = SEED_SPACE) -> list[int]:
    """``n`` distinct row seeds whose parity is the split (train even, test odd), so splits never overlap and
    ``n`` rows are a prefix of ``n + k`` rows; ``salt`` separates a domain's settings."""
    import numpy as np

    rng = np.random.default_rng([seed, split_bit, salt])
    out: list[int] = []
    seen: set[int] = set()
    while len(out) < n:
        k = int(rng.integers(space))
        if k not in seen:
            seen.add(k)
            out.append(2 * k + split_bit)
    return out
