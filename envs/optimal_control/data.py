"""Optimal Control rows (cod.md 9.5, ``--difficulty hard``): initial state and target per row, nothing pack-specific.

Each row carries its own seed (train even, test odd, so the splits are disjoint for any sizes) and the values drawn
from ``random.Random(row seed)``: x0 ~ U[-2, 2], v0 ~ U[-1.5, 1.5], x_target ~ U[-8, 8], v_target = 0, horizon 12,
control penalty 0.03. ``make_rows(n, ...)`` is a prefix of ``make_rows(n + k, ...)``.

    python -m cod_envs.optimal_control.data --train-size 50000 --test-size 4000 --seed 42 --out DIR
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from cod_envs.datagen import SEED_SPACE, data_parser, split_bit, write_splits
from cod_envs.optimal_control.env import CONTROL_PENALTY, HORIZON

SETTINGS: tuple[str, ...] = ("hard",)
"""The only difficulty any config uses; ``easy`` is accepted as an alias so generic callers keep working."""


def make_rows(
    n: int, seed: int = 42, split: str = "train", setting: str = "hard", include_previous_policy: bool = False
) -> list[dict[str, Any]]:
    """n rows of one split: distinct row seeds (parity = split) and the task values they determine."""
    bit = split_bit(split)
    if setting not in (*SETTINGS, "easy"):
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    rng = np.random.default_rng([seed, bit])
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    while len(rows) < n:
        k = int(rng.integers(SEED_SPACE))
        if k in seen:
            continue
        seen.add(k)
        row_seed = 2 * k + bit
        draw = random.Random(row_seed)
        rows.append(
            {
                "seed": row_seed,
                "x0": draw.uniform(-2.0, 2.0),
                "v0": draw.uniform(-1.5, 1.5),
                "x_target": draw.uniform(-8.0, 8.0),
                "v_target": 0.0,
                "horizon": HORIZON,
                "control_penalty": CONTROL_PENALTY,
                "include_previous_control_policy": include_previous_policy,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``--out``."""
    parser = data_parser(__doc__)
    parser.add_argument("--include-previous-policy", action="store_true", help="inject the earlier controller")
    args = parser.parse_args(argv)
    write_splits(make_rows, args, "hard", args.include_previous_policy)


if __name__ == "__main__":
    main()
