"""HF weights in: a local ``model.hf_path`` gives the trainer its start weights and the config its shapes.

The tiny HF Llama differs from the debug_cpu recipe in every shape field the recipe leaves at its default (arch,
RoPE theta, norm epsilon), so filling from config.json is exercised along with the exact weight load.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cod_megatron.config import ConfigError, RunConfig, apply_overrides, finalize
from cod_megatron.models.source import resolve_model
from tests.dist import free_port
from tests.policy.parallel_utils import tiny_cfg


def hf_llama_config():
    """The debug_cpu model as an HF Llama whose defaulted fields differ from ModelConfig's (arch, RoPE theta, norm
    epsilon): built through the inverse map, so filling from config.json is a round trip."""
    import cod_recipes
    from cod_megatron.models.hf_config import hf_config_from_model

    model = replace(cod_recipes.get("debug_cpu").model, arch="llama", rope_theta=500000.0, norm_epsilon=1e-5)
    return hf_config_from_model(model)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    """A random tiny HF Llama saved with save_pretrained; norms randomised too (HF inits them at 1)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(hf_llama_config())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("hf_llama")
    model.save_pretrained(path)
    return path


def _cfg(hf_dir: Path, *overrides: str) -> RunConfig:
    return tiny_cfg(f"model.hf_path={hf_dir}", "env.warm_start_steps=0", *overrides)


def test_shapes_left_at_default_are_filled_from_config_json(hf_dir):
    model = _cfg(hf_dir).model
    assert (model.arch, model.rope_theta, model.norm_epsilon) == ("llama", 500000.0, 1e-5)
    assert (model.num_layers, model.kv_channels, model.vocab_size) == (4, 16, 44)  # the recipe's, which agree
    bare = RunConfig()
    bare.run.device, bare.rollout.engine = "cpu", "embedded"
    bare.model.hf_path = str(hf_dir)
    resolve_model(bare.model)  # what the command line does before validation
    finalize(bare)
    assert (bare.model.num_layers, bare.model.vocab_size, bare.model.max_position_embeddings) == (4, 44, 2048)


@pytest.mark.parametrize(
    "override,field",
    [
        ("model.num_layers=3", "model.num_layers"),
        ("model.vocab_size=64", "model.vocab_size"),
        ("model.tie_word_embeddings=true", "model.tie_word_embeddings"),
    ],
)
def test_a_recipe_value_that_disagrees_with_config_json_names_the_field(hf_dir, override, field):
    with pytest.raises(ConfigError) as err:
        _cfg(hf_dir, override)
    assert err.value.field == field
    assert "config.json" in err.value.reason


def test_an_unsupported_config_json_names_hf_path(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "mistral"}')
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path)
    assert err.value.field == "model.hf_path"


def test_a_hub_id_leaves_the_recipe_shapes_alone():
    import cod_recipes

    cfg = cod_recipes.get("qwen3_8b_cod_8gpu_h100")
    before = cfg.model.num_layers, cfg.model.vocab_size
    apply_overrides(cfg, ["model.num_layers=35"])
    resolve_model(cfg.model)  # offline: "Qwen/Qwen3-8B" is not a local directory, nothing is read
    finalize(cfg)
    assert (cfg.model.num_layers, cfg.model.vocab_size) == (35, before[1])


def _start(cfg: RunConfig) -> dict[str, torch.Tensor]:
    from cod_megatron.loop import run_parts
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_export import export_hf_weights

    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:
        trainer = run_parts.start_trainer(cfg, layout, renderer=None)
        return {k: v.clone() for k, v in export_hf_weights(trainer.model, cfg.model).items()}
    finally:
        destroy_distributed()


def test_start_trainer_loads_the_hf_weights_exactly(hf_dir):
    from safetensors.torch import load_file

    hf = load_file(hf_dir / "model.safetensors")
    got = _start(_cfg(hf_dir))
    assert got.keys() == hf.keys()
    for name, tensor in hf.items():
        assert torch.equal(got[name], tensor), name


