"""scripts/code_lock_probe.py: a scripted word model with known answers gives exactly those probabilities."""

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cod_envs.code_lock.env import vocab

ROOT = Path(__file__).resolve().parents[1]
WORDS = list(vocab(2, 4))
IDS = {w: i for i, w in enumerate(WORDS)}


def load_script():
    sys.path.insert(0, str(ROOT / "scripts"))  # it imports hidden_key_probe's loader, as when run from there
    try:
        spec = importlib.util.spec_from_file_location("code_lock_probe", ROOT / "scripts" / "code_lock_probe.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module


def after(words: list[str], *marker: str) -> list[str]:
    """The words after the last occurrence of ``marker``."""
    n = len(marker)
    starts = [i for i in range(len(words) - n + 1) if tuple(words[i : i + n]) == marker]
    return words[starts[-1] + n :]


class Scripted(torch.nn.Module):
    """Position 0 answers <eos> (a format error); s1 answers b0; a combination copies the hint; an update writes
    only the revealed word (it drops the previous hint's): the probe must read exactly that."""

    def next_word(self, words: list[str]) -> str:
        if words[1] == "update":
            return after(words, "was")[0] if not after(words, "new", "hint", ":") else "<eos>"
        hint, task = after(words, "hint", ":")[0:2], after(words, "task", ":")[0]
        if task == "s0":
            return "<eos>"
        if task == "s1":
            return "b0"
        emitted = after(words, "answer", ":")
        return hint[len(emitted)] if len(emitted) < 2 else "<eos>"

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        logits = torch.full((*input_ids.shape, len(WORDS)), -1e4)
        for b, row in enumerate(input_ids.tolist()):
            logits[b, -1, IDS[self.next_word([WORDS[t] for t in row])]] = 0.0
        return SimpleNamespace(logits=logits)


def test_probe_reads_off_a_scripted_policy():
    out = load_script().probe(Scripted(), lambda s: [IDS[w] for w in s.split()], WORDS)
    assert out["reveal_valid_pos0"] == pytest.approx(0.0, abs=1e-6) and out["reveal_top_pos0"]["<eos>"] == 1.0
    assert out["reveal_valid_pos1"] == pytest.approx(1.0)
    assert out["write_a"] == pytest.approx(1.0) and out["write_b_first"] == pytest.approx(1.0)
    assert out["keep_add"] == pytest.approx(0.0, abs=1e-6)  # it never keeps the a word
    assert out["write_b"] == pytest.approx(1.0)
    assert out["follow"] == pytest.approx(1.0) and out["follow_b"] == pytest.approx(1.0)
