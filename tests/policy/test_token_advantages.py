"""Per-token advantages in both loss paths: the reference (logits, autograd) and the fused ``pg_head`` op.

``A_t = segment_t + term_t + c (teacher_t - sg(logp_t))`` (``cod_megatron.cod.token_advantages``). Checked here on
a small model-free head (hidden = an embedding row per token, one output matrix), fp32: segment advantages are
bitwise the old path; a hand-derived gradient; micro-batch and DP splits (1e-6), the CP split (1e-5), and the fused
head against the reference. The full-model TP / PP / CP / DP splits are in ``test_model_parallel.py``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cod_kernels.fused_linear_logprob_reference import vocab_parallel_logprobs
from cod_kernels.linear_pg_head import linear_pg_head, token_loss_grad
from cod_megatron.cod.losses import policy_loss
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data import PackedBatch, concat_packed, pack_segments
from cod_megatron.data.context_parallel import split_for_context_parallel
from cod_megatron.data.denominators import sample_ids, segment_offsets, step_denominators
from cod_megatron.policy.loss import check_teacher_logprobs, packed_policy_loss
from cod_megatron.policy.pg_head import pg_head_loss, pg_loss_fn
from tests.policy.parallel_utils import token_batches, with_token_values

V, H = 50, 8
CFGS = {
    "rec_opd": AlgorithmConfig(teacher_coef=1.0),
    "ppo_seq_mean_kl_entropy": AlgorithmConfig(
        policy_loss="ppo", loss_agg="seq_mean_token_mean", teacher_coef=0.5, kl_coef=0.1, entropy_coef=0.01
    ),
    "is_seq_sum": AlgorithmConfig(policy_loss="is", loss_agg="seq_mean_token_sum", teacher_coef=0.3),
}


def head_params(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An embedding table (the hidden state of a token is its row) and an output matrix: a model with no attention,
    so any split of the tokens sees the same per-token inputs."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(V, H, generator=g), torch.randn(V, H, generator=g) * H**-0.5 * 2


def with_old_and_ref(batch: PackedBatch, seed: int) -> PackedBatch:
    """Old and reference log-probs near the model's (ratios away from 1: clipping and KL do something)."""
    g = torch.Generator().manual_seed(seed)
    base = -torch.log(torch.tensor(float(V)))
    n = batch.num_tokens
    return dataclasses.replace(
        batch,
        old_logprobs=base + 0.3 * torch.randn(n, generator=g),
        ref_logprobs=base + 0.3 * torch.randn(n, generator=g),
    )


def step_batches() -> list[PackedBatch]:
    return [with_old_and_ref(b, 300 + i) for i, b in enumerate(token_batches(V, n=4))]


def run_reference(batches, offsets, denom, cfg, params):
    """Megatron's chain over micro-batches through materialised logits: ``(loss, dE, dW)`` after one division by
    the summed local token counts."""
    e, w = (p.clone().requires_grad_(True) for p in params)
    total, count = 0.0, 0
    for b, o in zip(batches, offsets, strict=True):
        logp, ent = vocab_parallel_logprobs(e[b.tokens] @ w.T, b.labels)
        loss, n, _ = packed_policy_loss(logp, ent, b, denom, cfg, o)
        loss.backward()
        total, count = total + loss.detach(), count + int(n)
    return total / count, e.grad / count, w.grad / count


def run_fused(batches, offsets, denom, cfg, params, chunk_rows=5):
    """The same through ``linear_pg_head`` (the loss gradient per chunk of rows, in the forward) and the trainer's
    ``pg_loss_fn`` / ``pg_head_loss``."""
    e, w = (p.clone().requires_grad_(True) for p in params)
    total, count = 0.0, 0
    for b, o in zip(batches, offsets, strict=True):
        out = linear_pg_head(
            e[b.tokens],
            w,
            b.labels,
            rows=(b.loss_mask != 0).nonzero().squeeze(1),
            grad_fn=token_loss_grad(pg_loss_fn(b, denom, cfg, o), b.num_tokens),
            chunk_rows=chunk_rows,
        )
        loss, n, _ = pg_head_loss(tuple(out), b, denom, cfg, o)
        loss.backward()
        total, count = total + loss.detach(), count + int(n)
    return total / count, e.grad / count, w.grad / count


