"""Llama (Llama 3 / 3.1 / 3.3): the plain dense decoder; Llama 3.1-style RoPE scaling is a shape field."""

from __future__ import annotations

from cod_megatron.models.decoder_family import ModelFamily

LLAMA = ModelFamily.dense("llama", "Llama", attention_bias=False, template="llama3")
