"""Grid Navigation rows (cod.md 9.6): a row seed and the setting's parameters, nothing pack-specific.

The landscape and grid size come from the pack seed, so a row is only a seed (which fixes rounds, start and target
on whatever grid its pack draws) plus the setting. Train seeds are even and test seeds odd, so the splits are
disjoint for any sizes and generator seed; ``make_rows(n, ...)`` is a prefix of ``make_rows(n + k, ...)``.

    python -m cod_envs.grid_navigation.data --train-size 50000 --test-size 4000 --seed 42 --out DIR
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from cod_envs.datagen import check_setting, data_main, distinct_row_seeds, split_bit
from cod_envs.grid_navigation.env import SETTINGS

SETTING_ALIASES = {"easy": "train", "hard": "eval"}
"""The evaluation CLI's ``--setting easy|hard`` mapped onto this domain's train / eval settings."""
_SETTING_IDS = {name: i for i, name in enumerate(sorted(SETTINGS))}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "train") -> list[dict[str, Any]]:
    """n rows of one split and setting: distinct row seeds (parity = split) and the setting's parameters."""
    bit = split_bit(split)
    setting = SETTING_ALIASES.get(setting, setting)
    check_setting(setting, sorted(SETTINGS))
    params = asdict(SETTINGS[setting])
    seeds = distinct_row_seeds(n, seed, bit, _SETTING_IDS[setting])
    rows = [{"seed": s, "setting": setting, **params} for s in seeds]
    return rows


def main(argv: list[str] | None = None) -> None:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``--out``."""
    data_main(make_rows, __doc__, argv, "train", sorted(SETTINGS))


if __name__ == "__main__":
    main()
