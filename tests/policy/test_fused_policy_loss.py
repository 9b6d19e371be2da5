"""The CoD policy loss of a packed micro-batch straight from the final hidden states (no logits tensor) equals the
trainer's materialised-logits path: values, metrics and gradients, bf16, and tensor parallel over the vocabulary.

The fused kernel gives per-token log-probs and entropy (the memory-heavy part); the unchanged torch loss
(``cod_megatron.policy.loss.packed_policy_loss``) runs on those [T] vectors, so REC / IS / PPO, TIS, KL, entropy
and the megatron scaling chain are the trainer's own, by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch

from cod_kernels.fused_linear_logprob import fused_linear_logprob
from cod_kernels.fused_linear_logprob_reference import materialized_linear_logprob
from cod_megatron.cod.losses import LossDenominators
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data import PackedBatch, synthetic_packed_batch
from cod_megatron.data.denominators import step_denominators
from cod_megatron.policy.loss import packed_policy_loss
from tests.dist import gloo_group, spawn, vocab_shard
from tests.kernels.test_fused_linear_logprob import DEVICE, close_scaled


# ---- the two paths: kernel or materialised logits, then the trainer's own loss ----------------------------------
def packed_loss_from_hidden(
    logprob_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    hidden: torch.Tensor,
    weight: torch.Tensor,
    batch: PackedBatch,
    denom: LossDenominators,
    cfg: AlgorithmConfig,
    sample_offset: int,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``packed_policy_loss`` from ``hidden [T, H]`` (or ``[T, 1, H]``) and the output-layer shard ``weight``: the
    log-probs of the loss tokens by ``logprob_fn`` (keyword arguments, TP ones included, go to it), then the trainer's
    loss on them. Same ``(loss, num_tokens, metrics)`` contract."""
    h = hidden.reshape(-1, hidden.shape[-1])  # megatron's decoder gives [T, 1, H] for a packed THD row
    if h.shape[0] != batch.num_tokens:
        raise ValueError(f"hidden has {h.shape[0]} rows, the batch {batch.num_tokens} tokens")
    logp, ent = logprob_fn(h, weight, batch.labels, batch.loss_mask != 0, **kwargs)
    if cfg.entropy_coef == 0:
        ent = ent.detach()  # only a metric then: the backward skips the entropy term
    return packed_policy_loss(logp, ent, batch, denom, cfg, sample_offset)


# the fused kernel: keyword arguments as :func:`fused_linear_logprob` (vocab_start, group, reduce_hidden_grad, config)
fused_packed_policy_loss = partial(packed_loss_from_hidden, fused_linear_logprob)
# the trainer's path today (materialised logits, then the loss), the oracle for the fused one: keyword arguments as
# :func:`materialized_linear_logprob` (vocab_start, group, upcast)
reference_packed_policy_loss = partial(packed_loss_from_hidden, materialized_linear_logprob)


# ---- the tests -----------------------------------------------------------------------------------------------
CFGS = [
    AlgorithmConfig(),
    AlgorithmConfig(policy_loss="ppo", loss_agg="seq_mean_token_mean", kl_coef=0.1, entropy_coef=0.01),
    AlgorithmConfig(policy_loss="is", loss_agg="seq_mean_token_sum", entropy_coef=0.05, kl_estimator="k3"),
]


def loss_case(v, h, seed=0, dtype=torch.float32, device=DEVICE):
    """A packed batch with old / ref / rollout log-probs near the true ones, hidden states and a weight, on
    ``device`` (CUDA when present: compiled kernels; else the CPU under the Triton interpreter)."""
    batch = synthetic_packed_batch(seed=seed, n_segments=5, vocab_size=v)
    g = torch.Generator().manual_seed(seed + 100)
    t = batch.num_tokens
    hidden = torch.randn(t, h, generator=g).to(dtype)
    weight = (torch.randn(v, h, generator=g) * h**-0.5 * 2).to(dtype)
    with torch.no_grad():
        lp, _ = materialized_linear_logprob(hidden, weight, batch.labels, upcast=True)
    batch.old_logprobs = lp + 0.1 * torch.randn(t, generator=g)
    batch.ref_logprobs = lp + 0.2 * torch.randn(t, generator=g)
    batch.rollout_logprobs = lp + 0.05 * torch.randn(t, generator=g)
    device = torch.device(device)
    return batch.to(device), hidden.to(device), weight.to(device)


