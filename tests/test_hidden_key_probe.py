"""scripts/hidden_key_probe.py: a scripted word model with known answers gives exactly those probabilities."""

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cod_envs.hidden_key.env import vocab

ROOT = Path(__file__).resolve().parents[1]
WORDS = list(vocab(4, 16))
IDS = {w: i for i, w in enumerate(WORDS)}


def load_script():
    spec = importlib.util.spec_from_file_location("hidden_key_probe", ROOT / "scripts" / "hidden_key_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CopyLastKey(torch.nn.Module):
    """Next word: <eos> after a key; else the last key in the prompt (the hint or the feedback's); else k2."""

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        keys = {IDS[f"k{i}"] for i in range(4)}
        logits = torch.full((*input_ids.shape, len(WORDS)), -1e4)
        for b, row in enumerate(input_ids.tolist()):
            seen = [t for t in row if t in keys]
            nxt = IDS["<eos>"] if row[-1] in keys else seen[-1] if seen else IDS["k2"]
            logits[b, -1, nxt] = 0.0
        return SimpleNamespace(logits=logits)


def test_probe_reads_off_a_scripted_policy():
    out = load_script().probe(CopyLastKey(), lambda s: [IDS[w] for w in s.split()], IDS["<eos>"], WORDS)
    assert out["solve_none_top_key"] == "k2" and out["solve_none_top_prob"] == pytest.approx(1.0)
    assert out["solve_none_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert out["follow"] == pytest.approx(1.0) and out["write_first"] == pytest.approx(1.0)
    assert out["write"] == pytest.approx(1.0) and out["write_second_top"]["<eos>"] == pytest.approx(1.0)
    assert out["write_first_by_key"] == [1.0] * 4
    assert out["uniform_entropy"] == pytest.approx(math.log(4))
