"""GPU checks (skipped without CUDA): the policy on CUDA in bf16 tracks fp32 on a packed batch, same weights."""

import pytest
import torch

from tests.dist import init_method, spawn
from tests.policy.parallel_utils import batches, tiny_cfg

pytestmark = [pytest.mark.gpu, pytest.mark.dist]


def _logits_worker(rank: int, world: int):
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.model import build_model
    from cod_megatron.policy.trainer import model_forward

    cfg = tiny_cfg("run.device=cuda")
    layout = finalize(cfg)
    init_distributed(layout, rank=rank, world_size=world, seed=11, init_method=init_method())
    try:
        batch = batches(cfg.model.vocab_size, n=1)[0]
        batch.tokens, batch.cu_seqlens = batch.tokens.cuda(), batch.cu_seqlens.cuda()
        fp32 = build_model(cfg.model, layout).cuda()
        cfg.model.params_dtype = "bfloat16"
        bf16 = build_model(cfg.model, layout).cuda()
        bf16.load_state_dict(fp32.state_dict())  # copy_ casts: the same weights, rounded to bf16
        with torch.no_grad():
            return model_forward(fp32, batch).float().cpu(), model_forward(bf16, batch).float().cpu()
    finally:
        destroy_distributed()


def test_cuda_bf16_packed_logits_track_fp32():
    fp32, bf16 = spawn(_logits_worker, 1)[0]
    assert torch.isfinite(bf16).all() and fp32.abs().max() > 0
    torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.05)


def _trainer_worker(rank: int, world: int):
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = tiny_cfg("run.device=cuda")
    layout = finalize(cfg)
    init_distributed(layout, rank=rank, world_size=world, seed=11, init_method=init_method())
    try:
        trainer = PolicyTrainer(cfg, layout)
        host = batches(cfg.model.vocab_size, n=2)  # packed on the host, as the loop packs them
        assert trainer.device.type == "cuda" and all(b.tokens.device.type == "cpu" for b in host)
        logp = trainer.compute_logprobs(host)
        metrics = trainer.train_step(host)
        return trainer.device.type, [lp.device.type for lp in logp], metrics
    finally:
        destroy_distributed()


def test_the_trainer_takes_host_batches_to_the_gpu_in_its_own_path():
    device, logp_devices, metrics = spawn(_trainer_worker, 1)[0]
    assert device == "cuda" and logp_devices == ["cuda", "cuda"]
    assert metrics["update_ok"] == 1.0 and metrics["grad_norm"] > 0
