"""The LM-head policy-gradient op (gradient computed in the forward) against materialised logits and autograd.

CPU under the Triton interpreter (``tests/conftest.py``), fp32, ``chunk_rows`` well below the loss rows so every
case runs several chunks (and a ragged last one). Oracles differentiate the loss through the full logits in
float64, so they check the op's chunk loop, row passes, in-place dz, main_grad accumulation and scaling together.
"""

import csv
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from cod_kernels.fused_linear_logprob_reference import materialized_linear_logprob
from cod_kernels.linear_pg_head import linear_pg_head, token_loss_grad
from cod_kernels.linear_pg_head_reference import linear_pg_head_reference
from cod_kernels.linear_pg_head_rows import CPU_ROW_PASS, TORCH_ROW_PASS, row_grad_, row_stats
from cod_megatron.cod.losses import LossDenominators, LossOptions, compute_denominators, policy_loss
from cod_megatron.cod.token_advantages import TokenAdvantages
from cod_megatron.config import AlgorithmConfig
from tests.dist import gloo_group, spawn, vocab_shard
from tests.kernels.test_fused_linear_logprob import LargestAllocation

CHUNK = 7  # ~26 loss rows of 37: four chunks, the last one ragged
ENT_COEF = 0.01
ROW_PASSES = [pytest.param(None, id="triton"), pytest.param(TORCH_ROW_PASS, id="torch")]
"""The Triton row passes (under the interpreter here) and their torch form (the trainer's CPU path)."""


def case(t=37, h=24, v=203, *, seed=0, scale=1.0, keep=0.7):
    """Seeded inputs: hidden, weight, labels, loss mask, advantages, old log-probs."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(t, h, generator=g) * scale
    weight = torch.randn(v, h, generator=g) * h**-0.5 * 2
    labels = torch.randint(0, v, (t,), generator=g)
    mask = torch.rand(t, generator=g) < keep
    adv = torch.randn(t, generator=g)
    old = torch.randn(t, generator=g) * 0.3 - 5.0
    return hidden, weight, labels, mask, adv, old


def simple_pg_loss(logp, entropy, mask, adv, old):
    """``-sum_t A_t exp(logp_t - old_t) / N - ENT_COEF sum_t H_t / N`` over the loss rows (any dtype)."""
    m, n = mask.to(logp.dtype), mask.sum()
    return (-(adv * torch.exp(logp - old)) * m).sum() / n - ENT_COEF * (entropy * m).sum() / n


def simple_pg_grad(mask, adv, old):
    """The same loss's per-token gradient, written by hand: what a trainer would pass as ``grad_fn``."""
    n = mask.sum()

    def grad_fn(rows, logp, entropy):
        return -adv[rows] * torch.exp(logp - old[rows]) / n, torch.full_like(entropy, -ENT_COEF) / n

    return grad_fn


def opd_loss(logp, entropy, mask, teacher):
    """On-policy distillation (cod.md 8), an advantage formed from the current log-probs:
    ``-sum_t sg(teacher_t - logp_t) logp_t / N`` over the loss rows (any dtype)."""
    m, n = mask.to(logp.dtype), mask.sum()
    return (-(teacher.to(logp.dtype) - logp.detach()) * logp * m).sum() / n


def opd_grad(mask, teacher):
    """Its gradient by hand: ``d/dlogp_t [-sg(teacher_t - logp_t) logp_t] / N = -(teacher_t - logp_t) / N`` at the
    log-prob the op hands the callback (this forward's); no entropy term."""
    n = mask.sum()

    def grad_fn(rows, logp, entropy):
        return -(teacher[rows] - logp) / n, None

    return grad_fn


def oracle(hidden, weight, labels, mask, loss_fn, scale=1.0):
    """float64 materialised logits, loss, ``(scale * loss).backward()``: (logp, entropy, dhidden, dweight) fp32."""
    h, w = hidden.double().requires_grad_(True), weight.double().requires_grad_(True)
    logp, ent = materialized_linear_logprob(h, w, labels, mask)
    (scale * loss_fn(logp, ent)).backward()
    return logp.float(), ent.float(), h.grad.float(), w.grad.float()


