"""The tokenizer side of a run: the model's own tokenizer, else the vocabulary a word-level domain brings, else the
project's tiny tokenizer with a chat template. ``run_renderer`` builds it, ``describe_renderer`` names it for the
dry run without loading anything from a hub."""

from __future__ import annotations

from cod_envs import registry
from cod_megatron.cod.tokenization import WordRenderer
from cod_megatron.config import RunConfig
from cod_megatron.models.chat_templates import template_renderer
from cod_megatron.models.families import family as model_family
from cod_megatron.models.model_tokenizer import describe_model_tokenizer, model_renderer
from cod_megatron.models.tiny_tokenizer import build_tiny_tokenizer
from cod_megatron.rollout.token_play import Renderer


def renderer_for(domain: str, family: str = "qwen3") -> Renderer:
    """The renderer a model without an HF checkpoint plays ``domain`` through (the library names no domain).

    A domain played by a word-level model brings its vocabulary (the ``word_vocabulary`` hook, e.g. HiddenKey's,
    cod.md 9.8) and gets a :class:`WordRenderer` over it; otherwise the project's tiny tokenizer with the family's chat
    template, for CPU runs and tests.
    """
    vocabulary = registry.load(domain).word_vocabulary
    if vocabulary is not None:
        return WordRenderer(vocabulary)
    return template_renderer(build_tiny_tokenizer(family), family)  # type: ignore[arg-type]


def _family(cfg: RunConfig) -> str:
    """The tiny tokenizer's chat-template family for ``model.arch`` (the model family's: Llama 3 for ``llama``, Qwen3's
    ChatML for the Qwen families)."""
    return model_family(cfg.model.arch).template


def run_renderer(cfg: RunConfig) -> Renderer:
    """The one renderer of a run, built from its config: the model plays its training domain through it, in
    training and whenever its checkpoints are evaluated (on any domain).

    Precedence: (1) ``model.hf_path`` set: the model's own tokenizer, chat template and end-of-turn stop, checked at
    start (a ConfigError names ``model.vocab_size`` or ``model.hf_path``); it wins over any domain hook, since the
    engines load the same checkpoint and speak its vocabulary. (2) The training domain's word-vocabulary hook.
    (3) The tiny tokenizer with the chat-template family of ``model.arch``.
    """
    if cfg.model.hf_path:
        return model_renderer(cfg.model)
    return renderer_for(cfg.env.train_domains[0], family=_family(cfg))


def describe_renderer(cfg: RunConfig) -> str:
    """The tokenizer :func:`run_renderer` will use, in one line for the dry run. A hub id is only named (nothing is
    downloaded at config time); a local directory is loaded and checked, so a bad one fails the dry run."""
    if cfg.model.hf_path:
        return describe_model_tokenizer(cfg.model)
    domain = cfg.env.train_domains[0]
    vocabulary = registry.load(domain).word_vocabulary
    if vocabulary is not None:
        return f"{domain}'s word vocabulary ({len(vocabulary)} words, one word one token)"
    return f"the project's tiny tokenizer with the {_family(cfg)} chat template"
