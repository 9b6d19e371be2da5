"""Terminal rows (cod.md 9.3): distinct row seeds plus the setting, with the task type recorded as metadata.

Train seeds are even and test seeds odd, so the splits are disjoint for any sizes and generator seed, and
``make_rows(n, ...)`` is a prefix of ``make_rows(n + k, ...)``. ``setting`` is ``default`` (everything from the row
seed, as in the reference) or ``per_pack`` (local OS, remote host and user from the pack seed); the evaluation CLI's
``easy`` / ``hard`` mean ``default``.

    python -m cod_envs.terminal.data --train-size 50000 --test-size 4000 --seed 42 --out DIR [--setting per_pack]
"""

from __future__ import annotations

from typing import Any

from cod_envs.datagen import check_setting, data_main, distinct_row_seeds, split_bit
from cod_envs.terminal.env import AGENT_MAX_STEPS, SETTINGS
from cod_envs.terminal.tasks import COMPOSITE_RATIO, generate_task

SETTING_ALIASES = {"easy": "default", "hard": "default"}
_SETTING_IDS = {name: i for i, name in enumerate(SETTINGS)}


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "default") -> list[dict[str, Any]]:
    """n rows of one split and setting: distinct seeds (parity = split), budget, composite ratio, task type."""
    bit = split_bit(split)
    setting = SETTING_ALIASES.get(setting, setting)
    check_setting(setting, list(SETTINGS))
    seeds = distinct_row_seeds(n, seed, bit, _SETTING_IDS[setting])
    return [
        {
            "seed": s,
            "setting": setting,
            "agent_max_steps": AGENT_MAX_STEPS,
            "composite_ratio": COMPOSITE_RATIO,
            "task_type": generate_task(s, COMPOSITE_RATIO).task_type,
        }
        for s in seeds
    ]


def main(argv: list[str] | None = None) -> None:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``--out``."""
    data_main(make_rows, __doc__, argv, "default", list(SETTINGS))


if __name__ == "__main__":
    main()
