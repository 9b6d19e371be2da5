"""Reward-by-position plots: a PNG with matplotlib; without it (a bare GPU machine) a warning, not a failed run."""

import json
import subprocess
import sys

from cod_megatron.eval.plot import plot_training_positions
from tests.cli import ROOT


def _metrics(path):
    rows = [{"step": s, "rollout/reward_pos_0": 0.1 * s, "rollout/reward_pos_1": 0.2 * s} for s in (1, 2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_training_plot_is_a_png(tmp_path):
    out = plot_training_positions(_metrics(tmp_path / "metrics.jsonl"), tmp_path / "plot.png")
    assert out == tmp_path / "plot.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_plot_is_skipped_with_a_warning(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # what Python does for a package that is not installed
        "from cod_megatron.eval.plot import plot_training_positions\n"
        f"print(plot_training_positions({str(_metrics(tmp_path / 'metrics.jsonl'))!r}, {str(tmp_path / 'p.png')!r}))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "None" and "matplotlib is not installed" in r.stderr
    assert not (tmp_path / "p.png").exists()