RUNS = {"reference": run_reference, "pg_head": run_fused}


def assert_same(got, want, tol):
    for name, a, b in zip(("loss", "dE", "dW"), got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")


# ---- segment advantages: the old path, bit for bit --------------------------------------------------------------
@pytest.mark.parametrize("cfg", [*CFGS.values(), AlgorithmConfig(policy_loss="ppo", loss_agg="seq_mean_token_sum")])
def test_segment_advantages_are_bitwise_the_old_path(cfg):
    """No per-token values (teacher_coef set or not): loss, metrics and gradient equal the pre-issue-34 path,
    which spread the segment advantages and called ``policy_loss`` directly."""
    params = head_params()
    for b in step_batches():
        b = dataclasses.replace(b, token_advantage_terms=None, teacher_logprobs=None)
        denom = step_denominators([b])
        out = {}
        for path in ("old", "new"):
            e, w = (p.clone().requires_grad_(True) for p in params)
            logp, ent = vocab_parallel_logprobs(e[b.tokens] @ w.T, b.labels)
            if path == "old":
                adv = b.advantages[b.segment_ids]
                loss, n, metrics = policy_loss(
                    logp,
                    b.old_logprobs,
                    adv,
                    b.loss_mask,
                    sample_ids(b),
                    denom,
                    cfg,
                    entropy=ent,
                    ref_logp=b.ref_logprobs,
                )
            else:
                loss, n, metrics = packed_policy_loss(logp, ent, b, denom, cfg)
            loss.backward()
            out[path] = (loss.detach(), n, metrics, e.grad, w.grad)
        old, new = out["old"], out["new"]
        assert torch.equal(old[0], new[0]) and old[1] == new[1]
        assert old[2].keys() == new[2].keys() and all(torch.equal(old[2][k], new[2][k]) for k in old[2])
        assert torch.equal(old[3], new[3]) and torch.equal(old[4], new[4])


# ---- a gradient by hand -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("old_shift", [None, [0.1, -0.1, 0.05, 0.0]])
def test_hand_computed_gradient_of_a_per_token_advantage_from_the_current_logprobs(old_shift):
    """One segment ``[1, 2, 3, 4]`` with prompt ``[1]``: positions 0-2 are loss tokens. REC (on-policy, or old
    log-probs within the clip range: the one-side mask keeps all), token_mean, so the returned loss is
    ``sum_t -A_t logp_t`` and ``dloss/dlogp_t = -A_t`` with A_t read at the current log-prob (stop-gradient; never
    at the old one):

        A = 0.5 + [0.1, -0.2, 0.3] + 0.5 ([-1, -2, -0.5] - [-1.5, -1, -0.5]) = [0.85, -0.2, 0.8]
        loss = -(0.85 (-1.5) + (-0.2)(-1) + 0.8 (-0.5)) = 1.475,   grad = [-0.85, 0.2, -0.8, 0]
    """
    b = pack_segments([[1, 2, 3, 4]], [1], [0.5])
    assert b.loss_mask.tolist() == [1, 1, 1, 0]
    b = dataclasses.replace(
        b,
        token_advantage_terms=torch.tensor([0.1, -0.2, 0.3, 0.0]),
        teacher_logprobs=torch.tensor([-1.0, -2.0, -0.5, 0.0]),
    )
    logp = torch.tensor([-1.5, -1.0, -0.5, -3.0], requires_grad=True)
    if old_shift is not None:
        b = dataclasses.replace(b, old_logprobs=logp.detach() + torch.tensor(old_shift))
    cfg = AlgorithmConfig(teacher_coef=0.5)
    loss, n, _ = packed_policy_loss(logp, torch.zeros(4), b, step_denominators([b]), cfg)
    loss.backward()
    assert int(n) == 3
    assert loss.item() == pytest.approx(1.475, abs=1e-6)
    torch.testing.assert_close(logp.grad, torch.tensor([-0.85, 0.2, -0.8, 0.0]))


# ---- splits -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", list(RUNS))
@pytest.mark.parametrize("cfg_name", list(CFGS))
def test_micro_batch_and_dp_splits_give_the_same_loss_and_gradient(path, cfg_name):
    cfg, data, params = CFGS[cfg_name], step_batches(), head_params()
    offsets = segment_offsets(data)
    denom = step_denominators(data)  # the whole step's, before any split
    whole = run_reference([concat_packed(data)], [0], denom, cfg, params)
    splits = {
        "4 micro": (data, offsets),
        "2 micro": ([concat_packed(data[:2]), concat_packed(data[2:])], [0, offsets[2]]),
        # DP 2: rank 0 runs micro-batches 0 and 2, rank 1 runs 1 and 3; DDP sums the two ranks' gradients
        "2 DP": ([data[0], data[2], data[1], data[3]], [offsets[0], offsets[2], offsets[1], offsets[3]]),
    }
    for name, (mbs, offs) in splits.items():
        got = RUNS[path](mbs, offs, denom, cfg, params)
        assert_same(got, whole, tol=1e-6), name


@pytest.mark.parametrize("path", list(RUNS))
@pytest.mark.parametrize("cp", [2, 3])
def test_context_parallel_split_gives_the_same_loss_and_gradient(path, cp):
    """Every micro-batch cut over ``cp`` ranks (load-balanced chunks, padded segments); DDP sums the ranks'."""
    cfg, data, params = CFGS["ppo_seq_mean_kl_entropy"], step_batches(), head_params()
    offsets = segment_offsets(data)
    denom = step_denominators(data)
    whole = run_reference(data, offsets, denom, cfg, params)
    shards = [split_for_context_parallel(b, cp, r) for b in data for r in range(cp)]
    got = RUNS[path](shards, [o for o in offsets for _ in range(cp)], denom, cfg, params)
    assert_same(got, whole, tol=1e-5)


def test_the_current_logprob_term_changes_the_gradient():
    """Guards the split tests: the teacher term and the per-token terms are live (else they would compare
    segment advantages only)."""
    data, params = step_batches(), head_params()
    offsets, denom = segment_offsets(data), step_denominators(data)
    with_all = run_reference(data, offsets, denom, CFGS["rec_opd"], params)
    no_teacher = run_reference(data, offsets, denom, AlgorithmConfig(), params)
    plain = [dataclasses.replace(b, token_advantage_terms=None) for b in data]
    no_terms = run_reference(plain, offsets, denom, CFGS["rec_opd"], params)
    for other in (no_teacher, no_terms):
        assert (with_all[2] - other[2]).abs().max() > 1e-3


def test_teacher_coef_without_teacher_logprobs_is_refused_on_the_host():
    cfg = AlgorithmConfig(teacher_coef=1.0)
    [b] = token_batches(V, n=1)
    check_teacher_logprobs([b], cfg)
    check_teacher_logprobs([dataclasses.replace(b, teacher_logprobs=None)], AlgorithmConfig())
    padding = pack_segments([[0] * 4], [4], [0.0])  # no loss token: needs no teacher
    check_teacher_logprobs([b, padding], cfg)
    with pytest.raises(ValueError, match="teacher"):
        check_teacher_logprobs([dataclasses.replace(b, teacher_logprobs=None)], cfg)
    assert with_token_values(b, 1).teacher_logprobs is not None


def test_clip_mode_none_reaches_the_loss():
    """``algorithm.clip_mode=none`` (OPD's "REC with clip none"): tokens the one-side mask drops are kept."""
    (batch,) = step_batches()[:1]
    logp = batch.old_logprobs + 0.5  # every ratio e^0.5 > 1 + eps_high: positive advantages are masked
    denom = step_denominators([batch])
    batch = dataclasses.replace(batch, advantages=batch.advantages.abs() + 0.1)
    one_side = packed_policy_loss(logp, torch.zeros_like(logp), batch, denom, AlgorithmConfig())[2]
    none = packed_policy_loss(logp, torch.zeros_like(logp), batch, denom, AlgorithmConfig(clip_mode="none"))[2]
    assert one_side["clip_frac"][0] > 0 and none["clip_frac"][0] == 0
