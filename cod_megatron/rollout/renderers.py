"""The tokenizer side of a domain: the vocabulary a word-level domain brings, else a chat template."""

from __future__ import annotations

from typing import Any

from cod_envs import registry
from cod_megatron.cod.tiny_tokenizer import build_tiny_tokenizer
from cod_megatron.cod.tokenization import ChatRenderer, WordRenderer
from cod_megatron.config import RunConfig


def renderer_for(domain: str, family: str = "qwen3") -> Any:
    """The renderer a policy plays ``domain`` through, from the registry's hooks (the library names no domain).

    Precedence: a policy started from an HF checkpoint (``model.hf_path``) will bring its own tokenizer, which
    arrives with the real-model work and is not chosen here yet; otherwise a domain played by a word-level model
    brings its vocabulary (the ``word_vocabulary`` hook, e.g. HiddenKey's, spec 9.8) and gets a
    :class:`WordRenderer` over it; otherwise the project's tiny tokenizer with the family's chat template, for CPU
    runs and tests.
    """
    vocabulary = registry.load(domain).word_vocabulary
    if vocabulary is not None:
        return WordRenderer(vocabulary)
    return ChatRenderer.for_family(build_tiny_tokenizer(family), family)  # type: ignore[arg-type]


def run_renderer(cfg: RunConfig) -> Any:
    """The one renderer of a run, built from its config: the model plays its training domain through it, in
    training and whenever its checkpoints are evaluated (on any domain). The chat-template family follows
    ``model.arch`` (Llama 3 for ``llama``, ChatML with Qwen3's thinking switch otherwise)."""
    return renderer_for(cfg.env.train_domains[0], family="llama3" if cfg.model.arch == "llama" else "qwen3")
