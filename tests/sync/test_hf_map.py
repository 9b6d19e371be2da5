"""The public Megatron <-> HF map on its own: every layout kind's TP shards reassemble into the HF tensors."""

from __future__ import annotations

import pytest
import torch

from cod_megatron.config import ModelConfig
from cod_megatron.sync.hf_map import HFTarget, hf_from_shards, hf_targets, model_chunks, shard_from_hf

CFG = ModelConfig(
    arch="qwen2",
    num_layers=1,
    hidden_size=16,
    ffn_hidden_size=24,
    num_attention_heads=4,
    num_query_groups=2,
    kv_channels=4,
    vocab_size=10,
    max_position_embeddings=32,
    rope_theta=1e6,
    norm_epsilon=1e-6,
    tie_word_embeddings=False,
    params_dtype="float32",
)
_G = torch.Generator().manual_seed(0)
HF = {
    "embed": torch.randn(10, 16, generator=_G),
    "q": torch.randn(16, 16, generator=_G),
    "k": torch.randn(8, 16, generator=_G),
    "v": torch.randn(8, 16, generator=_G),
    "q_bias": torch.randn(16, generator=_G),
    "k_bias": torch.randn(8, generator=_G),
    "v_bias": torch.randn(8, generator=_G),
    "gate": torch.randn(24, 16, generator=_G),
    "up": torch.randn(24, 16, generator=_G),
    "down": torch.randn(16, 24, generator=_G),
    "norm": torch.randn(16, generator=_G),
}


class DictReader:
    """A ShardReader over in-memory tensors."""

    def shape(self, name):
        return list(HF[name].shape)

    def rows(self, name, start=None, stop=None):
        return HF[name][start:stop]

    def cols(self, name, start, stop):
        return HF[name][:, start:stop]


TARGETS = [
    HFTarget("vocab", ("embed",)),
    HFTarget("qkv", ("q", "k", "v")),
    HFTarget("qkv", ("q_bias", "k_bias", "v_bias")),
    HFTarget("fc1", ("gate", "up")),
    HFTarget("row", ("down",)),
    HFTarget("replicated", ("norm",)),
]


@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: f"{t.kind}-{t.hf[0]}")
def test_shards_of_every_layout_kind_reassemble_into_the_hf_tensors(target, tp):
    parts = [shard_from_hf(target, DictReader(), CFG, rank, tp) for rank in range(tp)]
    full = hf_from_shards(target, parts, CFG)
    assert len(full) == len(target.hf)
    for name, t in zip(target.hf, full, strict=True):
        assert torch.equal(t, HF[name]), name


def test_a_split_that_does_not_divide_evenly_is_refused():
    with pytest.raises(ValueError, match="not divisible by tensor-parallel size 3"):
        shard_from_hf(HFTarget("vocab", ("embed",)), DictReader(), CFG, 0, 3)


class _Layer(torch.nn.Module):
    def __init__(self, layer_number: int, extra: str | None = None):
        super().__init__()
        self.layer_number = layer_number
        self.input_layernorm = torch.nn.Module()
        self.input_layernorm.weight = torch.nn.Parameter(torch.ones(2))
        if extra:
            self.register_parameter(extra, torch.nn.Parameter(torch.ones(1)))


class _Chunk(torch.nn.Module):
    def __init__(self, extra: str | None = None):
        super().__init__()
        self.decoder = torch.nn.Module()
        self.decoder.layers = torch.nn.ModuleList([_Layer(3, extra)])  # the stage's first layer is global layer 3


def test_layer_names_use_the_global_layer_number_and_unknown_parameters_raise():
    wrapped = torch.nn.Module()
    wrapped.module = _Chunk()  # a DDP-style wrapper
    (chunk,) = model_chunks([wrapped])
    assert [(n, t) for n, _, t in hf_targets(chunk, CFG)] == [
        ("decoder.layers.0.input_layernorm.weight", HFTarget("replicated", ("model.layers.2.input_layernorm.weight",)))
    ]
    with pytest.raises(KeyError, match="no HF mapping"):
        list(hf_targets(_Chunk("mystery"), CFG))
