"""The tokenizer side of a domain: word-level for HiddenKey, a chat template for the real domains."""

from __future__ import annotations

from typing import Any

from cod_megatron.cod.tiny_tokenizer import build_tiny_tokenizer
from cod_megatron.cod.tokenization import ChatRenderer, WordRenderer


def renderer_for(domain: str, family: str = "qwen3") -> Any:
    """HiddenKey's own vocabulary (spec 9.8), else the project's tiny tokenizer with the family's chat template.

    A policy started from an HF checkpoint brings its own tokenizer; the tiny one serves CPU runs and tests.
    """
    if domain == "hidden_key":
        from cod_envs.hidden_key import VOCAB

        return WordRenderer(VOCAB)
    return ChatRenderer.for_family(build_tiny_tokenizer(family), family)  # type: ignore[arg-type]
