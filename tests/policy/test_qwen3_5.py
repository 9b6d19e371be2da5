"""Qwen3.5's hybrid stack (Gated DeltaNet + gated attention) against transformers' own model, exact in fp32 on CPU.

The tiny HF model has every weight random (norms and GDN's A_log / dt_bias included), three GDN layers and one
attention layer, so a swapped section, a wrong zero-centring or a missing gate changes the logits. The packed input
holds three segments: each must give the logits it gives alone, which needs both GDN's convolution and its
recurrence to restart at every segment start; the mutation tests show that each reset is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.dist import free_port

SEGMENTS = [[5, 17, 250, 3, 99, 42, 7, 8, 9], [11, 12, 13, 14, 15, 16], [200, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 128]]
IDS = torch.tensor([3, 141, 59, 26, 53, 58, 97, 93, 23, 84, 62, 64, 33, 83, 27, 95, 1, 2, 3, 4])
ATOL = 1e-5


def hf_config():
    """3 GDN layers + 1 attention layer; GQA in both mixers (2 key heads for 4 value heads; 4 q heads, 2 kv)."""
    from transformers import Qwen3_5TextConfig

    return Qwen3_5TextConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_conv_kernel_dim=4,
        rms_norm_eps=1e-6,
        dtype="float32",
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": 0.25},
    )


def make_hf(path: Path, seed: int = 0) -> None:
    """A random tiny Qwen3.5 saved with save_pretrained; every norm, A_log and dt_bias randomised too."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(("A_log", "dt_bias")):
                p.copy_(0.3 * torch.randn_like(p) + (1.0 if "linear_attn.norm" in name else 0.0))
            elif "embed_tokens" in name or "lm_head" in name or "conv1d" in name:
                p.copy_(0.5 * torch.randn_like(p))
    model.save_pretrained(path)


def hf_logits(path: str | Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids[None]).logits[0]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hf") / "qwen3_5"
    make_hf(path)
    return path


@pytest.fixture(scope="module")
def reference(hf_dir) -> dict:
    return {
        "logits": hf_logits(hf_dir, IDS),
        "segments": [hf_logits(hf_dir, torch.tensor(s)) for s in SEGMENTS],
        "tensors": load_file(hf_dir / "model.safetensors"),
    }


@pytest.fixture
def megatron(hf_dir):
    """The megatron policy (TP = PP = 1) with the HF weights loaded, and its ModelConfig."""
    from transformers import AutoConfig

    from cod_megatron.config import ParallelConfig, ParallelLayout
    from cod_megatron.models.hf_config import model_config_from_hf
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_weights import load_hf_weights
    from cod_megatron.policy.model import build_model

    cfg = model_config_from_hf(AutoConfig.from_pretrained(hf_dir))
    layout = ParallelLayout.from_config(ParallelConfig(tp=1, pp=1, engines=1, gpus_per_node=1), cfg)
    init_distributed(layout, master_port=free_port())
    try:
        model = build_model(cfg, layout)
        load_hf_weights(model, str(hf_dir), cfg)
        yield model.eval(), cfg
    finally:
        destroy_distributed()


def _packed_logits(model) -> list[torch.Tensor]:
    from cod_megatron.data.packed import pack_segments
    from cod_megatron.policy.trainer import packed_seq_params

    batch = pack_segments(SEGMENTS, [1] * len(SEGMENTS), [0.0] * len(SEGMENTS))
    pos = torch.cat([torch.arange(len(s)) for s in SEGMENTS])
    with torch.no_grad():
        out = model(batch.tokens[None], pos[None], None, packed_seq_params=packed_seq_params(batch))[0]
    cu = batch.cu_seqlens.tolist()
    return [out[a:b] for a, b in zip(cu[:-1], cu[1:], strict=True)]


def test_model_config_reads_the_hybrid_pattern(hf_dir):
    from transformers import AutoConfig

    from cod_megatron.models.hf_config import hf_config_from_model, model_config_from_hf

    cfg = model_config_from_hf(AutoConfig.from_pretrained(hf_dir))
    assert (cfg.arch, cfg.full_attention_interval, cfg.rotary_percent) == ("qwen3_5", 4, 0.25)
    assert cfg.linear_layers == [True, True, True, False]
    back = hf_config_from_model(cfg)
    assert back.layer_types == hf_config().layer_types
    assert back.rope_parameters["partial_rotary_factor"] == 0.25


def test_logits_equal_hf_on_plain_input(megatron, reference):
    model, _ = megatron
    with torch.no_grad():
        out = model(IDS[None], torch.arange(IDS.numel())[None], None)[0]
    torch.testing.assert_close(out, reference["logits"], atol=ATOL, rtol=0)


