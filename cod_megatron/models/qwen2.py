"""Qwen2 / Qwen2.5: the dense decoder with a bias on the fused q/k/v projection (same grouped layout as the weight)."""

from __future__ import annotations

from cod_megatron.models.decoder_family import DENSE_DECODER_LAYER_NAMES, ModelFamily

QWEN2 = ModelFamily(
    arch="qwen2",
    hf_model_type="qwen2",
    hf_causal_lm="Qwen2ForCausalLM",
    hf_config_class="Qwen2Config",
    attention_bias=True,
    layer_names={
        **DENSE_DECODER_LAYER_NAMES,
        "self_attention.linear_qkv.bias": (
            "qkv",
            ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
        ),
    },
    template="qwen3",
)
