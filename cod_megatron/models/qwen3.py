"""Qwen3 (dense): the dense decoder with a per-head RMSNorm on queries and keys (QK-norm), replicated over TP."""

from __future__ import annotations

from cod_megatron.models.decoder_family import ModelFamily

QWEN3 = ModelFamily.dense(
    "qwen3",
    "Qwen3",
    attention_bias=False,
    template="qwen3",
    qk_layernorm=True,
    extra_names={
        "self_attention.q_layernorm.weight": ("replicated", ("self_attn.q_norm.weight",)),
        "self_attention.k_layernorm.weight": ("replicated", ("self_attn.k_norm.weight",)),
    },
)
