"""The project's decoder ``ModuleSpec``: Transformer Engine layers where they can run, else local layers with the
project's packed attention and sequence-parallel-aware RMSNorm.

This is the one place where megatron-core's layers are chosen; the model builder never names a layer class.
"""

from __future__ import annotations

from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules
from megatron.core.transformer.transformer_config import TransformerConfig

from cod_megatron.infra import capabilities
from cod_megatron.policy.norm import QKRMSNorm, RMSNorm
from cod_megatron.policy.packed_attention import PackedDotProductAttention


def decoder_block_spec(
    config: TransformerConfig, vp_stage: int | None = None, use_te: bool | None = None
) -> TransformerBlockSubmodules:
    """The layers of this pipeline stage (and virtual stage); ``use_te=None``: Transformer Engine where it can run
    the model's dtype (:func:`capabilities.transformer_engine_layers`)."""
    if use_te is None:
        use_te, _ = capabilities.transformer_engine_layers(str(config.params_dtype).removeprefix("torch."))
    block = get_gpt_decoder_block_spec(
        config, use_transformer_engine=use_te, normalization="RMSNorm", vp_stage=vp_stage
    )
    if use_te:
        return block
    for layer in block.layer_specs:
        subs = layer.submodules
        subs.input_layernorm = subs.pre_mlp_layernorm = RMSNorm
        attn = subs.self_attention.submodules
        attn.core_attention = PackedDotProductAttention
        if config.qk_layernorm:
            attn.q_layernorm = attn.k_layernorm = QKRMSNorm
        else:
            attn.q_layernorm = attn.k_layernorm = IdentityOp
    block.layer_norm = RMSNorm
    return block
