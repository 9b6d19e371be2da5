"""Model shape fields from an HF ``config.json`` (pure: plain dicts and ``json``, no transformers).

The one mapping of HF config keys to :class:`ModelConfig` fields: validation fills and checks the shapes of a local
``model.hf_path`` with it, and :func:`cod_megatron.policy.hf_weights.model_config_from_hf` builds a ModelConfig from
a transformers config through it (``config.to_dict()``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cod_megatron.config.base import ConfigError
from cod_megatron.config.model import ModelConfig

ARCHS = ("llama", "qwen2", "qwen3")
# megatron's llama3 RoPE scaling hard-codes these (RotaryEmbedding._apply_scaling); other values cannot be expressed.
MCORE_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def _rope(hf: Mapping[str, Any]) -> tuple[float, float | None]:
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
    """The :class:`ModelConfig` shape fields of an HF Llama / Qwen2 / Qwen3 config dict (``config.json``).

    Rejects features the policy cannot express (NotImplementedError); a missing required key is a KeyError.
    Keys a config.json may omit take the transformers defaults of these three families.
    """
    model_type = hf.get("model_type")
    if model_type not in ARCHS:
        raise NotImplementedError(f"HF model_type {model_type!r} is not supported (llama, qwen2, qwen3)")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise NotImplementedError(f"hidden_act {act!r}: the policy's SwiGLU uses silu")
    if hf.get("mlp_bias", False):
        raise NotImplementedError("mlp_bias=True is not supported (megatron config has add_bias_linear=False)")
    if model_type != "qwen2" and hf.get("attention_bias", False):
        raise NotImplementedError(
            f"attention_bias=True is not supported for {model_type} (it also adds an o_proj bias)"
        )
    layer_types = hf.get("layer_types") or []
    if hf.get("use_sliding_window", False) or any(t != "full_attention" for t in layer_types):
        raise NotImplementedError("sliding-window attention layers are not supported")
    theta, factor = _rope(hf)
    heads = hf["num_attention_heads"]
    return dict(
        arch=model_type,
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
    )


def apply_hf_shapes(model: ModelConfig, prefix: str = "model") -> None:
    """Take the shape fields of a local ``hf_path`` checkpoint from its ``config.json``.

    A field still at its :class:`ModelConfig` default is filled from config.json; any other value must agree with
    it, else :class:`ConfigError` names the field (the recipe must describe the checkpoint it starts from). A field
    set explicitly to its default value is indistinguishable from one left unset, so it is filled too. A hub id
    (no local directory) is left alone: the recipe's typed shapes stand and are checked against the weights at load.
    """
    if not isinstance(model.hf_path, str) or not (Path(model.hf_path).expanduser() / "config.json").is_file():
        return
    path = Path(model.hf_path).expanduser() / "config.json"
    try:
        shapes = shapes_from_hf(json.loads(path.read_text()))
    except (KeyError, ValueError, NotImplementedError) as e:
        kind = f"has no {e}" if isinstance(e, KeyError) else f"describes a model the policy cannot run: {e}"
        raise ConfigError(f"{prefix}.hf_path", f"{path} {kind}") from e
    default = ModelConfig()
    for name, want in shapes.items():
        have = getattr(model, name)
        if have == want:
            continue
        if have != getattr(default, name):
            raise ConfigError(
                f"{prefix}.{name}", f"{have!r} disagrees with {path} ({want!r}); leave it unset or set {want!r}"
            )
        setattr(model, name, want)
