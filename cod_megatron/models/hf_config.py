"""HF config <-> :class:`~cod_megatron.config.ModelConfig` shapes, both directions, through the model families.

:func:`shapes_from_hf` reads a plain dict (``config.json``, or ``config.to_dict()``; no transformers needed), so
:func:`cod_megatron.models.source.resolve_model` can fill and check a local checkpoint's shapes before validation;
:func:`hf_config_from_model` builds the transformers config the embedded engine and checkpoint export use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cod_megatron.config import ModelConfig
from cod_megatron.models.families import family, family_for_hf

MCORE_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
"""megatron's llama3 RoPE scaling hard-codes these (RotaryEmbedding._apply_scaling); other values cannot be
expressed."""


def rope_from_hf(hf: Mapping[str, Any]) -> tuple[float, float | None]:
    """(theta, llama3 scaling factor or None); transformers 5 keeps both in ``rope_parameters``."""
    params = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    theta = params.get("rope_theta", hf.get("rope_theta"))
    if theta is None:
        raise ValueError("HF config has no rope_theta (neither in rope_parameters nor at the top level)")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return float(theta), None
    if rope_type != "llama3":
        raise NotImplementedError(f"RoPE type {rope_type!r} has no megatron-core equivalent here (only llama3)")
    for key, want in MCORE_LLAMA3_ROPE.items():
        if key in params and float(params[key]) != want:
            raise NotImplementedError(f"llama3 RoPE {key}={params[key]}: megatron-core fixes it at {want}")
    return float(theta), float(params["factor"])


def shapes_from_hf(hf: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`ModelConfig` shape fields of an HF config dict of a known family (``config.json``).

    Rejects features the policy cannot express (NotImplementedError, :class:`~cod_megatron.models.families.
    UnknownModelFamily` for an unknown ``model_type``); a missing required key is a KeyError. Keys a config.json may
    omit take the transformers defaults of these families.
    """
    fam = family_for_hf(hf.get("model_type"))
    prefix = "model."
    if fam.hf_vision_language is not None and hf.get("model_type") == fam.hf_vision_language:
        tie = hf.get("tie_word_embeddings", hf["text_config"].get("tie_word_embeddings", False))
        hf = {**hf["text_config"], "model_type": fam.hf_model_type, "tie_word_embeddings": tie}
        prefix = "model.language_model."
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise NotImplementedError(f"hidden_act {act!r}: the policy's SwiGLU uses silu")
    if hf.get("mlp_bias", False):
        raise NotImplementedError("mlp_bias=True is not supported (megatron config has add_bias_linear=False)")
    if not fam.attention_bias and hf.get("attention_bias", False):
        raise NotImplementedError(
            f"attention_bias=True is not supported for {fam.hf_model_type} (it also adds an o_proj bias)"
        )
    layer_types = hf.get("layer_types") or []
    hybrid = hybrid_shapes_from_hf(hf) if fam.hybrid else {}
    if hf.get("use_sliding_window", False) or (not fam.hybrid and any(t != "full_attention" for t in layer_types)):
        raise NotImplementedError("sliding-window attention layers are not supported")
    theta, factor = rope_from_hf(hf)
    heads = hf["num_attention_heads"]
    return dict(
        arch=fam.arch,
        num_layers=hf["num_hidden_layers"],
        hidden_size=hf["hidden_size"],
        ffn_hidden_size=hf["intermediate_size"],
        num_attention_heads=heads,
        num_query_groups=hf.get("num_key_value_heads") or heads,
        kv_channels=hf.get("head_dim") or hf["hidden_size"] // heads,
        vocab_size=hf["vocab_size"],
        max_position_embeddings=hf["max_position_embeddings"],
        rope_theta=theta,
        rope_scaling_factor=factor,
        norm_epsilon=hf["rms_norm_eps"],
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        hf_weight_prefix=prefix,
        **hybrid,
    )


def hybrid_shapes_from_hf(hf: Mapping[str, Any]) -> dict[str, Any]:
    """Qwen3.5's extra shape fields: the layer pattern (only megatron's "every n-th layer is full attention"), the
    Gated DeltaNet shapes and the partial RoPE fraction."""
    n_layers = hf["num_hidden_layers"]
    types = hf.get("layer_types") or []
    interval = next((i + 1 for i, t in enumerate(types) if t == "full_attention"), 0)
    pattern = ["linear_attention" if interval and (i + 1) % interval else "full_attention" for i in range(n_layers)]
    if not interval or types != pattern:
        raise NotImplementedError(f"layer_types {types} is not 'every n-th layer full attention' (megatron's pattern)")
    params = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    return dict(
        full_attention_interval=interval,
        linear_num_key_heads=hf["linear_num_key_heads"],
        linear_num_value_heads=hf["linear_num_value_heads"],
        linear_key_head_dim=hf["linear_key_head_dim"],
        linear_value_head_dim=hf["linear_value_head_dim"],
        linear_conv_kernel_dim=hf.get("linear_conv_kernel_dim", 4),
        rotary_percent=float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))),
    )


def model_config_from_hf(hf_config: Any, *, params_dtype: str = "float32") -> ModelConfig:
    """The :class:`ModelConfig` of a transformers config of a known family; rejects features the policy cannot
    express. ``params_dtype`` is the megatron parameter dtype (float32 on CPU); the checkpoint's dtype does not
    decide it."""
    return ModelConfig(**shapes_from_hf(hf_config.to_dict()), params_dtype=params_dtype)


def hf_config_from_model(cfg: ModelConfig) -> Any:
    """The transformers config of a :class:`ModelConfig` (inverse of :func:`model_config_from_hf`).

    The embedded rollout engine builds its transformers model from it, so trainer and engine share one shape.
    """
    import transformers

    fam = family(cfg.arch)
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": float(cfg.rope_theta)}
    if cfg.rope_scaling_factor is not None:
        rope = {"rope_type": "llama3", "rope_theta": float(cfg.rope_theta), "factor": cfg.rope_scaling_factor}
        rope |= MCORE_LLAMA3_ROPE
    config_class = getattr(transformers, fam.hf_config_class)
    hybrid: dict[str, Any] = {}
    if fam.hybrid:
        rope["partial_rotary_factor"] = cfg.rotary_percent
        hybrid = dict(
            layer_types=["linear_attention" if linear else "full_attention" for linear in cfg.linear_layers],
            linear_num_key_heads=cfg.linear_num_key_heads,
            linear_num_value_heads=cfg.linear_num_value_heads,
            linear_key_head_dim=cfg.linear_key_head_dim,
            linear_value_head_dim=cfg.linear_value_head_dim,
            linear_conv_kernel_dim=cfg.linear_conv_kernel_dim,
        )
    return config_class(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.ffn_hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_query_groups,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.norm_epsilon,
        tie_word_embeddings=cfg.tie_word_embeddings,
        rope_parameters=rope,
        dtype=cfg.params_dtype,
        architectures=[fam.hf_causal_lm],
        **hybrid,
    )
