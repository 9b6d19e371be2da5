"""CodeLock rows: ``python -m cod_envs.code_lock.data --train-size N --test-size M --seed S --out DIR``.

A row is a task seed plus the domain options, so a data file describes itself (the code comes from the pack seed;
a task's position decides whether it reveals a word or asks for the code). Train and test seeds are disjoint by
construction (their parity is the split).
"""

from __future__ import annotations

import sys
from typing import Any

from cod_envs.code_lock.env import CodeLockOptions
from cod_envs.datagen import check_setting, data_main, distinct_row_seeds, split_bit

SETTINGS: dict[str, dict[str, Any]] = {"easy": {}, "hard": {"chance_reward": 4.0}}
"""``easy``: the defaults (F = 2, W = 4, two guesses, chance reward 2, per-word scoring); ``hard``: chance reward 4,
twice the chance noise in the lifecycle total for the same signal (the names are the ones ``env.setting`` takes).
Other values (``chance_reward=0``: no chance noise; ``scoring="all"``) are ``make_rows`` keyword options."""


def make_rows(n: int, seed: int, split: str, setting: str = "easy", **options: Any) -> list[dict[str, Any]]:
    """``n`` rows ``{"seed": int, **options}`` of ``split``; ``options`` override the setting's values."""
    check_setting(setting, tuple(SETTINGS))
    if n < 0:
        raise ValueError(f"make_rows: n must be >= 0, got {n}")
    opts = CodeLockOptions(**(SETTINGS[setting] | options))
    fields = {k: getattr(opts, k) for k in CodeLockOptions.FIELDS}
    salt = tuple(SETTINGS).index(setting)
    return [{"seed": s, **fields} for s in distinct_row_seeds(n, seed, split_bit(split), salt)]


def main(argv: list[str] | None = None) -> int:
    """CLI entry: writes ``train.jsonl`` and ``test.jsonl`` under ``--out``."""
    data_main(make_rows, __doc__, argv, "easy", tuple(SETTINGS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
