"""The model's own tokenizer (``model.hf_path``): loaded once at start, checked, wrapped in a ChatRenderer.

A policy started from an HF checkpoint must play in the ids of its own vocabulary, through its own chat template,
and stop on the token its template closes a turn with; otherwise the engines (loaded from the same checkpoint) read
another vocabulary's ids. Everything that would make the run fail later, or train on garbage, is refused here as a
:class:`ConfigError` naming the field: a vocabulary larger than the model's embedding, no stop token, a chat
template that is missing or does not render. The end-of-turn token is read from the template itself (the first
added token after an assistant message's content: ``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3), because
``eos_token`` is not always it (Llama 3 base tokenizers name ``<|end_of_text|>``); ``eos_token`` is the fallback for
templates that end turns with plain text.
"""

from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from cod_megatron.cod.tokenization import ChatRenderer
from cod_megatron.config import ConfigError, ModelConfig
from cod_megatron.models.source import HubModel, ModelSource, model_source

_MARK = "cod-end-of-turn-probe"
_PROBE = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARK}]


def template_kwargs(tokenizer: PreTrainedTokenizerBase) -> dict[str, bool]:
    """``enable_thinking=False`` for templates with Qwen3's thinking switch (every CoD run answers without it)."""
    return {"enable_thinking": False} if "enable_thinking" in str(tokenizer.chat_template or "") else {}


def end_of_turn_token(tokenizer: PreTrainedTokenizerBase, kwargs: dict[str, bool]) -> str | None:
    """The added token the template writes right after an assistant message, else ``eos_token`` (None: neither)."""
    text = tokenizer.apply_chat_template(_PROBE, tokenize=False, **kwargs)
    if _MARK in text:
        after = tokenizer.encode(text[text.index(_MARK) + len(_MARK) :], add_special_tokens=False)
        first = tokenizer.convert_ids_to_tokens(after[0]) if after else None
        if first in tokenizer.added_tokens_encoder:
            return first
    return tokenizer.eos_token


def load_model_tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    """A local (or prepared packaged) directory without network access; a hub id from the HF cache or the hub (at
    start only)."""
    path = source.load_path()
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=source.offline)
    except (OSError, ValueError) as e:
        raise ConfigError("model.hf_path", f"cannot load a tokenizer from {path!r}: {e}") from e


def model_renderer(model: ModelConfig) -> ChatRenderer:
    """The renderer of a model with ``hf_path``, after the startup checks."""
    assert model.hf_path is not None, "model_renderer needs model.hf_path"
    tok = load_model_tokenizer(model_source(model.hf_path))
    if len(tok) > model.vocab_size:
        raise ConfigError(
            "model.vocab_size",
            f"{model.vocab_size} is smaller than the vocabulary of the tokenizer at {model.hf_path} ({len(tok)} "
            "tokens): its ids would index past the embedding",
        )
    if not tok.chat_template:
        raise ConfigError("model.hf_path", f"the tokenizer at {model.hf_path} has no chat template")
    kwargs = template_kwargs(tok)
    try:
        tok.apply_chat_template(_PROBE[:1], tokenize=False, add_generation_prompt=True, **kwargs)
        eot = end_of_turn_token(tok, kwargs)
    except Exception as e:  # jinja errors, raise_exception(...) in the template, missing variables
        raise ConfigError("model.hf_path", f"the chat template of {model.hf_path} does not render: {e}") from e
    eot_id = tok.convert_tokens_to_ids(eot) if eot is not None else None
    if eot_id is None or eot_id == tok.unk_token_id:
        raise ConfigError(
            "model.hf_path", f"the tokenizer at {model.hf_path} has no stop token (no end-of-turn token, no eos_token)"
        )
    return ChatRenderer(tok, chat_template_kwargs=kwargs, end_of_turn_token=eot)


def describe_model_tokenizer(model: ModelConfig) -> str:
    """One line for the dry run; a local (or packaged) directory is loaded and checked (cheap), a hub id is only
    named."""
    assert model.hf_path is not None, "describe_model_tokenizer needs model.hf_path"
    if isinstance(model_source(model.hf_path), HubModel):
        return f"{model.hf_path} (the model's own, loaded at start)"
    renderer = model_renderer(model)
    stop = renderer.tokenizer.convert_ids_to_tokens(renderer.end_of_turn_id)
    return f"{model.hf_path} (the model's own: {len(renderer.tokenizer)} tokens, stop {stop})"


def tokenizer_mismatch(source: ModelSource, other: ModelSource) -> str | None:
    """Why the tokenizers of two sources differ (vocabulary, special tokens, chat template), None if they agree:
    engines launched from ``other`` must read and write the ids of the trainer's vocabulary."""
    a, b = load_model_tokenizer(source), load_model_tokenizer(other)
    if a.get_vocab() != b.get_vocab():
        return f"vocabularies differ ({len(a)} vs {len(b)} tokens)"
    if a.all_special_tokens != b.all_special_tokens:
        return f"special tokens differ ({a.all_special_tokens} vs {b.all_special_tokens})"
    if a.chat_template != b.chat_template:
        return "chat templates differ"
    return None
