"""HF <-> megatron conversion: logits against transformers, exact export round trips, TP/PP sharding, the CLI.

Every check compares with the HF model itself (never megatron with megatron). The tiny HF models have every norm,
bias and weight random, so a swapped or mis-sliced tensor changes the logits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.dist import free_port, init_method, spawn

ARCHS = ("llama", "qwen2", "qwen3")
SEGMENTS = [[5, 17, 250, 3, 99, 42, 7], [11, 12, 13], [200, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 128]]
IDS = torch.tensor([3, 141, 59, 26, 53, 58, 97, 93, 23, 84, 62, 64, 33, 83, 27, 95])
# RoPE is relative: only long distances reach the long-wavelength dims that llama3 scaling changes
LONG = torch.randint(0, 256, (512,), generator=torch.Generator().manual_seed(0))
ATOL = 1e-5


def _hf_config(arch: str):
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-6,
        dtype="float32",
    )
    if arch == "llama":  # Llama-3.1 RoPE scaling, untied
        rope = {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
        return LlamaConfig(**common, max_position_embeddings=131072, rope_parameters=rope, tie_word_embeddings=False)
    if arch == "qwen2":  # q/k/v biases, untied
        return Qwen2Config(
            **common, rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=False
        )
    # QK-norm, head_dim != hidden / heads, tied embeddings (like Qwen3-0.6B)
    return Qwen3Config(
        **common, head_dim=32, rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=True
    )


def make_hf(arch: str, path: Path, seed: int = 0) -> None:
    """A random tiny HF model saved with save_pretrained; norms and biases randomised too (HF inits 1 and 0)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_hf_config(arch))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
            elif "embed_tokens" in name or "lm_head" in name:
                p.copy_(0.5 * torch.randn_like(p))
    # llama is saved in several shards (index + files), so the sharded reader path is exercised too
    model.save_pretrained(path, max_shard_size="100KB" if arch == "llama" else "1GB")


def hf_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an HF safetensors directory, sharded or not."""
    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def hf_logits(path: str | Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids[None]).logits[0]


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for i, arch in enumerate(ARCHS):
        dirs[arch] = root / arch
        make_hf(arch, dirs[arch], seed=i)
    assert (dirs["llama"] / "model.safetensors.index.json").exists()  # sharded on purpose
    return dirs


@pytest.fixture(scope="module")
def reference(hf_dirs) -> dict[str, dict]:
    """HF's logits (whole sequence, each segment alone) and tensors: what every test compares with."""
    return {
        arch: {
            "logits": hf_logits(d, IDS),
            "long": hf_logits(d, LONG),
            "segments": [hf_logits(d, torch.tensor(s)) for s in SEGMENTS],
            "tensors": hf_tensors(d),
        }
        for arch, d in hf_dirs.items()
    }


def _model_cfg(path: str | Path):
    from transformers import AutoConfig

    from cod_megatron.models.hf_config import model_config_from_hf

    return model_config_from_hf(AutoConfig.from_pretrained(path))


def _layout(model_cfg, tp: int = 1, pp: int = 1):
    from cod_megatron.config import ParallelConfig, ParallelLayout

    n = tp * pp
    return ParallelLayout.from_config(ParallelConfig(tp=tp, pp=pp, engines=n, gpus_per_node=n), model_cfg)


def _gather_vocab(logits: torch.Tensor) -> torch.Tensor:
    """Full-vocab logits from the TP shards ``[..., V/TP]``."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    size = parallel_state.get_tensor_model_parallel_world_size()
    if size == 1:
        return logits
    parts = [torch.empty_like(logits) for _ in range(size)]
    dist.all_gather(parts, logits.contiguous(), group=parallel_state.get_tensor_model_parallel_group())
    return torch.cat(parts, dim=-1)


def _forward(model, tokens: torch.Tensor, position_ids: torch.Tensor, **kw) -> torch.Tensor | None:
    """Logits ``[T, V]`` on the last stage (None elsewhere); PP=2 hands hidden states over with send/recv."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    pp = ps.get_pipeline_model_parallel_world_size()
    if pp > 1 and not ps.is_pipeline_first_stage():
        h = torch.empty(tokens.numel(), 1, model.config.hidden_size)
        dist.recv(h, src=ps.get_pipeline_model_parallel_prev_rank())
        model.set_input_tensor(h)
    out = model(tokens[None], position_ids[None], None, **kw)
    if pp > 1 and not ps.is_pipeline_last_stage():
        dist.send(out.contiguous(), dst=ps.get_pipeline_model_parallel_next_rank())
        return None
    return _gather_vocab(out)[0]


