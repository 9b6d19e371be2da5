"""The project's decoder ``ModuleSpec``: Transformer Engine layers where they can run, else local layers with the
project's packed attention and sequence-parallel-aware RMSNorm; hybrid models (Qwen3.5) get Gated DeltaNet layers.

This is the one place where megatron-core's layers are chosen; the model builder never names a layer class.
"""

from __future__ import annotations

import copy

from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec, get_gpt_layer_local_spec
from megatron.core.ssm.gated_delta_net import GatedDeltaNetSubmodules
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import get_transformer_layer_offset

from cod_megatron.infra import capabilities
from cod_megatron.policy.gated_delta_net import PackedGatedDeltaNet
from cod_megatron.policy.norm import QKRMSNorm, RMSNorm
from cod_megatron.policy.packed_attention import PackedDotProductAttention


def decoder_block_spec(
    config: TransformerConfig, vp_stage: int | None = None, use_te: bool | None = None
) -> TransformerBlockSubmodules:
    """The layers of this pipeline stage (and virtual stage); ``use_te=None``: Transformer Engine where it can run
    the model's dtype (:func:`capabilities.transformer_engine_layers`). Hybrid models always take the local layers
    (a TE hybrid spec is not written yet)."""
    if config.experimental_attention_variant == "gated_delta_net":
        return hybrid_block_spec(config, vp_stage)
    if use_te is None:
        use_te, _ = capabilities.transformer_engine_layers(str(config.params_dtype).removeprefix("torch."))
    block = get_gpt_decoder_block_spec(
        config, use_transformer_engine=use_te, normalization="RMSNorm", vp_stage=vp_stage
    )
    if use_te:
        return block
    for layer in block.layer_specs:
        _use_local_layers(layer, config)
    block.layer_norm = RMSNorm
    return block


def _use_local_layers(layer: ModuleSpec, config: TransformerConfig) -> None:
    """The project's norms and packed attention in a local-spec layer (in place)."""
    subs = layer.submodules
    subs.input_layernorm = subs.pre_mlp_layernorm = RMSNorm
    attn = subs.self_attention.submodules
    attn.core_attention = PackedDotProductAttention
    attn.q_layernorm = attn.k_layernorm = QKRMSNorm if config.qk_layernorm else IdentityOp


def hybrid_block_spec(config: TransformerConfig, vp_stage: int | None = None) -> TransformerBlockSubmodules:
    """Qwen3.5's stack: layer ``i`` is full attention when ``(i + 1) % linear_attention_freq == 0`` (megatron's and
    HF's pattern), else a :class:`PackedGatedDeltaNet` layer; both keep the dense SwiGLU MLP and the norms."""
    freq = config.linear_attention_freq
    if not isinstance(freq, int) or freq < 1:
        raise NotImplementedError(f"linear_attention_freq must be a positive int here, got {freq!r}")
    attention = get_gpt_layer_local_spec(qk_layernorm=config.qk_layernorm, normalization="RMSNorm")
    _use_local_layers(attention, config)
    gdn = copy.deepcopy(attention)
    gdn.submodules.self_attention = ModuleSpec(
        module=PackedGatedDeltaNet,
        submodules=GatedDeltaNetSubmodules(
            in_proj=ColumnParallelLinear, out_norm=QKRMSNorm, out_proj=RowParallelLinear
        ),
    )
    layers = [attention if (i + 1) % freq == 0 else gdn for i in range(config.num_layers)]
    offset = get_transformer_layer_offset(config, vp_stage=vp_stage)
    local = layers[offset : offset + get_num_layers_to_build(config, vp_stage=vp_stage)]
    return TransformerBlockSubmodules(layer_specs=local, layer_norm=RMSNorm)