def fused(hidden, weight, labels, mask, grad_fn, scale=1.0, main_grad=None, **kw):
    """The op, its surrogate backpropagated with ``scale`` as megatron's schedule would: (logp, ent, dh, dw)."""
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    out = linear_pg_head(h, w, labels, mask=mask, grad_fn=grad_fn, main_grad=main_grad, chunk_rows=CHUNK, **kw)
    (out.surrogate * scale).backward()
    return out.logp, out.entropy, h.grad, w.grad


def assert_all_close(actual, expected, names=("logp", "entropy", "grad_hidden", "grad_weight"), tol=1e-5):
    for name, a, b in zip(names, actual, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("row_pass", ROW_PASSES)
def test_simple_pg_loss_matches_materialised_autograd_with_returned_weight_grad(row_pass):
    hidden, weight, labels, mask, adv, old = case()
    ref = oracle(hidden, weight, labels, mask, lambda lp, en: simple_pg_loss(lp, en, mask, adv, old), scale=2.5)
    out = fused(hidden, weight, labels, mask, simple_pg_grad(mask, adv, old), scale=2.5, config=row_pass)
    assert_all_close(out, ref)


@pytest.mark.parametrize("row_pass", ROW_PASSES)
def test_main_grad_receives_scaled_weight_grad_and_autograd_returns_none(row_pass):
    hidden, weight, labels, mask, adv, old = case(seed=1)
    ref = oracle(hidden, weight, labels, mask, lambda lp, en: simple_pg_loss(lp, en, mask, adv, old), scale=0.25)
    before = torch.randn(weight.shape, generator=torch.Generator().manual_seed(5))
    main_grad = before.clone()
    out = fused(
        hidden, weight, labels, mask, simple_pg_grad(mask, adv, old), 0.25, main_grad, grad_scale=0.25, config=row_pass
    )
    assert out[3] is None  # the weight's gradient went to main_grad (megatron: grad_added_to_main_grad)
    assert_all_close(out[:3], ref[:3], names=("logp", "entropy", "grad_hidden"))
    torch.testing.assert_close(main_grad - before, ref[3], rtol=1e-5, atol=1e-5)  # accumulated: beta = 1


def test_rows_index_bool_mask_and_megatron_sbh_layout_give_the_same_result():
    hidden, weight, labels, mask, adv, old = case(seed=2)
    grad_fn = simple_pg_grad(mask, adv, old)
    by_mask = fused(hidden, weight, labels, mask, grad_fn)
    by_rows = fused(hidden, weight, labels, None, grad_fn, rows=mask.nonzero().squeeze(1))
    assert_all_close(by_rows, by_mask, tol=0.0)
    sbh = fused(hidden[:, None], weight, labels[:, None], mask[:, None], grad_fn)  # [S, B=1, H] as megatron's
    assert_all_close((sbh[0][:, 0], sbh[1][:, 0], sbh[2][:, 0], sbh[3]), by_mask, tol=0.0)


@pytest.mark.parametrize("row_pass", ROW_PASSES)
def test_bf16_inputs_match_the_fp32_oracle_on_the_same_values(row_pass):
    hidden, weight, labels, mask, adv, old = (x.bfloat16() if x.is_floating_point() else x for x in case(seed=11))
    adv, old = adv.float(), old.float()

    def loss(lp: torch.Tensor, en: torch.Tensor) -> torch.Tensor:
        return simple_pg_loss(lp, en, mask, adv.to(lp.dtype), old.to(lp.dtype))

    ref = oracle(hidden, weight, labels, mask, loss)
    lp, en, gh, gw = fused(hidden, weight, labels, mask, simple_pg_grad(mask, adv, old), config=row_pass)
    assert lp.dtype == en.dtype == torch.float32 and gh.dtype == gw.dtype == torch.bfloat16
    torch.testing.assert_close(lp, ref[0], rtol=1e-5, atol=1e-5)  # fp32 logits of the bf16 values
    torch.testing.assert_close(en, ref[1], rtol=1e-5, atol=1e-5)
    for a, b in ((gh, ref[2]), (gw, ref[3])):  # one bf16 rounding of the stored gradients
        assert (a.float() - b).abs().max() <= 1e-2 * b.abs().max()


@pytest.mark.parametrize(
    "cfg,options",
    [
        (AlgorithmConfig(policy_loss="ppo", loss_agg="seq_mean_token_mean", kl_coef=0.1, entropy_coef=0.01), None),
        (
            AlgorithmConfig(policy_loss="is", loss_agg="seq_mean_token_sum", entropy_coef=0.05, kl_estimator="k3"),
            LossOptions(rollout_correction="seq_tis", rollout_cap=1.5),
        ),
    ],
)
def test_cod_policy_loss_callback_matches_policy_loss_through_logits(cfg, options):
    hidden, weight, labels, mask, adv, old = case(seed=3)
    g = torch.Generator().manual_seed(13)
    ref_lp, roll_lp = old + 0.2 * torch.randn(37, generator=g), old + 0.2 * torch.randn(37, generator=g)
    sample_ids = torch.arange(37) // 5  # samples of 5 tokens: they straddle the 7-row chunks
    denom = compute_denominators([mask], [sample_ids])

    def loss(logp: torch.Tensor, ent: torch.Tensor, denom: LossDenominators = denom) -> torch.Tensor:
        dt = logp.dtype
        extra = {} if options is None else {"rollout_logp": roll_lp.to(dt), "options": options}
        return policy_loss(
            logp, old.to(dt), adv, mask, sample_ids, denom, cfg, entropy=ent, ref_logp=ref_lp.to(dt), **extra
        )[0]

    ref = oracle(hidden, weight, labels, mask, loss, scale=0.5)
    out = fused(hidden, weight, labels, mask, token_loss_grad(loss, 37), 0.5)
    assert_all_close(out, ref)
    # and the torch reference (whole logits, the same callback) agrees with both
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    r = linear_pg_head_reference(h, w, labels, rows=mask.nonzero().squeeze(1), grad_fn=token_loss_grad(loss, 37))
    (0.5 * r.surrogate).backward()
    assert_all_close((r.logp, r.entropy, h.grad, w.grad), ref)


def test_an_advantage_formed_from_the_current_logprobs_matches_autograd_through_the_logits():
    """The fused op, its torch reference, a hand-written callback and the trainer's policy loss with a per-token
    advantage ``A_t = segment_t + term_t + c (teacher_t - sg(logp_t))`` (REC, on-policy) all give the oracle's
    gradient: the callback sees each chunk's current log-probs."""
    hidden, weight, labels, mask, adv, old = case(seed=5)
    teacher = old + 0.5 * torch.randn(37, generator=torch.Generator().manual_seed(6))
    ref = oracle(hidden, weight, labels, mask, lambda lp, en: opd_loss(lp, en, mask, teacher), scale=0.5)
    assert_all_close(fused(hidden, weight, labels, mask, opd_grad(mask, teacher), 0.5), ref)

    ids, cfg = torch.arange(37), AlgorithmConfig(loss_agg="seq_mean_token_mean", teacher_coef=0.7)
    denom = compute_denominators([mask], [ids])

    def loss(logp: torch.Tensor, ent: torch.Tensor) -> torch.Tensor:
        a = TokenAdvantages(adv, teacher.to(logp.dtype), cfg.teacher_coef).at(logp)
        return policy_loss(logp, logp.detach(), a, mask, ids, denom, cfg, entropy=ent)[0]

    ref = oracle(hidden, weight, labels, mask, loss, scale=0.5)
    assert_all_close(fused(hidden, weight, labels, mask, token_loss_grad(loss, 37), 0.5), ref)
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    r = linear_pg_head_reference(h, w, labels, rows=mask.nonzero().squeeze(1), grad_fn=token_loss_grad(loss, 37))
    (0.5 * r.surrogate).backward()
    assert_all_close((r.logp, r.entropy, h.grad, w.grad), ref)


@pytest.mark.parametrize("with_entropy", [True, False])
def test_the_torch_row_passes_equal_the_triton_kernels_on_a_vocab_shard(with_entropy):
    """Stats and dz of both backends on one TP shard's logits: labels on other shards count 0 at z_y and get no
    one-hot term; large logits keep the running-max form exact."""
    g = torch.Generator().manual_seed(13)
    z = torch.randn(9, 150, generator=g) * 20
    y = torch.randint(-150, 300, (9,), generator=g).to(torch.int32)  # vocab_start subtracted: some off-shard
    y[:3] = torch.tensor([0, 149, 77], dtype=torch.int32)
    assert ((y < 0) | (y >= 150)).any() and ((y >= 0) & (y < 150)).any()
    stats = {name: row_stats(z.clone(), y, cfg) for name, cfg in (("triton", CPU_ROW_PASS), ("torch", TORCH_ROW_PASS))}
    torch.testing.assert_close(stats["torch"], stats["triton"], rtol=1e-6, atol=1e-6)
    m, s, u, _ = stats["triton"]
    lse, ent = m + torch.log(s), torch.log(s) - u / s
    g_lp = torch.randn(9, generator=g)
    g_ent = torch.randn(9, generator=g) if with_entropy else None
    dz = {}
    for name, cfg in (("triton", CPU_ROW_PASS), ("torch", TORCH_ROW_PASS)):
        dz[name] = z.clone()
        row_grad_(dz[name], y, lse, ent, g_lp, g_ent, cfg)
    torch.testing.assert_close(dz["torch"], dz["triton"], rtol=1e-6, atol=1e-6)
    assert not torch.equal(dz["torch"], z)


@pytest.mark.parametrize("row_pass", ROW_PASSES)
def test_masked_rows_are_zero_get_no_gradient_and_never_reach_a_gemm(row_pass):
    hidden, weight, labels, mask, adv, old = case(seed=4, keep=0.5)
    poisoned = hidden.masked_fill(~mask[:, None], float("nan"))  # any GEMM over a masked row would spread NaN
    lp, en, gh, gw = fused(poisoned, weight, labels, mask, simple_pg_grad(mask, adv, old), config=row_pass)
    assert torch.isfinite(gw).all() and torch.isfinite(gh).all()
    assert (lp[~mask] == 0).all() and (en[~mask] == 0).all() and (gh[~mask] == 0).all()
    assert (gh[mask].abs().sum(-1) > 0).all() and (en[mask] > 0).all()


def test_no_loss_rows_give_zeros_zero_gradients_and_leave_main_grad_alone():
    hidden, weight, labels, mask, adv, old = case(seed=4)
    none = torch.zeros_like(mask)
    lp, en, gh, gw = fused(hidden, weight, labels, none, simple_pg_grad(mask, adv, old))
    assert (lp == 0).all() and (en == 0).all() and (gh == 0).all() and (gw == 0).all()
    main_grad = torch.ones(weight.shape)
    fused(hidden, weight, labels, none, simple_pg_grad(mask, adv, old), main_grad=main_grad)
    assert (main_grad == 1).all()


@pytest.mark.parametrize("row_pass", ROW_PASSES)
def test_a_callback_without_entropy_gradient_equals_a_zero_entropy_gradient(row_pass):
    hidden, weight, labels, mask, adv, old = case(seed=12)
    with_ent = simple_pg_grad(mask, adv, old)

    def logp_only(rows, logp, entropy):
        return with_ent(rows, logp, entropy)[0], None

    def zero_ent(rows, logp, entropy):
        return with_ent(rows, logp, entropy)[0], torch.zeros_like(entropy)

    a, b = (fused(hidden, weight, labels, mask, fn, config=row_pass) for fn in (logp_only, zero_ent))
    assert_all_close(a, b, tol=0.0)
    assert not torch.equal(
        a[2], fused(hidden, weight, labels, mask, with_ent, config=row_pass)[2]
    )  # the entropy term does count


@pytest.mark.parametrize("row_pass", ROW_PASSES)
def test_logits_in_the_thousands_stay_finite_and_exact(row_pass):
    hidden, weight, labels, mask, adv, _ = case(t=16, h=32, v=100, seed=5, scale=300.0, keep=1.0)
    n = mask.sum()

    def rec_loss(logp, entropy):  # -A logp (REC, no ratio: exp(logp - old) would underflow at logp ~ -1e3)
        return -(adv * logp).sum() / n - ENT_COEF * entropy.sum() / n

    ref = oracle(hidden, weight, labels, mask, rec_loss)
    lp, en, gh, gw = fused(hidden, weight, labels, mask, token_loss_grad(rec_loss, 16), config=row_pass)
    assert ref[0].abs().max() > 1e3
    assert all(torch.isfinite(x).all() for x in (lp, en, gh, gw)) and (en >= 0).all()
    torch.testing.assert_close(lp, ref[0], rtol=1e-5, atol=1e-2)  # fp32 logits of 1e3 carry ~1e-4 absolute error
    torch.testing.assert_close(en, ref[1], rtol=1e-4, atol=1e-4)  # relative to the max: no 1e3-sized cancellation
    for a, b in ((gh, ref[2]), (gw, ref[3])):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()


def test_forward_only_calls_skip_the_callback_and_the_backward_gemms():
    hidden, weight, labels, mask, adv, old = case(seed=6)
    calls = []

    def grad_fn(rows, logp, entropy):
        calls.append(rows.numel())
        return torch.zeros_like(logp), None

    ref_lp, ref_en = materialized_linear_logprob(hidden.double(), weight.double(), labels, mask)
    tm, h, v = int(mask.sum()), hidden.shape[1], weight.shape[0]
    for ctx, fn in ((torch.no_grad(), grad_fn), (torch.enable_grad(), None)):
        with ctx, FlopCounterMode(display=False) as flops:
            out = linear_pg_head(hidden.requires_grad_(True), weight, labels, mask=mask, grad_fn=fn, chunk_rows=CHUNK)
        assert flops.get_total_flops() == 2 * tm * h * v and not out.surrogate.requires_grad
        torch.testing.assert_close(out.logp, ref_lp.float(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.entropy, ref_en.float(), rtol=1e-5, atol=1e-5)
    assert calls == []


def test_flops_are_six_tm_h_v_for_forward_and_backward():
    hidden, weight, labels, mask, adv, old = case(seed=7)
    tm, h, v = int(mask.sum()), hidden.shape[1], weight.shape[0]
    assert tm < mask.numel()
    with FlopCounterMode(display=False) as flops:
        fused(hidden, weight, labels, mask, simple_pg_grad(mask, adv, old))
    assert abs(flops.get_total_flops() / (6 * tm * h * v) - 1) <= 0.02


def test_no_logits_sized_tensor_when_chunks_are_smaller_than_the_loss_rows():
    hidden, weight, labels, mask, adv, old = case(t=64, h=16, v=200, seed=8, keep=0.8)
    tm = int(mask.sum())
    assert CHUNK < tm and hidden.shape[1] < tm  # weight-sized buffers [V, H] stay below Tm x V
    with LargestAllocation(tm * weight.shape[0]) as watch:
        fused(hidden, weight, labels, mask, simple_pg_grad(mask, adv, old))
    assert watch.hits == []
    with LargestAllocation(tm * weight.shape[0]) as ref_watch:  # the detector does see the materialised path
        oracle(hidden.float(), weight, labels, mask, lambda lp, en: simple_pg_loss(lp, en, mask, adv, old))
    assert ref_watch.hits


class PeakLiveBytes(TorchDispatchMode):
    """Peak bytes of the tensors the ops inside the block create and keep alive (storages, counted once; views of
    ``external`` tensors -- inputs, main_grad -- do not count). The interpreter's uint8 argument copies are left out:
    compiled Triton reads the tensors in place."""

    def __init__(self, *external: torch.Tensor):
        super().__init__()
        self.skip = {t.untyped_storage().data_ptr() for t in external}
        self.live, self.peak, self.refs = 0, 0, {}

    def _release(self, key: int, nbytes: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for x in tree_flatten(out)[0]:
            if not isinstance(x, torch.Tensor) or x.dtype == torch.uint8:
                continue
            storage = x.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if key in self.skip:
                continue
            if key not in self.refs:
                self.refs[key] = 0
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            self.refs[key] += 1
            weakref.finalize(x, self._release, key, nbytes)
        return out


def test_peak_extra_memory_is_one_chunk_of_logits_plus_row_vectors():
    t, h, v = 64, 8, 2000  # V >> H, T: the [chunk, V] block dominates everything else the op allocates
    hidden, weight, labels, mask, adv, old = case(t=t, h=h, v=v, seed=10, keep=0.8)
    tm = int(mask.sum())

    def peak(chunk_rows: int) -> int:
        hid, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        main_grad = torch.zeros(v, h)
        with PeakLiveBytes(hid, w, main_grad, labels, mask, adv, old) as watch:
            out = linear_pg_head(
                hid,
                w,
                labels,
                mask=mask,
                grad_fn=simple_pg_grad(mask, adv, old),
                main_grad=main_grad,
                chunk_rows=chunk_rows,
            )
            out.surrogate.backward()
        return watch.peak

    small = 4 * (4 * t * h + 8 * t)  # dH, the stored loss-row gradients, a chunk of hidden; [T] vectors
    assert peak(CHUNK) <= CHUNK * v * 4 + small
    assert peak(tm) >= tm * v * 4  # the detector does see a whole-rows block


def test_rejects_a_wrong_main_grad_both_rows_and_mask_and_a_misshapen_callback_result():
    hidden, weight, labels, mask, adv, old = case(seed=9)
    with pytest.raises(ValueError, match="main_grad"):
        linear_pg_head(hidden, weight, labels, grad_fn=simple_pg_grad(mask, adv, old), main_grad=weight.half())
    with pytest.raises(ValueError, match="rows or mask"):
        linear_pg_head(hidden, weight, labels, rows=mask.nonzero().squeeze(1), mask=mask)
    with pytest.raises(ValueError, match="grad_fn"):
        fused(hidden, weight, labels, mask, lambda rows, lp, en: (adv, None))  # [T] instead of the chunk's [c]


# ---- tensor parallel over the vocabulary ---------------------------------------------------------------------
TP_SHAPE = dict(t=29, h=16, v=203, seed=10)  # V odd: shards of 102 and 101 rows


def _tp_grads(mask, adv, old):
    """The two callbacks the TP test runs: the simple PG loss and OPD's advantage from the current log-probs."""
    return simple_pg_grad(mask, adv, old), opd_grad(mask, old + 0.5 * adv)


def _tp_worker(rank, world):
    with gloo_group(rank, world):
        hidden, weight, labels, mask, adv, old = case(**TP_SHAPE)
        shard, kw = vocab_shard(weight, rank, world)
        out = []
        for grad in _tp_grads(mask, adv, old):
            main_grad = torch.zeros(shard.shape)
            lp, en, gh, _ = fused(hidden, shard, labels, mask, grad, 0.5, main_grad, **kw, grad_scale=0.5)
            out.append((lp, en, gh, main_grad))
        return out


@pytest.mark.dist
def test_tp2_matches_tp1():
    out = spawn(_tp_worker, 2)
    hidden, weight, labels, mask, adv, old = case(**TP_SHAPE)
    for i, grad in enumerate(_tp_grads(mask, adv, old)):
        tp1 = fused(hidden, weight, labels, mask, grad, 0.5)
        for rank in out:
            lp, en, gh, _ = rank[i]
            assert_all_close((lp, en, gh), tp1[:3], names=("logp", "entropy", "grad_hidden"))
        torch.testing.assert_close(torch.cat([rank[i][3] for rank in out]), tp1[3], rtol=1e-5, atol=1e-5)


# ---- the benchmark script ------------------------------------------------------------------------------------
def test_bench_cpu_smoke_appends_rows_with_the_shared_columns(tmp_path):
    from cod_kernels import bench_fused_linear_logprob, bench_linear_pg_head

    path = tmp_path / "kernels.csv"
    png = tmp_path / "chart.png"
    argv = ["--cpu-smoke", "--providers", "triton_pg_head,torch_eager", "--csv", str(path), "--png", str(png)]
    bench_linear_pg_head.main(argv + ["--mask-frac", "0.5,1.0"])
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == bench_linear_pg_head.COLUMNS == bench_fused_linear_logprob.COLUMNS
    assert {r["kernel"] for r in table} == {"linear_pg_head"}
    assert {r["provider"] for r in table} == {"torch_gemm", "triton_pg_head", "torch_eager"}
    assert {r["mode"] for r in table if r["provider"] == "triton_pg_head"} == {"forward", "backward", "full"}
    assert all(float(r["p50"]) > 0 for r in table if r["metric"] == "ms")
    assert all("--cpu-smoke" in r["command"] for r in table)
    # one set of rows per loss fraction; TFLOP/s count only the loss rows (fewer at 50 %: same ms, less work)
    assert {r["mask_frac"] for r in table if r["provider"] == "triton_pg_head"} == {"0.5", "1.0"}
    assert png.stat().st_size > 0
