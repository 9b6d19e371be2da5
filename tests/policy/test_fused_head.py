"""The trainer's fused LM-head path (Triton kernel, interpreter on CPU) equals the materialised-logits path."""

import torch

from cod_megatron.data.denominators import step_denominators
from tests.dist import free_port
from tests.policy.parallel_utils import batches, local_grads, tiny_cfg


def _grads_and_metrics(trainer, mbs):
    for m in trainer.model:
        m.train()
        m.zero_grad_buffer()
    metrics = trainer._run(mbs, forward_only=False, denominators=step_denominators(mbs))
    return local_grads(trainer), metrics


def test_fused_head_matches_the_reference_loss_logprobs_and_grads():
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = tiny_cfg("model.num_layers=2", "model.fused_lm_head=false")
    from cod_megatron.config import finalize

    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:
        trainer = PolicyTrainer(cfg, layout)
        assert not trainer.fused
        mbs = batches(cfg.model.vocab_size, n=2)
        ref_logp = trainer.compute_logprobs(mbs)
        ref_grads, ref_metrics = _grads_and_metrics(trainer, mbs)
        trainer.fused = True
        logp = trainer.compute_logprobs(mbs)
        grads, metrics = _grads_and_metrics(trainer, mbs)
    finally:
        destroy_distributed()
    for a, b in zip(logp, ref_logp, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    for k in ("loss", "logprob", "entropy"):
        assert abs(metrics[k] - ref_metrics[k]) < 1e-5, k
    assert ref_grads.keys() == grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    assert ref_grads["output_layer.weight"].abs().sum() > 0