@torch.no_grad()
def _megatron_outputs(model, model_cfg) -> dict:
    """Unpacked logits, packed logits split per segment, and the exported HF tensors of this rank."""
    from cod_megatron.data.packed import pack_segments
    from cod_megatron.policy.hf_export import export_hf_weights
    from cod_megatron.policy.trainer import packed_seq_params

    model.eval()
    logits = _forward(model, IDS, torch.arange(IDS.numel()))
    long = _forward(model, LONG, torch.arange(LONG.numel()))
    batch = pack_segments(SEGMENTS, [1] * len(SEGMENTS), [0.0] * len(SEGMENTS))
    packed = _forward(model, batch.tokens, torch.arange(batch.num_tokens), packed_seq_params=packed_seq_params(batch))
    cu = batch.cu_seqlens.tolist()
    segments = None if packed is None else [packed[a:b] for a, b in zip(cu[:-1], cu[1:], strict=True)]
    return {"logits": logits, "long": long, "segments": segments, "tensors": export_hf_weights(model, model_cfg)}


def _check_against_hf(out: dict, ref: dict) -> None:
    torch.testing.assert_close(out["logits"], ref["logits"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out["long"], ref["long"], atol=ATOL, rtol=0)
    assert len(out["segments"]) == len(ref["segments"])
    for got, want in zip(out["segments"], ref["segments"], strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def _assert_tensors_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, t in want.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t), name


# ---- TP = PP = 1, in process ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_hf_to_megatron_logits_and_export_round_trip(arch, hf_dirs, reference, tmp_path):
    from transformers import AutoModelForCausalLM

    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_weights import load_hf_weights, save_hf
    from cod_megatron.policy.model import build_model

    model_cfg, hf_config = _model_cfg(hf_dirs[arch]), _hf_config(arch)
    assert model_cfg.arch == arch
    layout = _layout(model_cfg)
    init_distributed(layout, master_port=free_port())
    try:
        model = build_model(model_cfg, layout)
        load_hf_weights(model, str(hf_dirs[arch]), model_cfg)
        out = _megatron_outputs(model, model_cfg)
        _check_against_hf(out, reference[arch])
        _assert_tensors_equal(out["tensors"], reference[arch]["tensors"])
        save_hf(model, model_cfg, hf_config, str(tmp_path / "out"))

        # a tensor the mapping would drop, or one it needs but cannot find, is an error, not a silent skip
        bad = tmp_path / "bad"
        bad.mkdir()
        extra = {**reference[arch]["tensors"], "model.layers.0.self_attn.o_proj.bias": torch.zeros(64)}
        save_file(extra, bad / "model.safetensors")
        with pytest.raises(ValueError, match="o_proj.bias"):
            load_hf_weights(model, str(bad), model_cfg)
        save_file({k: v for k, v in extra.items() if "down_proj" not in k}, bad / "model.safetensors")
        with pytest.raises(KeyError, match="down_proj"):
            load_hf_weights(model, str(bad), model_cfg)
    finally:
        destroy_distributed()
    _assert_tensors_equal(load_file(tmp_path / "out" / "model.safetensors"), reference[arch]["tensors"])
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert type(reloaded.config) is type(hf_config)
    assert reloaded.config.tie_word_embeddings == hf_config.tie_word_embeddings
    torch.testing.assert_close(hf_logits(tmp_path / "out", IDS), reference[arch]["logits"], atol=0, rtol=0)


def test_model_config_from_hf_fields(hf_dirs):
    llama, qwen2, qwen3 = (_model_cfg(hf_dirs[a]) for a in ARCHS)
    assert (llama.rope_theta, llama.rope_scaling_factor, llama.tie_word_embeddings) == (500000.0, 8.0, False)
    assert (qwen2.add_qkv_bias, qwen2.rope_scaling_factor, qwen2.rope_theta) == (True, None, 1e6)
    assert (qwen3.qk_layernorm, qwen3.head_dim, qwen3.tie_word_embeddings) == (True, 32, True)
    assert (qwen3.num_query_groups, qwen3.ffn_hidden_size, qwen3.vocab_size) == (2, 128, 256)


def test_model_config_from_hf_rejects_what_megatron_cannot_express():
    from transformers import LlamaConfig, Qwen2Config

    from cod_megatron.models.hf_config import model_config_from_hf

    with pytest.raises(NotImplementedError, match="yarn"):
        model_config_from_hf(LlamaConfig(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}))
    with pytest.raises(NotImplementedError, match="high_freq_factor"):
        model_config_from_hf(
            LlamaConfig(
                max_position_embeddings=131072,
                rope_parameters={
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "rope_theta": 1e4,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 2.0,
                    "original_max_position_embeddings": 8192,
                },
            )
        )
    with pytest.raises(NotImplementedError, match="attention_bias"):
        model_config_from_hf(LlamaConfig(attention_bias=True))
    with pytest.raises(NotImplementedError, match="sliding"):
        model_config_from_hf(Qwen2Config(use_sliding_window=True, sliding_window=16, max_window_layers=0))


