"""Each chat-template family's rules for the token-in/token-out renderer: its template switches and the token that
closes an assistant turn (the engine's stop).

A real checkpoint's rules are read from its own template at start (:mod:`cod_megatron.models.model_tokenizer`);
these are the fixed rules of the two families the tiny tokenizer writes (:mod:`cod_megatron.models.tiny_tokenizer`).
"""

from __future__ import annotations

from cod_megatron.cod.tokenization import ChatRenderer, ChatTokenizer
from cod_megatron.models.decoder_family import TemplateFamily


def template_renderer(
    tokenizer: ChatTokenizer, template: TemplateFamily, *, enable_thinking: bool = False
) -> ChatRenderer:
    """Renderer for a Qwen3-style (ChatML, thinking off by default, as in every CoD config) or Llama 3 tokenizer."""
    if template == "qwen3":
        return ChatRenderer(
            tokenizer, chat_template_kwargs={"enable_thinking": enable_thinking}, end_of_turn_token="<|im_end|>"
        )
    if template == "llama3":
        return ChatRenderer(tokenizer, end_of_turn_token="<|eot_id|>")
    raise ValueError(f"unknown chat-template family {template!r}; expected 'qwen3' or 'llama3'")
