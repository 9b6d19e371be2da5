"""The default LM head where users run it (issue 31 items 4 and 5; skipped without CUDA).

``pg_head`` with compiled Triton kernels in bf16 -- the trainer's composition: ``linear_pg_head`` with the CoD loss
callback of ``pg_loss_fn`` per chunk, dW into an fp32 ``main_grad``, the value through ``pg_head_loss`` -- against
the fp32 torch reference on the same (bf16-rounded) values; a second run gives bitwise the same dH and ``main_grad``;
and neither it nor the packed attention syncs with the host (``torch.cuda.set_sync_debug_mode("error")``). The CPU
suite runs the same pieces under the Triton interpreter (tests/kernels, tests/policy/test_fused_head.py).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from cod_kernels.linear_pg_head import linear_pg_head, token_loss_grad
from cod_kernels.linear_pg_head_reference import linear_pg_head_reference
from cod_megatron.cod.losses import LossDenominators
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data import PackedBatch, synthetic_packed_batch
from cod_megatron.data.denominators import step_denominators
from cod_megatron.policy.pg_head import pg_head_loss, pg_loss_fn
from tests.kernels.test_fused_linear_logprob import close_scaled

pytestmark = pytest.mark.gpu

V, H, CHUNK = 1000, 256, 96  # several chunks of loss rows, the last one ragged
CFG = AlgorithmConfig(policy_loss="ppo", loss_agg="seq_mean_token_mean", kl_coef=0.05, entropy_coef=0.01)


@contextlib.contextmanager
def no_host_sync(device: torch.device):
    """Any device-to-host sync inside raises (CUDA only: the CPU has nothing to sync with)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def case(device: torch.device) -> tuple[PackedBatch, torch.Tensor, torch.Tensor, torch.Tensor, LossDenominators]:
    """A packed batch with old / reference log-probs, bf16 hidden states and weight; loss rows and denominators
    from the host, as the trainer makes them."""
    batch = synthetic_packed_batch(seed=7, n_segments=9, vocab_size=V, min_len=16, max_len=80)
    g = torch.Generator().manual_seed(8)
    t = batch.num_tokens
    batch.old_logprobs = -torch.rand(t, generator=g) * 4 - 5
    batch.ref_logprobs = batch.old_logprobs + 0.1 * torch.randn(t, generator=g)
    hidden = torch.randn(t, H, generator=g).bfloat16()
    weight = (torch.randn(V, H, generator=g) * H**-0.5 * 2).bfloat16()
    rows = (batch.loss_mask != 0).nonzero().squeeze(1)
    denom = step_denominators([batch]).to(device)
    return batch.to(device), hidden.to(device), weight.to(device), rows.to(device), denom


def run_pg_head(batch, hidden, weight, rows, denom, sync_check: bool = True):
    """One forward-backward as the trainer's ``pg_head`` step: (logp, entropy, loss, dH, main_grad)."""
    h = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    main_grad = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
    with no_host_sync(hidden.device) if sync_check else contextlib.nullcontext():
        loss_fn = pg_loss_fn(batch, denom, CFG, 0)
        out = linear_pg_head(
            h,
            w,
            batch.labels,
            rows=rows,
            grad_fn=token_loss_grad(loss_fn, batch.labels.numel()),
            main_grad=main_grad,
            chunk_rows=CHUNK,
        )
        loss, _, _ = pg_head_loss(tuple(out), batch, denom, CFG, 0)
        loss.backward()
    assert w.grad is None  # dW went to main_grad in the forward
    return out.logp, out.entropy, loss.detach(), h.grad, main_grad


def run_fp32_reference(batch, hidden, weight, rows, denom):
    """The torch reference (whole logits) in fp32 on the same values: (logp, entropy, loss, dH, dW)."""
    h = hidden.float().requires_grad_(True)
    w = weight.float().requires_grad_(True)
    out = linear_pg_head_reference(
        h, w, batch.labels, rows=rows, grad_fn=token_loss_grad(pg_loss_fn(batch, denom, CFG, 0), batch.num_tokens)
    )
    loss, _, _ = pg_head_loss(tuple(out), batch, denom, CFG, 0)
    loss.backward()
    return out.logp, out.entropy, loss.detach(), h.grad, w.grad


def check_pg_head(device: torch.device) -> None:
    batch, hidden, weight, rows, denom = case(device)
    run_pg_head(batch, hidden, weight, rows, denom, sync_check=False)  # compiles the kernels (outside the check)
    logp, ent, loss, dh, main_grad = run_pg_head(batch, hidden, weight, rows, denom)
    r_logp, r_ent, r_loss, r_dh, r_dw = run_fp32_reference(batch, hidden, weight, rows, denom)
    assert logp.dtype == torch.float32 and dh.dtype == torch.bfloat16
    torch.testing.assert_close(logp, r_logp, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ent, r_ent, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loss, r_loss, rtol=1e-4, atol=1e-4)
    assert r_dh.abs().max() > 0 and r_dw.abs().max() > 0
    close_scaled(dh, r_dh, 1e-2)  # one bf16 rounding of the stored hidden gradient
    close_scaled(main_grad, r_dw, 1e-2)
    again = run_pg_head(batch, hidden, weight, rows, denom)
    assert torch.equal(again[3], dh) and torch.equal(again[4], main_grad), "pg_head is not bitwise repeatable"


def test_pg_head_in_bf16_tracks_fp32_repeats_bitwise_and_never_syncs():
    check_pg_head(torch.device("cuda"))


def test_packed_attention_layers_never_sync_on_cuda():
    """Issue 31 item 5 on the device: two layers' forward and backward of the THD attention with the trainer's
    ``packed_seq_params`` (segment plan from the host) raise under the sync debug mode if anything reads back."""
    from cod_megatron.policy.trainer import packed_seq_params
    from tests.policy.test_packed_attention import HN, NG, NP, module

    cuda = torch.device("cuda")
    host = synthetic_packed_batch(seed=3, n_segments=7, vocab_size=50, min_len=2, max_len=40)
    params = packed_seq_params(host.to(cuda))  # on the host: once per micro-batch
    t = host.num_tokens
    q, k, v = (torch.randn(t, n, HN, device=cuda, dtype=torch.bfloat16).requires_grad_() for n in (NP, NG, NG))
    attention = module()
    attention(q, k, v, None, packed_seq_params=packed_seq_params(host.to(cuda))).float().sum().backward()  # warm-up
    torch.cuda.synchronize()
    with no_host_sync(cuda):  # a fresh plan: its indices reach the device inside the check
        for _ in range(2):
            attention(q, k, v, None, packed_seq_params=params).float().square().sum().backward()
    torch.cuda.synchronize()
    assert q.grad is not None and torch.isfinite(q.grad).all()
