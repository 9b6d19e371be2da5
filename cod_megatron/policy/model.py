"""Build the megatron-core policy (``GPTModel``) from the project's ModelConfig and ParallelLayout."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.transformer.transformer_config import TransformerConfig

from cod_megatron.config import ModelConfig, ParallelLayout
from cod_megatron.models.families import family
from cod_megatron.policy.spec import decoder_block_spec

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


RECOMPUTE: dict[str, dict[str, Any]] = {
    "none": {},
    "selective": {"recompute_granularity": "selective"},
    "full": {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1},
}
"""``optimizer.recompute`` -> megatron-core's TransformerConfig recompute fields."""


def transformer_config(
    model: ModelConfig, layout: ParallelLayout, *, cpu: bool | None = None, recompute: str = "none"
) -> TransformerConfig:
    """megatron-core's TransformerConfig for a Llama/Qwen-style decoder; what the model family changes (a q/k/v bias,
    per-head q/k norms) comes from its family (``ModelFamily.megatron_attention``).

    ``calculate_per_token_loss=True``: the loss function returns a token *sum* and its token count, and megatron
    divides the gradients once by the global count (summed over micro-batches and DP x CP), so the loss does not
    depend on how the batch is split. ``use_cpu_initialization`` builds each full weight with one seeded generator
    and then slices it, so every TP/PP layout starts from the same weights.
    """
    cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    dtype = _DTYPES[model.params_dtype]
    return TransformerConfig(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        ffn_hidden_size=model.ffn_hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        kv_channels=model.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=model.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        **family(model.arch).megatron_attention(),
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tensor_model_parallel_size=layout.tp,
        pipeline_model_parallel_size=layout.pp,
        virtual_pipeline_model_parallel_size=layout.vpp,
        context_parallel_size=layout.cp,
        sequence_parallel=layout.sequence_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        use_cpu_initialization=cpu,
        gradient_accumulation_fusion=False,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        calculate_per_token_loss=True,
        # Packed micro-batches differ in length: 1F1B exchanges shapes first. The interleaved schedule gets one shape
        # (policy/microbatches.py) and unbatched p2p, whose pp = 2 ordering keeps the two directions apart; overlap
        # is megatron-LM's VPP default.
        variable_seq_lengths=not layout.vpp,
        batch_p2p_comm=not layout.vpp,
        overlap_p2p_comm=bool(layout.vpp),
        moe_token_dispatcher_type="alltoall",  # megatron rejects its default with variable_seq_lengths
        init_method_std=0.02,
        **RECOMPUTE[recompute],
        **_gated_delta_net_fields(model),
    )


def _gated_delta_net_fields(model: ModelConfig) -> dict[str, Any]:
    """megatron's Gated DeltaNet fields of a hybrid model (its layer pattern and GDN shapes); none otherwise."""
    if not model.full_attention_interval:
        return {}
    return {
        "experimental_attention_variant": "gated_delta_net",
        "linear_attention_freq": model.full_attention_interval,
        "linear_conv_kernel_dim": model.linear_conv_kernel_dim,
        "linear_key_head_dim": model.linear_key_head_dim,
        "linear_value_head_dim": model.linear_value_head_dim,
        "linear_num_key_heads": model.linear_num_key_heads,
        "linear_num_value_heads": model.linear_num_value_heads,
    }


def build_model(
    model: ModelConfig,
    layout: ParallelLayout,
    *,
    config: TransformerConfig | None = None,
    vp_stage: int | None = None,
    use_te: bool | None = None,
) -> GPTModel:
    """This rank's ``GPTModel`` chunk (first/last pipeline stage decided by megatron's parallel state)."""
    config = config or transformer_config(model, layout)
    pre = parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage)
    post = parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage)
    return GPTModel(
        config=config,
        transformer_layer_spec=decoder_block_spec(config, vp_stage=vp_stage, use_te=use_te),
        vocab_size=model.vocab_size,
        max_sequence_length=model.max_position_embeddings,
        pre_process=pre,
        post_process=post,
        parallel_output=True,
        share_embeddings_and_output_weights=model.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_percent=model.rotary_percent,
        rotary_base=int(model.rope_theta),
        rope_scaling=model.rope_scaling_factor is not None,
        rope_scaling_factor=model.rope_scaling_factor or 8.0,
        vp_stage=vp_stage,
    )


def build_model_chunks(model: ModelConfig, layout: ParallelLayout, use_te: bool | None = None) -> list[GPTModel]:
    """One chunk per virtual pipeline stage (a single chunk without VPP), as megatron's schedules expect."""
    config = transformer_config(model, layout)
    stages = range(layout.vpp) if layout.vpp else [None]
    return [build_model(model, layout, config=config, vp_stage=v, use_te=use_te) for v in stages]
