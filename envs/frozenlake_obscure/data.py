"""FrozenLake-Obscure rows (cod.md 9.1): a seed, a map size and a frozen-tile probability per row; nothing
pack-specific.

Train seeds are even and test seeds odd, so the splits are disjoint for any sizes and any generator seed, and each
split's rows depend only on (seed, split, setting): ``make_rows(n, ...)`` is a prefix of ``make_rows(n + k, ...)``.

    python -m cod_envs.frozenlake_obscure.data --train-size 50000 --test-size 4000 --seed 42 --out DIR
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cod_envs.datagen import SEED_SPACE, check_setting, data_main, split_bit
from cod_envs.frozenlake_obscure.env import SETTINGS

P_RANGE = (0.6, 0.7)
_SETTING_IDS = {name: i for i, name in enumerate(sorted(SETTINGS))}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "easy") -> list[dict[str, Any]]:
    """n rows of one split and setting: distinct row seeds (parity = split), size in [min, max], p ~ U[0.6, 0.7]."""
    bit = split_bit(split)
    check_setting(setting, sorted(SETTINGS))
    cfg = SETTINGS[setting]
    rng = np.random.default_rng([seed, bit, _SETTING_IDS[setting]])
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    while len(rows) < n:
        k = int(rng.integers(SEED_SPACE))
        size = int(rng.integers(cfg.min_size, cfg.max_size + 1))
        p = float(rng.uniform(*P_RANGE))
        if k in seen:
            continue
        seen.add(k)
        rows.append(
            {
                "seed": 2 * k + bit,
                "size": size,
                "p": round(p, 6),
                "setting": setting,
                "env_max_steps": cfg.env_max_steps,
                "agent_max_steps": cfg.agent_max_steps,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``--out``."""
    data_main(make_rows, __doc__, argv, "easy", sorted(SETTINGS))


if __name__ == "__main__":
    main()
