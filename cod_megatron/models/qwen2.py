"""Qwen2 / Qwen2.5: the dense decoder with a bias on the fused q/k/v projection (same grouped layout as the weight)."""

from __future__ import annotations

from cod_megatron.models.decoder_family import ModelFamily

QWEN2 = ModelFamily.dense(
    "qwen2",
    "Qwen2",
    attention_bias=True,
    template="qwen3",
    extra_names={
        "self_attention.linear_qkv.bias": (
            "qkv",
            ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
        ),
    },
)
