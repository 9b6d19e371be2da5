"""Every results table in README and docs/ equals what ``scripts/results_tables.py`` makes from committed data."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

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


def test_a_number_edited_by_hand_is_caught_and_rewritten(tmp_path):
    rt = _script()
    for t in rt.TABLES:
        for rel in (t.document, t.data):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / rel, tmp_path / rel)
    shutil.copy(ROOT / "docs/credit_ablation/lr5e-4.csv", tmp_path / "docs/credit_ablation/lr5e-4.csv")
    readme = tmp_path / "README.md"
    good = readme.read_text()
    readme.write_text(
        good.replace("0.58 [0.22, 0.94] / 0.83 [0.42, 1.23] / 3 of 5", "0.68 [0.22, 0.94] / 0.83 [0.42, 1.23] / 3 of 5")
    )
    assert rt.check(tmp_path) and "0.68 [0.22, 0.94]" in rt.check(tmp_path)[0]
    rt.check(tmp_path, write=True)
    assert readme.read_text() == good and rt.check(tmp_path) == []


def test_a_table_without_its_markers_is_an_error(tmp_path):
    rt = _script()
    (tmp_path / "README.md").write_text("no tables here\n")
    try:
        rt.render("no tables here\n", rt.TABLES[0], tmp_path)
    except KeyError as e:
        assert "results:cod_effect" in str(e)
    else:
        raise AssertionError("a missing block must be an error")
