"""The tokenizer side of a run: the model's own tokenizer, else the vocabulary a word-level domain brings, else the
project's tiny tokenizer with a chat template. ``run_renderer`` builds it, ``describe_renderer`` names it for the
dry run without loading anything from a hub."""

from __future__ import annotations

from cod_envs import registry
from cod_megatron.cod.tokenization import WordRenderer
from cod_megatron.config import ConfigError, RunConfig
from cod_megatron.models.chat_templates import template_renderer
from cod_megatron.models.families import family as model_family
from cod_megatron.models.model_tokenizer import describe_model_tokenizer, model_renderer
from cod_megatron.models.tiny_tokenizer import build_tiny_tokenizer
from cod_megatron.rollout.pack_source import eval_suites
from cod_megatron.rollout.token_play import Renderer

SPECIAL_WORDS = 4
"""Every word vocabulary opens with the same special words (``<pad> <bos> <eos> <unk>``: pad id 0 for the engines)."""


def shared_vocabulary(domains: list[str]) -> tuple[str, ...] | None:
    """The word vocabulary of ``domains``: the first's words in order, then each next domain's new words (so a
    one-domain vocabulary is that domain's, ids unchanged). None when no domain brings one; a ValueError when a
    word-level domain meets a chat one or two open with different special words (their ids would disagree)."""
    hooks = {d: registry.load(d).word_vocabulary for d in domains}
    words = [v for v in hooks.values() if v is not None]
    if not words:
        return None
    if len(words) < len(hooks):
        chat = sorted(d for d, v in hooks.items() if v is None)
        raise ValueError(f"word-level domains cannot share a renderer with chat domains {chat}: one tokenizer per run")
    specials = {tuple(v[:SPECIAL_WORDS]) for v in words}
    if len(specials) > 1:
        raise ValueError(f"the domains' word vocabularies open with different special words: {sorted(specials)}")
    return tuple(dict.fromkeys(w for v in words for w in v))


def renderer_for(domains: str | list[str], family: str = "qwen3") -> Renderer:
    """The renderer a model without an HF checkpoint plays ``domains`` through (the library names no domain).

    Domains played by a word-level model bring their vocabularies (the ``word_vocabulary`` hook, e.g. HiddenKey's,
    cod.md 9.8), merged by :func:`shared_vocabulary` into one :class:`WordRenderer`; otherwise the project's tiny
    tokenizer with the family's chat template, for CPU runs and tests.
    """
    vocabulary = shared_vocabulary([domains] if isinstance(domains, str) else domains)
    if vocabulary is not None:
        return WordRenderer(vocabulary)
    return template_renderer(build_tiny_tokenizer(family), family)  # type: ignore[arg-type]


def vocabulary_domains(cfg: RunConfig) -> list[str]:
    """``env.vocabulary_domains``, else the training domains and then the evaluation suites' (cross-domain)."""
    default = [d.name for d in cfg.env.domains()] + [s.domain for s in eval_suites(cfg)]
    return cfg.env.vocabulary_domains or list(dict.fromkeys(default))


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
    vocabulary = run_vocabulary(cfg)
    if vocabulary is not None:
        return WordRenderer(vocabulary)
    return template_renderer(build_tiny_tokenizer(_family(cfg)), _family(cfg))  # type: ignore[arg-type]


def run_vocabulary(cfg: RunConfig) -> tuple[str, ...] | None:
    """The run's word vocabulary (None: not a word-level model), checked against the model: a ConfigError names
    ``env.vocabulary_domains`` for vocabularies that cannot be merged, ``model.vocab_size`` for one too small."""
    names = vocabulary_domains(cfg)
    try:
        vocabulary = shared_vocabulary(names)
    except ValueError as e:
        raise ConfigError("env.vocabulary_domains", str(e)) from None
    if vocabulary is not None and len(vocabulary) > cfg.model.vocab_size:
        raise ConfigError("model.vocab_size", f"{cfg.model.vocab_size} < the {len(vocabulary)} words of {names}")
    return vocabulary


def describe_renderer(cfg: RunConfig) -> str:
    """The tokenizer :func:`run_renderer` will use, in one line for the dry run. A hub id is only named (nothing is
    downloaded at config time); a local directory is loaded and checked, so a bad one fails the dry run."""
    if cfg.model.hf_path:
        return describe_model_tokenizer(cfg.model)
    try:
        vocabulary = run_vocabulary(cfg)
    except ConfigError as e:  # a dry run describes what the loop would refuse (tests/test_loop_limits.py)
        return f"none: the loop refuses it ({e})"
    if vocabulary is not None:
        names = " + ".join(vocabulary_domains(cfg))
        return f"{names}'s word vocabulary ({len(vocabulary)} words, one word one token)"
    return f"the project's tiny tokenizer with the {_family(cfg)} chat template"