# ---- TP = 2 and PP = 2, spawned gloo ranks ----------------------------------------------------------------------
SCENARIOS = ((2, 1), (1, 2))  # (tp, pp): both run in the same two spawned ranks, one process-group setup each


def _sharded_worker(rank: int, world_size: int, dirs: dict[str, str], out_dir: str) -> dict:
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_weights import load_hf_weights, save_hf
    from cod_megatron.policy.model import build_model

    cfgs = {arch: _model_cfg(d) for arch, d in dirs.items()}
    results: dict = {}
    for tp, pp in SCENARIOS:
        init_distributed(
            _layout(cfgs["llama"], tp, pp), rank=rank, world_size=world_size, init_method=init_method(f"tp{tp}pp{pp}")
        )
        try:
            for arch, d in dirs.items():
                model = build_model(cfgs[arch], _layout(cfgs[arch], tp, pp))
                load_hf_weights(model, d, cfgs[arch])
                results[tp, pp, arch] = _megatron_outputs(model, cfgs[arch])
                save_hf(model, cfgs[arch], _hf_config(arch), os.path.join(out_dir, f"tp{tp}pp{pp}", arch))
        finally:
            destroy_distributed()
    return results


@pytest.mark.dist
@pytest.mark.slow
def test_tp2_and_pp2_load_logits_and_export(hf_dirs, reference, tmp_path):
    ranks = spawn(_sharded_worker, 2, {a: str(d) for a, d in hf_dirs.items()}, str(tmp_path))
    for (tp, pp), arch in ((s, a) for s in SCENARIOS for a in ARCHS):
        first, last = ranks[0][tp, pp, arch], ranks[1][tp, pp, arch]
        _check_against_hf(last, reference[arch])  # TP: every rank gathers the vocab; PP: rank 1 is the last stage
        if pp > 1:
            assert first["logits"] is None
            assert not set(first["tensors"]) & set(last["tensors"])  # the stages own disjoint HF tensors
            assert all(
                k.startswith("model.layers.1.") or k in ("model.norm.weight", "lm_head.weight") for k in last["tensors"]
            )
            merged = {**first["tensors"], **last["tensors"]}
        else:
            _check_against_hf(first, reference[arch])
            _assert_tensors_equal(first["tensors"], last["tensors"])
            merged = first["tensors"]
        _assert_tensors_equal(merged, reference[arch]["tensors"])
        out = tmp_path / f"tp{tp}pp{pp}" / arch
        index = "model.safetensors.index.json"
        assert sorted(os.listdir(out)) == sorted(
            [
                "config.json",
                *(
                    ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", index]
                    if pp > 1
                    else ["model.safetensors"]
                ),
            ]
        )
        torch.testing.assert_close(hf_logits(out, IDS), reference[arch]["logits"], atol=0, rtol=0)


# ---- the CLI ------------------------------------------------------------------------------------------------------
def _cli(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    proc = subprocess.run(
        [sys.executable, "-m", "cod_megatron.convert", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_cli_round_trip_and_trainer_load(hf_dirs, reference, tmp_path):
    arch = "qwen2"
    ckpt, out = tmp_path / "mcore", tmp_path / "hf_out"
    assert _cli("hf-to-mcore", "--hf", str(hf_dirs[arch]), "--out", str(ckpt)) == str(ckpt)
    assert (ckpt / "metadata.json").exists()
    assert _cli("mcore-to-hf", "--ckpt", str(ckpt), "--hf-config", str(hf_dirs[arch]), "--out", str(out)) == str(out)
    _assert_tensors_equal(load_file(out / "model.safetensors"), reference[arch]["tensors"])
    torch.testing.assert_close(hf_logits(out, IDS), reference[arch]["logits"], atol=0, rtol=0)

    # the checkpoint is what PolicyTrainer.load reads (DDP-wrapped chunks, key "model")
    import cod_recipes
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = cod_recipes.get("debug_cpu")
    cfg.model = _model_cfg(hf_dirs[arch])
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:
        trainer = PolicyTrainer(cfg, layout)
        trainer.load(str(ckpt), with_optimizer=False)
        model = trainer.model[0].module.eval()
        with torch.no_grad():
            logits = model(IDS[None], torch.arange(IDS.numel())[None], None)[0]
    finally:
        destroy_distributed()
    torch.testing.assert_close(logits, reference[arch]["logits"], atol=ATOL, rtol=0)
