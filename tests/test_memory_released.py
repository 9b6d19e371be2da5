"""``run_parts.memory_released``: colocated engines come back after the train step, also when it raises, and the
trainer's cached blocks go back to the driver before they do."""

from __future__ import annotations

import pytest
import torch

from cod_megatron.loop import run_parts


class _Engine:
    def __init__(self, name: str, calls: list[str]):
        self.name, self.calls = name, calls

    def release_memory(self) -> None:
        self.calls.append(f"release {self.name}")

    def resume_memory(self) -> None:
        self.calls.append(f"resume {self.name}")


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    return calls


def test_engines_resume_after_the_step_with_the_cache_emptied_first(calls):
    with run_parts.memory_released([_Engine("a", calls), _Engine("b", calls)]):
        calls.append("step")
    assert calls == ["release a", "release b", "step", "empty_cache", "resume a", "resume b"]


def test_engines_resume_when_the_step_raises(calls):
    with pytest.raises(RuntimeError, match="boom"):
        with run_parts.memory_released([_Engine("a", calls)]):
            raise RuntimeError("boom")
    assert calls == ["release a", "empty_cache", "resume a"]


def test_no_engines_no_cache_flush(calls):
    with run_parts.memory_released([]):
        calls.append("step")
    assert calls == ["step"]
