"""``scripts/same_metrics.py``: the check behind "behaviour unchanged" claims ignores only wall-clock fields."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from same_metrics import differences  # noqa: E402


def _run(root: Path, rows: list[dict], packs: list[dict]) -> Path:
    (root / "eval").mkdir(parents=True)
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "eval" / "step_0_packs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in packs))
    return root


def test_only_clock_fields_may_differ(tmp_path):
    rows = [{"step": 1, "train/loss": 0.25, "time/train_s": 3.0, "perf/train_tokens_per_s": 10.0}]
    packs = [{"pack": 0, "rewards": [0.0, 1.0]}]
    a = _run(tmp_path / "a", rows, packs)
    b = _run(tmp_path / "b", [{**rows[0], "time/train_s": 9.0, "perf/train_tokens_per_s": 1.0}], packs)
    assert differences(a, b) == []
    c = _run(tmp_path / "c", [{**rows[0], "train/loss": 0.25000001}], packs)
    assert differences(a, c) == ["step 1: train/loss 0.25 vs 0.25000001"]
    d = _run(tmp_path / "d", rows, [{"pack": 0, "rewards": [0.0, 0.0]}])
    assert differences(a, d) == ["eval/step_0_packs.jsonl differs"]
    e = _run(tmp_path / "e", rows + rows, packs)
    assert differences(a, e) == ["metrics.jsonl: 1 rows vs 2"]
