"""Alchemy-Random rows (cod.md 9.2): seeds only (plus the setting's round budget and material mode).

The row seed matters only for the ``limited`` material count; graphs and targets come from the pack seed. Train seeds
are even and test seeds odd, so the splits are disjoint for any sizes and generator seed, and ``make_rows(n, ...)``
is a prefix of ``make_rows(n + k, ...)``.

    python -m cod_envs.alchemy_random.data --train-size 50000 --test-size 4000 --seed 42 --out DIR [--setting hard]
"""

from __future__ import annotations

from typing import Any

from cod_envs.alchemy_random.graph import SETTINGS
from cod_envs.datagen import check_setting, data_main, distinct_row_seeds, split_bit

_SETTING_IDS = {name: i for i, name in enumerate(sorted(SETTINGS))}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "easy") -> list[dict[str, Any]]:
    """n rows of one split and setting with distinct row seeds (parity = split)."""
    bit = split_bit(split)
    check_setting(setting, sorted(SETTINGS))
    cfg = SETTINGS[setting]
    seeds = distinct_row_seeds(n, seed, bit, _SETTING_IDS[setting])
    rows = [
        {"seed": s, "setting": setting, "max_rounds": cfg.max_rounds, "material_mode": cfg.material_mode} for s in seeds
    ]
    return rows


def main(argv: list[str] | None = None) -> None:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``--out``."""
    data_main(make_rows, __doc__, argv, "easy", sorted(SETTINGS))


if __name__ == "__main__":
    main()
