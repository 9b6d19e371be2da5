"""Qwen3 (dense): the dense decoder with a per-head RMSNorm on queries and keys (QK-norm), replicated over TP."""

from __future__ import annotations

from cod_megatron.models.decoder_family import DENSE_DECODER_LAYER_NAMES, ModelFamily

QWEN3 = ModelFamily(
    arch="qwen3",
    hf_model_type="qwen3",
    hf_causal_lm="Qwen3ForCausalLM",
    hf_config_class="Qwen3Config",
    attention_bias=False,
    layer_names={
        **DENSE_DECODER_LAYER_NAMES,
        "self_attention.q_layernorm.weight": ("replicated", ("self_attn.q_norm.weight",)),
        "self_attention.k_layernorm.weight": ("replicated", ("self_attn.k_norm.weight",)),
    },
    template="qwen3",
)
