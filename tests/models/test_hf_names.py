"""The public Megatron <-> HF map on its own: every layout kind's TP shards reassemble into the HF tensors."""

from __future__ import annotations

import pytest
import torch

from cod_megatron.models.hf_names import HFTarget, hf_from_shards, hf_targets, model_chunks, shard_from_hf
from cod_recipes.models import tiny_qwen3

CFG = tiny_qwen3()  # 4 heads in 2 query groups: q_per_group = 2
H, V, F, QD, KD = CFG.hidden_size, CFG.vocab_size, CFG.ffn_hidden_size, 4 * CFG.head_dim, 2 * CFG.head_dim
_G = torch.Generator().manual_seed(0)
HF = {
    "embed": torch.randn(V, H, generator=_G),
    "q": torch.randn(QD, H, generator=_G),
    "k": torch.randn(KD, H, generator=_G),
    "v": torch.randn(KD, H, generator=_G),
    "q_bias": torch.randn(QD, generator=_G),
    "k_bias": torch.randn(KD, generator=_G),
    "v_bias": torch.randn(KD, generator=_G),
    "gate": torch.randn(F, H, generator=_G),
    "up": torch.randn(F, H, generator=_G),
    "down": torch.randn(H, F, generator=_G),
    "norm": torch.randn(H, generator=_G),
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
        shard_from_hf(HFTarget("vocab", ("embed",)), DictReader(), CFG, 0, 3)  # 256 rows


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
