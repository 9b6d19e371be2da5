"""The project's layer ``ModuleSpec``: Transformer Engine layers when importable, else local layers + packed attention.

This is the one place where megatron-core's layers are chosen; the model builder never names a layer class.
"""

from __future__ import annotations

from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_submodules
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_layer import TransformerLayer

from cod_megatron import capabilities
from cod_megatron.config import ModelConfig
from cod_megatron.policy.packed_attention import PackedDotProductAttention


def layer_spec(model: ModelConfig, use_te: bool | None = None) -> ModuleSpec:
    """Decoder layer spec for ``model``; ``use_te=None`` picks TE exactly when :func:`capabilities.has` says so."""
    if use_te is None:
        use_te = capabilities.has("te")
    if use_te:
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        return get_gpt_layer_with_transformer_engine_spec(qk_layernorm=model.qk_layernorm)
    subs = get_gpt_layer_local_submodules(qk_layernorm=model.qk_layernorm, normalization="RMSNorm")
    subs.self_attention.submodules.core_attention = PackedDotProductAttention
    return ModuleSpec(module=TransformerLayer, submodules=subs)