def test_checkpoint_load_wins_over_hf_path(hf_dir, tmp_path):
    from cod_megatron.loop import run_parts
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_export import export_hf_weights

    cfg = _cfg(hf_dir)
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:  # a checkpoint of different weights: the HF weights plus one
        trainer = run_parts.start_trainer(cfg, layout, renderer=None)
        with torch.no_grad():
            for chunk in trainer.model:
                for p in chunk.parameters():
                    p.add_(1.0)
        trainer.save(str(tmp_path / "ckpt"))
        saved = {k: v.clone() for k, v in export_hf_weights(trainer.model, cfg.model).items()}
    finally:
        destroy_distributed()
    got = _start(_cfg(hf_dir, f"checkpoint.load={tmp_path / 'ckpt'}"))
    for name, tensor in saved.items():
        assert torch.equal(got[name], tensor), name


# ---- bf16: megatron's fp32 master copies must follow every load that bypasses the optimizer ----------------------
def _bf16_step_at_lr_0(cfg: RunConfig) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Start a bf16 trainer from ``cfg`` (HF weights or checkpoint), take one optimizer step at learning rate 0;
    returns the weights before and after the step (HF names)."""
    from cod_megatron.loop import run_parts
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_export import export_hf_weights
    from tests.policy.parallel_utils import batches

    layout = finalize(cfg)
    cfg.model.params_dtype = "bfloat16"  # after finalize, which refuses bf16 on CPU (megatron itself runs it there)
    cfg.optimizer.lr = 0.0  # after finalize (lr must be > 0): an exact step leaves every weight where it is
    init_distributed(layout, master_port=free_port())
    try:
        trainer = run_parts.start_trainer(cfg, layout, renderer=None)
        assert next(trainer.model[0].parameters()).dtype == torch.bfloat16
        before = {k: v.clone() for k, v in export_hf_weights(trainer.model, cfg.model).items()}
        trainer.train_step(batches(cfg.model.vocab_size, n=2))
        after = {k: v.clone() for k, v in export_hf_weights(trainer.model, cfg.model).items()}
    finally:
        destroy_distributed()
    return before, after


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("distributed_optimizer", [False, True], ids=["float16_optimizer", "distributed_optimizer"])
def test_bf16_hf_weights_survive_the_first_step(hf_dir, distributed_optimizer, device):
    """The weights megatron's optimizer writes back after a step are its fp32 master copies: taken before the HF
    load, they would be the random init (the whole pre-trained model lost at step 1)."""
    from safetensors.torch import load_file

    hf = load_file(hf_dir / "model.safetensors")
    flag = f"optimizer.use_distributed_optimizer={str(distributed_optimizer).lower()}"
    cfg = _cfg(hf_dir, flag, f"run.device={device}")
    before, after = _bf16_step_at_lr_0(cfg)
    for name, tensor in hf.items():
        assert torch.equal(before[name].cpu(), tensor.to(torch.bfloat16)), name
        assert torch.equal(after[name], before[name]), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("distributed_optimizer", [False, True], ids=["float16_optimizer", "distributed_optimizer"])
def test_bf16_weights_only_checkpoint_survives_the_first_step(hf_dir, tmp_path, distributed_optimizer, device):
    """The same for a checkpoint without optimizer state (a warm start, a converted HF checkpoint)."""
    from cod_megatron.loop import run_parts
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed

    flag = f"optimizer.use_distributed_optimizer={str(distributed_optimizer).lower()}"
    cfg = _cfg(hf_dir, flag, f"run.device={device}")
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:  # weights that are neither the init nor the HF ones: HF plus a half
        trainer = run_parts.start_trainer(cfg, layout, renderer=None)
        with torch.no_grad():
            for chunk in trainer.model:
                for p in chunk.parameters():
                    p.add_(0.5)
        trainer.save(str(tmp_path / "ckpt"), with_optimizer=False)
    finally:
        destroy_distributed()
    before, after = _bf16_step_at_lr_0(
        _cfg(hf_dir, flag, f"run.device={device}", f"checkpoint.load={tmp_path / 'ckpt'}")
    )
    from safetensors.torch import load_file

    hf = load_file(hf_dir / "model.safetensors")
    for name, tensor in hf.items():
        assert torch.equal(before[name].cpu(), (tensor + 0.5).to(torch.bfloat16)), name
        assert torch.equal(after[name], before[name]), name
