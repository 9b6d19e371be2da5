"""The trainer's fused LM-head paths (Triton kernels, interpreter on CPU) equal the materialised-logits path.

Both kernels run through megatron's ``forward_backward_func`` over 3 micro-batches and are compared on what the
optimizer would see: log-probs, the reduced metrics and every parameter's ``main_grad``. ``pg_head`` writes the
output layer's gradient into ``main_grad`` during the forward (several chunks here), so these cases also check
megatron's DDP contract around it: tied embeddings (the embedding's own gradient must survive) and
``overlap_grad_reduce`` (its hook asserts a weight gradient exists).
"""

import pytest
import torch

from tests.dist import free_port
from tests.policy.parallel_utils import batches, local_grads, tiny_cfg, token_batches

CASES = {
    "logprob": ["model.fused_lm_head_kernel=logprob"],
    "pg_head": ["model.lm_head_chunk_rows=8"],
    "pg_head_tied_overlap": [
        "model.lm_head_chunk_rows=8",
        "model.tie_word_embeddings=true",
        "optimizer.overlap_grad_reduce=true",
    ],
    "pg_head_ppo_seq_mean_entropy_temperature": [
        "model.lm_head_chunk_rows=5",
        "algorithm.policy_loss=ppo",
        "algorithm.loss_agg=seq_mean_token_mean",
        "algorithm.entropy_coef=0.01",
        "rollout.temperature=0.7",
    ],
    # per-token advantages, one term formed from the current log-probs (token_batches carry the values)
    "pg_head_token_advantages": ["model.lm_head_chunk_rows=8", "algorithm.teacher_coef=1.0"],
}


def _grads_and_metrics(trainer, mbs):
    for m in trainer.model:
        m.train()
        m.zero_grad_buffer()
    metrics = trainer._run(mbs, forward_only=False)  # DP 1: the step's denominators from these micro-batches
    return local_grads(trainer), metrics


@pytest.mark.parametrize("case", list(CASES))
def test_fused_head_matches_the_reference_loss_logprobs_and_grads(case):
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = tiny_cfg("model.num_layers=2", "model.fused_lm_head=false", *CASES[case])
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:
        trainer = PolicyTrainer(cfg, layout)
        assert not trainer.fused
        mbs = (token_batches if "token_advantages" in case else batches)(cfg.model.vocab_size, n=3)
        ref_logp = trainer.compute_logprobs(mbs)
        ref_grads, ref_metrics = _grads_and_metrics(trainer, mbs)
        trainer.fused = True
        logp = trainer.compute_logprobs(mbs)
        grads, metrics = _grads_and_metrics(trainer, mbs)
        gpt = trainer.model[0].module
        head_weight = gpt.shared_embedding_or_output_weight() if "tied" in case else gpt.output_layer.weight
        wrote_main_grad = getattr(head_weight, "grad_added_to_main_grad", False)
    finally:
        destroy_distributed()
    for a, b in zip(logp, ref_logp, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    for k in ("loss", "logprob", "entropy"):
        assert abs(metrics[k] - ref_metrics[k]) < 1e-5, k
    assert ref_grads.keys() == grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    head = "embedding.word_embeddings.weight" if "tied" in case else "output_layer.weight"
    assert ref_grads[head].abs().sum() > 0
    # pg_head accumulated the head's gradient itself (the flag megatron's DDP hook reads); the first kernel did not
    assert wrote_main_grad == case.startswith("pg_head")
