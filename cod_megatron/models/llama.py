"""Llama (Llama 3 / 3.1 / 3.3): the plain dense decoder; Llama 3.1-style RoPE scaling is a shape field."""

from __future__ import annotations

from cod_megatron.models.decoder_family import DENSE_DECODER_LAYER_NAMES, ModelFamily

LLAMA = ModelFamily(
    arch="llama",
    hf_model_type="llama",
    hf_causal_lm="LlamaForCausalLM",
    hf_config_class="LlamaConfig",
    attention_bias=False,
    layer_names=DENSE_DECODER_LAYER_NAMES,
    template="llama3",
)