def test_packed_segments_equal_each_segment_alone(megatron, reference):
    model, _ = megatron
    for got, want in zip(_packed_logits(model), reference["segments"], strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def _without_reset(fn):
    """``fn`` run over the whole packed row as one segment: the segment reset removed."""

    def no_reset(*args):
        *tensors, _ = args
        n = tensors[0].shape[0]
        return fn(*tensors, [(n, 1, torch.arange(n))])

    return no_reset


@pytest.mark.parametrize("mixer", ["causal_conv1d_segments", "gated_delta_rule_segments"])
def test_packed_test_fails_without_each_reset(megatron, reference, monkeypatch, mixer):
    """The packed comparison bites: without the conv's reset, or without the recurrence's, later segments change."""
    from cod_megatron.policy import gated_delta_ops

    model, _ = megatron
    monkeypatch.setattr(gated_delta_ops, mixer, _without_reset(getattr(gated_delta_ops, mixer)))
    got = _packed_logits(model)
    torch.testing.assert_close(got[0], reference["segments"][0], atol=ATOL, rtol=0)  # the first has nothing before
    for seg, want in zip(got[1:], reference["segments"][1:], strict=True):
        assert (seg - want).abs().max() > 1e-3


def test_export_round_trip_and_reload_into_hf(megatron, reference, tmp_path):
    from transformers import AutoModelForCausalLM

    from cod_megatron.models.hf_config import hf_config_from_model
    from cod_megatron.policy.hf_export import export_hf_weights
    from cod_megatron.policy.hf_weights import save_hf

    model, cfg = megatron
    exported = export_hf_weights(model, cfg)
    assert sorted(exported) == sorted(reference["tensors"])
    for name, want in reference["tensors"].items():
        assert torch.equal(exported[name], want), name
    save_hf(model, cfg, hf_config_from_model(cfg), str(tmp_path / "out"))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert type(reloaded).__name__ == "Qwen3_5ForCausalLM"
    torch.testing.assert_close(hf_logits(tmp_path / "out", IDS), reference["logits"], atol=0, rtol=0)


def test_parameter_count_equals_hf(megatron, hf_dir):
    from transformers import AutoModelForCausalLM

    model, cfg = megatron
    hf = AutoModelForCausalLM.from_pretrained(hf_dir)
    n_hf = sum(p.numel() for p in hf.parameters())
    assert cfg.num_parameters() == n_hf == sum(p.numel() for p in model.parameters())


# ---- the published checkpoint layout: vision-language, decoder under model.language_model --------------------
def make_hf_vision_language(path: Path, seed: int = 1) -> None:
    """A tiny random Qwen3_5ForConditionalGeneration (the text model above plus a 1-block vision tower)."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    text = hf_config().to_dict()
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": [2, 1, 1]}
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=4)
    torch.manual_seed(seed)
    model = Qwen3_5ForConditionalGeneration(Qwen3_5Config(text_config=text, vision_config=vision))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(("A_log", "dt_bias", ".bias")):
                p.copy_(0.3 * torch.randn_like(p) + (1.0 if "linear_attn.norm" in name else 0.0))
    model.save_pretrained(path)


def test_vision_language_checkpoint_trains_the_decoder_and_carries_the_vision_tower(tmp_path):
    from transformers import AutoConfig, Qwen3_5ForConditionalGeneration

    from cod_megatron.config import ParallelConfig, ParallelLayout
    from cod_megatron.models.hf_config import model_config_from_hf
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_weights import load_hf_weights, save_hf
    from cod_megatron.policy.model import build_model

    src, out = tmp_path / "vl", tmp_path / "out"
    make_hf_vision_language(src)
    hf = Qwen3_5ForConditionalGeneration.from_pretrained(src).eval()
    with torch.no_grad():
        want = hf(input_ids=IDS[None]).logits[0]
    cfg = model_config_from_hf(AutoConfig.from_pretrained(src))
    assert (cfg.arch, cfg.hf_weight_prefix, cfg.full_attention_interval) == ("qwen3_5", "model.language_model.", 4)
    layout = ParallelLayout.from_config(ParallelConfig(tp=1, pp=1, engines=1, gpus_per_node=1), cfg)
    init_distributed(layout, master_port=free_port())
    try:
        model = build_model(cfg, layout).eval()
        load_hf_weights(model, str(src), cfg)  # model.visual.* is not the policy's: not an "unused tensor" error
        with torch.no_grad():
            got = model(IDS[None], torch.arange(IDS.numel())[None], None)[0]
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        save_hf(model, cfg, AutoConfig.from_pretrained(src), str(out), carry_from=str(src))
    finally:
        destroy_distributed()
    original = {k: v for f in src.glob("*.safetensors") for k, v in load_file(f).items()}
    exported = {k: v for f in out.glob("*.safetensors") for k, v in load_file(f).items()}
    assert any(k.startswith("model.visual.") for k in exported) and sorted(exported) == sorted(original)
    for name, t in original.items():
        assert torch.equal(exported[name], t), name
    reloaded = Qwen3_5ForConditionalGeneration.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=IDS[None]).logits[0], want, atol=0, rtol=0)


# ---- TP = 2, spawned gloo ranks: the hybrid layouts slice per rank ---------------------------------------------
def _tp2_worker(rank: int, world_size: int, hf_dir: str) -> dict:
    from transformers import AutoConfig

    from cod_megatron.config import ParallelConfig, ParallelLayout
    from cod_megatron.models.hf_config import model_config_from_hf
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_export import export_hf_weights
    from cod_megatron.policy.hf_weights import load_hf_weights
    from cod_megatron.policy.model import build_model
    from tests.dist import init_method

    cfg = model_config_from_hf(AutoConfig.from_pretrained(hf_dir))
    layout = ParallelLayout.from_config(ParallelConfig(tp=2, pp=1, engines=2, gpus_per_node=2), cfg)
    init_distributed(layout, rank=rank, world_size=world_size, init_method=init_method("q35tp2"))
    try:
        model = build_model(cfg, layout).eval()
        load_hf_weights(model, hf_dir, cfg)
        with torch.no_grad():
            shard = model(IDS[None], torch.arange(IDS.numel())[None], None)[0]
        packed = [torch.cat(_gathered(s), dim=-1) for s in _packed_logits(model)]
        logits = torch.cat(_gathered(shard), dim=-1)
        return {"logits": logits, "segments": packed, "tensors": export_hf_weights(model, cfg)}
    finally:
        destroy_distributed()


def _gathered(x: torch.Tensor) -> list[torch.Tensor]:
    import torch.distributed as dist
    from megatron.core import parallel_state

    parts = [torch.empty_like(x) for _ in range(2)]
    dist.all_gather(parts, x.contiguous(), group=parallel_state.get_tensor_model_parallel_group())
    return parts


@pytest.mark.dist
@pytest.mark.slow
def test_tp2_loads_gives_hf_logits_and_exports_the_same_tensors(hf_dir, reference):
    from tests.dist import spawn

    for out in spawn(_tp2_worker, 2, str(hf_dir)):
        torch.testing.assert_close(out["logits"], reference["logits"], atol=ATOL, rtol=0)
        for got, want in zip(out["segments"], reference["segments"], strict=True):
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        assert sorted(out["tensors"]) == sorted(reference["tensors"])
        for name, want in reference["tensors"].items():
            assert torch.equal(out["tensors"][name], want), name


def test_one_gdn_layer_packed_equals_hf_per_segment_with_gradients(megatron, hf_dir):
    """Layer 0 alone (PackedGatedDeltaNet vs HF's Qwen3_5GatedDeltaNet, same weights) on a packed 3-segment input:
    outputs, input gradients and parameter gradients equal HF's, run segment by segment."""
    from transformers import AutoModelForCausalLM

    from cod_megatron.data.packed import pack_segments
    from cod_megatron.policy.trainer import packed_seq_params

    model, _ = megatron
    ours = model.decoder.layers[0].self_attention
    theirs = AutoModelForCausalLM.from_pretrained(hf_dir).model.layers[0].linear_attn
    batch = pack_segments(SEGMENTS, [1] * len(SEGMENTS), [0.0] * len(SEGMENTS))
    x = torch.randn(batch.num_tokens, 64, generator=torch.Generator().manual_seed(0))
    weight = torch.randn(batch.num_tokens, 64, generator=torch.Generator().manual_seed(1))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, _ = ours(xa[:, None], None, packed_seq_params=packed_seq_params(batch))
    (out[:, 0] * weight).sum().backward()
    cu = batch.cu_seqlens.tolist()
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        want = theirs(hidden_states=xb[None, a:b])[0]
        torch.testing.assert_close(out[a:b, 0], want, atol=ATOL, rtol=0)
        (want * weight[a:b]).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=ATOL, rtol=0)
    for mine, hf in (("A_log", "A_log"), ("dt_bias", "dt_bias"), ("conv1d", "conv1d")):
        g_ours, g_hf = (getattr(m, n) for m, n in ((ours, mine), (theirs, hf)))
        g_ours, g_hf = (p.weight.grad if isinstance(p, torch.nn.Module) else p.grad for p in (g_ours, g_hf))
        torch.testing.assert_close(g_ours, g_hf, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.out_norm.weight.grad, theirs.norm.weight.grad, atol=1e-4, rtol=1e-4)
