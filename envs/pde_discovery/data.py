"""PDE Discovery rows (cod.md 9.7, ``get_pde_discovery_data.py``): seed-only training rows, stratified evaluation rows.

Training rows carry a distinct seed (even) and the training family with 1-2 terms; the pack seed picks the hidden
equation at runtime. Test rows (odd seeds) form the evaluation set: packs of 8 consecutive rows, pack k fixed to
evaluation template k mod 25 (an equal number of packs per template), each row carrying
``ground_truth_template_index``, ``pack_index`` and ``pde_environment_seed`` (the seed of its pack's first row), 1-3
terms. ``make_rows(n, ...)`` is a prefix of ``make_rows(n + k, ...)``; ``setting`` is accepted for the common
interface (``easy`` and ``hard`` are the same data).

    python -m cod_envs.pde_discovery.data --train-size 50000 --test-size 4000 --seed 42 --out DIR
"""

from __future__ import annotations

from typing import Any

from cod_envs.datagen import check_setting, data_main, distinct_row_seeds, split_bit
from cod_envs.pde_discovery.families import EVAL, TRAIN, disjointness_violations
from cod_envs.pde_discovery.prompts import TASK_DESCRIPTION

SETTINGS: tuple[str, ...] = ("easy", "hard")
EVAL_PACK_SIZE = 8
_SALT = 97


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "easy") -> list[dict[str, Any]]:
    """n rows of one split (see the module docstring)."""
    bit = split_bit(split)
    check_setting(setting, SETTINGS)
    if disjointness_violations(TRAIN, EVAL):
        raise ValueError("evaluation templates overlap the training family")
    seeds = distinct_row_seeds(n, seed, bit, _SALT)
    if split == "train":
        return [
            {"seed": s, "task": TASK_DESCRIPTION, "template_family": "physical_train", "max_reaction_terms": 2}
            for s in seeds
        ]
    rows = []
    for i, s in enumerate(seeds):
        pack = i // EVAL_PACK_SIZE
        rows.append(
            {
                "seed": s,
                "task": TASK_DESCRIPTION,
                "template_family": "physical_eval",
                "max_reaction_terms": 3,
                "ground_truth_template_index": pack % len(EVAL),
                "pack_index": pack,
                "pde_environment_seed": seeds[pack * EVAL_PACK_SIZE],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``--out``."""
    data_main(make_rows, __doc__, argv, "easy")


if __name__ == "__main__":
    main()
