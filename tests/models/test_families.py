"""The family registry: every ``model.arch`` has a family module, and an unknown one fails with the known list."""

import typing

import pytest

from cod_megatron.config import ModelConfig
from cod_megatron.models.families import FAMILIES, UnknownModelFamily, family, family_for_hf
from cod_megatron.models.hf_config import shapes_from_hf


def test_every_arch_the_config_accepts_has_a_family():
    arches = typing.get_args(typing.get_type_hints(ModelConfig)["arch"])
    assert set(arches) == set(FAMILIES)
    for arch in arches:
        assert family(arch).arch == arch and family_for_hf(family(arch).hf_model_type) is family(arch)


def test_an_unknown_architecture_fails_clearly():
    with pytest.raises(UnknownModelFamily, match=r"'mistral' has no family module \(llama, qwen2, qwen3, qwen3_5\)"):
        family("mistral")
    with pytest.raises(
        UnknownModelFamily,
        match=r"HF model_type 'gemma' is not supported \(llama, qwen2, qwen3, qwen3_5_text, qwen3_5\)",
    ):
        family_for_hf("gemma")
    with pytest.raises(NotImplementedError):  # what shape reading reports as "a model the policy cannot run"
        shapes_from_hf({"model_type": None})


def test_the_family_rules_follow_the_config_flags():
    """What a family maps (qkv bias, q/k norms) is what ModelConfig builds for its arch."""
    for arch, fam in FAMILIES.items():
        cfg = ModelConfig(arch=arch)
        assert ("self_attention.linear_qkv.bias" in fam.layer_names) == cfg.add_qkv_bias == fam.attention_bias
        assert ("self_attention.q_layernorm.weight" in fam.layer_names) == cfg.qk_layernorm == fam.qk_layernorm


def test_the_tiny_tokenizer_template_is_llama3_for_llama_and_chatml_for_qwen():
    assert {a: f.template for a, f in FAMILIES.items()} == {
        "llama": "llama3",
        "qwen2": "qwen3",
        "qwen3": "qwen3",
        "qwen3_5": "qwen3",
    }
