"""What one model family declares (:class:`ModelFamily`) and the per-layer names every dense decoder shares.

The families are plain values (one module each); code that differs by family asks the family, never compares
``model.arch`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

TemplateFamily = Literal["qwen3", "llama3"]
"""Chat-template families the project's tiny tokenizer writes (:mod:`cod_megatron.models.chat_templates`)."""

LayerNames = Mapping[str, tuple[str, tuple[str, ...]]]
"""Megatron parameter name inside ``decoder.layers.<i>.`` -> (layout kind, HF names inside ``model.layers.<i>.``);
the kinds are those of :class:`cod_megatron.models.hf_names.HFTarget`."""

DENSE_DECODER_LAYER_NAMES: LayerNames = {
    "input_layernorm.weight": ("replicated", ("input_layernorm.weight",)),
    "self_attention.linear_qkv.layer_norm_weight": ("replicated", ("input_layernorm.weight",)),  # TE fused norm
    "self_attention.linear_qkv.weight": (
        "qkv",
        ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    ),
    "self_attention.linear_proj.weight": ("row", ("self_attn.o_proj.weight",)),
    "pre_mlp_layernorm.weight": ("replicated", ("post_attention_layernorm.weight",)),
    "mlp.linear_fc1.layer_norm_weight": ("replicated", ("post_attention_layernorm.weight",)),  # TE fused norm
    "mlp.linear_fc1.weight": ("fc1", ("mlp.gate_proj.weight", "mlp.up_proj.weight")),
    "mlp.linear_fc2.weight": ("row", ("mlp.down_proj.weight",)),
}
"""Llama-style decoder layer (RMSNorm, GQA, SwiGLU, no biases): local-spec names and Transformer Engine's
fused-norm names both map, so CPU tests and the GPU (TE) trainer share one map."""


@dataclass(frozen=True)
class ModelFamily:
    """One decoder family: how it appears in HF checkpoints and what its layers hold."""

    arch: str
    """``model.arch`` (:class:`cod_megatron.config.ModelConfig`)."""
    hf_model_type: str
    """``model_type`` in an HF ``config.json``."""
    hf_causal_lm: str
    """The transformers model class (``architectures`` in config.json)."""
    hf_config_class: str
    """The transformers config class (built lazily by :func:`cod_megatron.models.hf_config.hf_config_from_model`)."""
    attention_bias: bool
    """Whether the family's q/k/v projections carry a bias (an HF ``attention_bias`` elsewhere is refused, since
    transformers then also adds an o_proj bias that megatron's config cannot express)."""
    qk_layernorm: bool
    """Whether the family normalises queries and keys per head (RMSNorm, replicated over TP) before attention."""
    layer_names: LayerNames
    """Its Megatron <-> HF per-layer names (:data:`DENSE_DECODER_LAYER_NAMES` plus the family's own)."""
    template: TemplateFamily
    """Chat-template family of the tiny tokenizer a tiny random model of this family plays through."""
    hf_vision_language: str | None = None
    """``model_type`` of the family's vision-language checkpoints (shapes under ``text_config``, the decoder under
    ``model.language_model.``, a ``model.visual.`` tower carried unchanged), if it has them."""
    hybrid: bool = False
    """Qwen3.5-style: Gated DeltaNet layers between full-attention layers that carry a sigmoid output gate,
    zero-centred RMSNorm everywhere (``model.full_attention_interval`` sets the pattern)."""

    def megatron_attention(self) -> dict[str, bool]:
        """The megatron-core ``TransformerConfig`` fields by which this family's attention differs from Llama's; the
        layer spec (:func:`cod_megatron.policy.spec.decoder_block_spec`) puts the q/k norm layers where
        ``qk_layernorm`` asks for them."""
        fields = {"add_qkv_bias": self.attention_bias, "qk_layernorm": self.qk_layernorm}
        if self.hybrid:
            fields |= {"attention_output_gate": True, "layernorm_zero_centered_gamma": True}
        return fields

    @classmethod
    def dense(
        cls,
        arch: str,
        hf_prefix: str,
        *,
        attention_bias: bool,
        template: TemplateFamily,
        qk_layernorm: bool = False,
        extra_names: LayerNames | None = None,
    ) -> ModelFamily:
        """A dense decoder whose HF names follow transformers' pattern (``model_type`` = ``arch``,
        ``<prefix>ForCausalLM``, ``<prefix>Config``), with its layer names beyond :data:`DENSE_DECODER_LAYER_NAMES`."""
        return cls(
            arch=arch,
            hf_model_type=arch,
            hf_causal_lm=f"{hf_prefix}ForCausalLM",
            hf_config_class=f"{hf_prefix}Config",
            attention_bias=attention_bias,
            qk_layernorm=qk_layernorm,
            layer_names={**DENSE_DECODER_LAYER_NAMES, **(extra_names or {})},
            template=template,
        )
