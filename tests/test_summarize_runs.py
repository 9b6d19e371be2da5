"""scripts/summarize_runs.py: per-run rows plus the across-seed spread of each variant (issue 19 item 3)."""

import csv
import importlib.util
import io
import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("summarize_runs", ROOT / "scripts" / "summarize_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def curve(gap: float, size: int) -> dict:
    return {"mean": [0.25] + [0.25 + gap] * (size - 1), "ci95": [], "n": 64, "gap": gap, "gap_ci95": [gap - 0.1, gap]}


def fake_run(root: Path, name: str, final_gap: float, train_gap: float) -> None:
    """A run directory as train.py writes it: two evaluations and 12 steps of metrics."""
    (root / name / "eval").mkdir(parents=True)
    for step, gap in ((0, 0.1), (120, final_gap)):
        report = {"step": step} | {
            f"{v}_s{n}": curve(gap if v == "cod" else 0.0, n) for v in ("cod", "hint_blind") for n in (4, 8)
        }
        (root / name / "eval" / f"step_{step}.json").write_text(json.dumps(report))
    rows = [
        {"step": s, "train/loss": 0.0, "rollout/gap": train_gap, "time/train_s": 1.0}
        | {f"rollout/reward_pos_{j}": 0.25 + (train_gap if j else 0.0) for j in range(4)}
        for s in range(1, 13)
    ]
    (root / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_seed_spread_and_csv(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    gaps = {"reward_to_go_seed1234": 0.45, "reward_to_go_seed1": 0.70, "reward_to_go_seed2": 0.78}
    for name, gap in gaps.items():
        fake_run(runs, name, gap, gap - 0.05)
    fake_run(runs, "outcome_seed1", 0.47, 0.44)  # a single seed: no spread row
    out = tmp_path / "docs" / "summary"
    monkeypatch.setattr(sys, "argv", ["summarize_runs.py", str(runs), "--out", str(out)])
    load_script().main()
    md = out.with_suffix(".md").read_text()
    mean, sd = statistics.mean(gaps.values()), statistics.stdev(gaps.values())
    spread_rows = [line for line in md.splitlines() if line.startswith("| reward_to_go |")]
    assert len(spread_rows) == 1 and "| outcome |" not in md
    cells = [c.strip() for c in spread_rows[0].strip("|").split("|")]
    assert cells[1] == "3"
    assert cells[2] == f"{mean:+.2f} ± {sd:.2f} [+0.45, +0.78]"
    table = list(csv.DictReader(io.StringIO(out.with_suffix(".csv").read_text())))
    assert {r["run"] for r in table} == set(gaps) | {"outcome_seed1"}
    row = next(r for r in table if r["run"] == "reward_to_go_seed1234")
    assert float(row["gap_s4"]) == pytest.approx(0.45) and float(row["train_gap_last10"]) == pytest.approx(0.40)
    assert json.loads(out.with_suffix(".json").read_text())[0]["run"] in table[0]["run"]
