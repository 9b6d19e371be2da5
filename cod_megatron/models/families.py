"""The registry of model families: ``model.arch`` or an HF ``model_type`` -> :class:`ModelFamily`.

A new family is one more module and one more entry here.
"""

from __future__ import annotations

from cod_megatron.models.decoder_family import ModelFamily
from cod_megatron.models.llama import LLAMA
from cod_megatron.models.qwen2 import QWEN2
from cod_megatron.models.qwen3 import QWEN3
from cod_megatron.models.qwen3_5 import QWEN3_5

FAMILIES: dict[str, ModelFamily] = {f.arch: f for f in (LLAMA, QWEN2, QWEN3, QWEN3_5)}


class UnknownModelFamily(NotImplementedError):
    """An architecture or HF ``model_type`` no family module describes (the message lists the known ones)."""


def family(arch: str) -> ModelFamily:
    """The family of ``model.arch``."""
    if arch not in FAMILIES:
        raise UnknownModelFamily(f"model architecture {arch!r} has no family module ({', '.join(FAMILIES)})")
    return FAMILIES[arch]


def family_for_hf(model_type: object) -> ModelFamily:
    """The family whose HF checkpoints have this ``model_type`` (config.json)."""
    types = {t: f for f in FAMILIES.values() for t in (f.hf_model_type, f.hf_vision_language) if t is not None}
    if isinstance(model_type, str) and model_type in types:
        return types[model_type]
    known = ", ".join(types)
    raise UnknownModelFamily(f"HF model_type {model_type!r} is not supported ({known})")
