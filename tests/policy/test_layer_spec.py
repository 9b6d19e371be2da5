"""Which layers the model gets: Transformer Engine only where it can run the model's dtype on packed sequences.

TE's THD attention has no fp32 backend, so an fp32 model on a box with TE must get the local layers (a TE spec
would fail at the first forward with "No dot product attention backend is available"). TE is absent here, so the
tests tell the capability check it is present.
"""

from __future__ import annotations

import json

import pytest
import torch

from cod_megatron.infra import capabilities
from tests.policy.parallel_utils import tiny_cfg


@pytest.fixture
def te_present(monkeypatch):
    monkeypatch.setattr(capabilities, "has", lambda name: name in ("te", "cuda"))


def test_an_fp32_model_gets_local_layers_even_where_transformer_engine_imports(te_present):
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.model import transformer_config
    from cod_megatron.policy.packed_attention import PackedDotProductAttention
    from cod_megatron.policy.spec import decoder_block_spec
    from tests.dist import free_port

    cfg = tiny_cfg()
    layout = finalize(cfg)
    config = transformer_config(cfg.model, layout)
    assert config.params_dtype == torch.float32
    init_distributed(layout, master_port=free_port())
    try:
        block = decoder_block_spec(config)
    finally:
        destroy_distributed()
    assert all(
        layer.submodules.self_attention.submodules.core_attention is PackedDotProductAttention
        for layer in block.layer_specs
    )


def test_bf16_gets_transformer_engine_where_it_imports(te_present):
    use, why = capabilities.transformer_engine_layers("bfloat16")
    assert use and why.startswith("Transformer Engine layers")
    assert capabilities.transformer_engine_layers("float32") == (
        False,
        "local layers: Transformer Engine has no float32 packed-sequence (THD) attention",
    )


def test_bf16_gets_local_layers_where_transformer_engine_is_absent(monkeypatch):
    monkeypatch.setattr(capabilities, "has", lambda name: False)
    use, why = capabilities.transformer_engine_layers("bfloat16")
    assert not use and "not usable here" in why


@pytest.mark.parametrize("dtype,expect", [("float32", "local layers"), ("bfloat16", "Transformer Engine layers")])
def test_the_dry_run_prints_the_choice(te_present, dtype, expect):
    from cod_megatron.config import finalize
    from cod_megatron.infra.cli import render

    cfg = tiny_cfg()
    layout = finalize(cfg)
    cfg.model.params_dtype = dtype  # after finalize, which keeps CPU runs in float32
    assert json.loads(render(cfg, layout))["layers"].startswith(expect)


def test_the_transformer_config_takes_the_attention_layout_from_the_model_family(monkeypatch):
    """A family that declares q/k norms and a q/k/v bias gets them, whatever its arch is called: the policy asks the
    family (models/), it does not compare ``model.arch``."""
    import dataclasses

    from cod_megatron.config import finalize
    from cod_megatron.models import families
    from cod_megatron.policy.model import transformer_config

    cfg = tiny_cfg()
    cfg.model.arch = "llama"
    plain = transformer_config(cfg.model, finalize(cfg))
    assert (plain.qk_layernorm, plain.add_qkv_bias) == (False, False)
    both = dataclasses.replace(families.FAMILIES["llama"], qk_layernorm=True, attention_bias=True)
    monkeypatch.setitem(families.FAMILIES, "llama", both)
    config = transformer_config(cfg.model, finalize(cfg))
    assert (config.qk_layernorm, config.add_qkv_bias) == (True, True)