def loss_and_grads(fn, hidden, weight, batch, denom, cfg, **kw):
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    loss, n, metrics = fn(h, w, batch, denom, cfg, 0, **kw)
    loss.backward()
    return loss.detach(), n, {k: v.detach() for k, v in metrics.items()}, h.grad, w.grad


@pytest.mark.parametrize("cfg", CFGS, ids=["rec", "ppo_kl_ent_seqmean", "is_ent_seqsum"])
def test_fused_policy_loss_matches_trainer_path(cfg):
    batch, hidden, weight = loss_case(v=97, h=32)
    denom = step_denominators([batch])
    f_loss, f_n, f_m, f_gh, f_gw = loss_and_grads(fused_packed_policy_loss, hidden, weight, batch, denom, cfg)
    r_loss, r_n, r_m, r_gh, r_gw = loss_and_grads(reference_packed_policy_loss, hidden, weight, batch, denom, cfg)
    assert int(f_n) == int(r_n) == int(batch.loss_mask.sum())
    assert f_m.keys() == r_m.keys()
    torch.testing.assert_close(f_loss, r_loss, rtol=1e-5, atol=1e-5)
    for k in r_m:
        torch.testing.assert_close(f_m[k], r_m[k], rtol=1e-5, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    torch.testing.assert_close(f_gh, r_gh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f_gw, r_gw, rtol=1e-5, atol=1e-5)
    assert (f_gh[batch.loss_mask == 0] == 0).all()


def test_fused_policy_loss_bf16_and_3d_hidden():
    cfg = CFGS[1]
    batch, hidden, weight = loss_case(v=64, h=32, seed=5, dtype=torch.bfloat16)
    denom = step_denominators([batch])
    f_loss, _, _, f_gh, f_gw = loss_and_grads(fused_packed_policy_loss, hidden[:, None], weight, batch, denom, cfg)
    r_loss, _, _, r_gh, r_gw = loss_and_grads(
        reference_packed_policy_loss, hidden, weight, batch, denom, cfg, upcast=True
    )
    assert f_gh.shape == (batch.num_tokens, 1, 32)
    torch.testing.assert_close(f_loss, r_loss, rtol=1e-4, atol=1e-4)
    close_scaled(f_gh[:, 0], r_gh, 1e-2)
    close_scaled(f_gw, r_gw, 1e-2)


def _tp_worker(rank, world):
    with gloo_group(rank, world):
        batch, lh, lw = loss_case(v=203, h=32, seed=8, device="cpu")  # gloo moves CPU tensors
        shard, kw = vocab_shard(lw, rank, world)
        return loss_and_grads(fused_packed_policy_loss, lh, shard, batch, step_denominators([batch]), CFGS[1], **kw)


@pytest.mark.dist
def test_tp2_fused_policy_loss_matches_tp1(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the workers' kernels run on their CPU tensors, GPU host or not
    out = spawn(_tp_worker, 2)
    batch, lh, lw = loss_case(v=203, h=32, seed=8, device="cpu")
    loss, n, metrics, gh, gw = loss_and_grads(
        fused_packed_policy_loss, lh, lw, batch, step_denominators([batch]), CFGS[1]
    )
    for r_loss, r_n, r_metrics, r_gh, _ in out:
        assert int(r_n) == int(n)
        torch.testing.assert_close(r_loss, loss, rtol=1e-5, atol=1e-5)
        for k in metrics:
            torch.testing.assert_close(r_metrics[k], metrics[k], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(r_gh, gh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([o[4] for o in out]), gw, rtol=1e-5, atol=1e-5)
