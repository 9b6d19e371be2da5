"""Every results table in README and docs/ equals what ``scripts/results_tables.py`` makes from committed data."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("results_tables", ROOT / "scripts" / "results_tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_committed_tables_equal_their_data():
    diffs = _script().check()
    assert not diffs, "stale results tables (python scripts/results_tables.py --write):\n" + "\n".join(diffs)


def _copy_tables(rt, root: Path) -> None:
    """Every table's document and data files under ``root``."""
    for t in rt.TABLES:
        for rel in (t.document, t.data, *t.also):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / rel, root / rel)


@pytest.mark.parametrize(
    ("document", "good", "bad"),
    [
        (
            "README.md",
            "0.58 [0.22, 0.94] / 0.83 [0.42, 1.23] / 3 of 5",
            "0.68 [0.22, 0.94] / 0.83 [0.42, 1.23] / 3 of 5",
        ),
        ("docs/credit_domain.md", "| 0.98 / 0.98 / **0.01** / **0.01** |", "| 0.98 / 0.98 / **0.02** / **0.01** |"),
        ("docs/robustness.md", "| rtg_seed1234/step_80 | 0.020 |", "| rtg_seed1234/step_80 | 0.021 |"),
        ("docs/robustness.md", "| reward_to_go_seed1 | 101-120 | +0.64 |", "| reward_to_go_seed1 | 101-120 | +0.65 |"),
        (
            "docs/credit_ablation/lr5e-4.md",
            "| reward_to_go_seed3 | 120 | 1.55 (120)",
            "| reward_to_go_seed3 | 120 | 1.56 (120)",
        ),
    ],
)
def test_a_number_edited_by_hand_is_caught_and_rewritten(tmp_path, document, good, bad):
    rt = _script()
    _copy_tables(rt, tmp_path)
    doc = tmp_path / document
    committed = doc.read_text()
    assert committed.count(good) == 1
    doc.write_text(committed.replace(good, bad))
    diffs = rt.check(tmp_path)
    assert len(diffs) == 1 and bad in diffs[0] and good in diffs[0]
    rt.check(tmp_path, write=True)
    assert doc.read_text() == committed and rt.check(tmp_path) == []


def test_a_table_without_its_markers_is_an_error(tmp_path):
    rt = _script()
    (tmp_path / "README.md").write_text("no tables here\n")
    try:
        rt.render("no tables here\n", rt.TABLES[0], tmp_path)
    except KeyError as e:
        assert "results:cod_effect" in str(e)
    else:
        raise AssertionError("a missing block must be an error")
