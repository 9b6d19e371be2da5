"""Qwen3.5 / Qwen3.6 (dense): the hybrid decoder. Three of every four layers are Gated DeltaNet (HF ``linear_attn``),
the fourth full attention (HF ``self_attn``) with QK-norm, partial RoPE and a sigmoid output gate; every norm is
zero-centred (the stored weight is ``scale - 1``), except GDN's gated output norm, which HF stores as the scale.

Megatron side: the output gate sits inside ``linear_qkv`` (layout ``qkv_gated``); GDN's ``in_proj`` fuses HF's four
input projections (``gdn_in``); ``out_norm`` follows megatron's zero-centred convention (``scale_minus_one``), so a
checkpoint loads into megatron's own GatedDeltaNet as well.

The published checkpoints are vision-language (``Qwen3_5ForConditionalGeneration``, ``model_type`` ``qwen3_5``): the
decoder is read from ``model.language_model.*`` (``model.hf_weight_prefix``) and trained; the vision tower
``model.visual.*`` is left out of the policy and copied unchanged into an export (``save_hf(carry_from=...)``).
"""

from __future__ import annotations

from cod_megatron.models.decoder_family import DENSE_DECODER_LAYER_NAMES, ModelFamily

_GDN = "linear_attn."
QWEN3_5_LAYER_NAMES = {
    **DENSE_DECODER_LAYER_NAMES,
    "self_attention.linear_qkv.weight": (
        "qkv_gated",
        ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    ),
    "self_attention.q_layernorm.weight": ("replicated", ("self_attn.q_norm.weight",)),
    "self_attention.k_layernorm.weight": ("replicated", ("self_attn.k_norm.weight",)),
    "self_attention.in_proj.weight": (
        "gdn_in",
        tuple(_GDN + n for n in ("in_proj_qkv.weight", "in_proj_z.weight", "in_proj_b.weight", "in_proj_a.weight")),
    ),
    "self_attention.in_proj.layer_norm_weight": ("replicated", ("input_layernorm.weight",)),  # TE fused norm
    "self_attention.conv1d.weight": ("gdn_conv", (_GDN + "conv1d.weight",)),
    "self_attention.dt_bias": ("rows", (_GDN + "dt_bias",)),
    "self_attention.A_log": ("rows", (_GDN + "A_log",)),
    "self_attention.out_norm.weight": ("scale_minus_one", (_GDN + "norm.weight",)),
    "self_attention.out_proj.weight": ("row", (_GDN + "out_proj.weight",)),
}
"""Both layer kinds in one map: their megatron names differ (``linear_qkv`` vs ``in_proj``), so a parameter's name
says which HF layer kind it belongs to."""

QWEN3_5 = ModelFamily(
    arch="qwen3_5",
    hf_model_type="qwen3_5_text",
    hf_causal_lm="Qwen3_5ForCausalLM",
    hf_config_class="Qwen3_5TextConfig",
    attention_bias=False,
    qk_layernorm=True,
    layer_names=QWEN3_5_LAYER_NAMES,
    template="qwen3",
    hf_vision_language="qwen3_5",
    hybrid=True,
)
