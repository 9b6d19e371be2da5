"""Learn2Ask rows: the dialogue JSONL loader (schema in the package docstring) and the synthetic-row generator.

Synthetic rows are ``{"seed": s, "synthetic": true}``; the environment materialises the dialogue from the pack's
hidden condition and the row seed (:func:`cod_envs.learn2ask.conditions.materialize`). Train seeds are even, test
seeds odd; ``make_rows(n, ...)`` is a prefix of ``make_rows(n + k, ...)``.

    python -m cod_envs.learn2ask.data --train-size 2000 --test-size 400 --seed 42 --out DIR
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cod_envs.datagen import check_setting, data_main, distinct_row_seeds, split_bit

SETTINGS: tuple[str, ...] = ("easy", "hard")
MAX_MESSAGES = 200
MAX_CONTENT_CHARS = 8_000
_SALT = 41


def make_rows(n: int, seed: int = 42, split: str = "train", setting: str = "easy") -> list[dict[str, Any]]:
    """n synthetic rows of one split (``easy`` and ``hard`` are the same data)."""
    bit = split_bit(split)
    check_setting(setting, SETTINGS)
    return [{"seed": s, "synthetic": True} for s in distinct_row_seeds(n, seed, bit, _SALT)]


def validate_row(row: object) -> dict[str, Any]:
    """A dialogue row in the documented schema (raises ``ValueError`` naming the problem); long texts are cut."""
    if not isinstance(row, dict):
        raise ValueError("a row must be a JSON object")
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise ValueError(f"'messages' must be a non-empty list of at most {MAX_MESSAGES} messages")
    clean = []
    for m in messages:
        if (
            not isinstance(m, dict)
            or m.get("role") not in ("user", "assistant")
            or not isinstance(m.get("content"), str)
        ):
            raise ValueError("each message needs role 'user' or 'assistant' and a string 'content'")
        clean.append({"role": m["role"], "content": m["content"][:MAX_CONTENT_CHARS]})
    if row.get("decision_truth") not in ("continue", "stop"):
        raise ValueError("'decision_truth' must be 'continue' or 'stop'")
    info = row.get("info_truth", "None")
    if not isinstance(info, str):
        raise ValueError("'info_truth' must be a string")
    return {
        "cid": str(row.get("cid", "")),
        "messages": clean,
        "decision_truth": row["decision_truth"],
        "info_truth": info[:MAX_CONTENT_CHARS],
    }


def load_dialogues(path: str | Path) -> list[dict[str, Any]]:
    """Rows from a dialogue JSONL file; a bad line raises ``ValueError`` with its line number."""
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for k, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(validate_row(json.loads(line)))
            except (ValueError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}:{k}: {exc}") from None
    return rows


def main(argv: list[str] | None = None) -> None:
    """Write synthetic ``train.jsonl`` and ``test.jsonl`` under ``--out``."""
    data_main(make_rows, __doc__, argv, "easy")


if __name__ == "__main__":
    main()
