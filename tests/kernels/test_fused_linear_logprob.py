"""The fused LM-head log-prob / entropy kernel (Triton interpreter on CPU) against materialised-logits torch."""

import csv

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from cod_kernels.fused_linear_logprob import CPU_CONFIG, KernelConfig, fused_linear_logprob
from cod_kernels.fused_linear_logprob_reference import chunked_linear_logprob, materialized_linear_logprob
from cod_kernels.fused_policy_loss import fused_packed_policy_loss, reference_packed_policy_loss
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data import synthetic_packed_batch
from cod_megatron.policy.loss import step_denominators
from tests.dist import init_method, spawn

# split vocab programs and unequal forward/backward tiles: the partial-merge path and odd tile edges
SPLIT_CONFIG = KernelConfig(16, 16, 16, 1, 1, 32, 16, 32, 1, 1, vocab_splits=3)


def case(t=37, h=48, v=203, *, dtype=torch.float32, seed=0, scale=1.0, keep=0.7):
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(t, h, generator=g) * scale).to(dtype)
    weight = (torch.randn(v, h, generator=g) * h**-0.5 * 2).to(dtype)
    labels = torch.randint(0, v, (t,), generator=g)
    mask = torch.rand(t, generator=g) < keep
    w1, w2 = torch.randn(t, generator=g), torch.randn(t, generator=g)
    return hidden, weight, labels, mask, w1, w2


def run(fn, hidden, weight, labels, mask, w1, w2):
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    logp, ent = fn(h, w, labels, mask)
    ((logp * w1).sum() + (ent * w2).sum()).backward()
    return logp.detach(), ent.detach(), h.grad, w.grad


def oracle(h, w, y, mask, **kw):
    """Materialised logits in float64: the exact values to compare to."""
    lp, en = materialized_linear_logprob(h.double(), w.double(), y, mask, **kw)
    return lp.float(), en.float()


def fused(config=None, **kw):
    return lambda h, w, y, m: fused_linear_logprob(h, w, y, m, config=config, **kw)


def close_scaled(actual, expected, rel):
    """max |a - e| <= rel * max |e| (bf16 gradients: absolute error scales with the gradient's size)."""
    actual, expected = actual.float(), expected.float()
    err, size = (actual - expected).abs().max().item(), expected.abs().max().item()
    assert err <= rel * max(size, 1e-6), f"max error {err:.3g} vs {rel} * {size:.3g}"


@pytest.mark.parametrize(
    "shape,config",
    [((37, 48, 203), CPU_CONFIG), ((37, 48, 203), SPLIT_CONFIG), ((5, 16, 16), CPU_CONFIG), ((20, 33, 70), None)],
)
def test_fp32_matches_materialised_logits(shape, config):
    data = case(*shape)
    out = run(fused(config), *data)
    ref = run(oracle, *data)
    for name, a, b in zip(("logp", "entropy", "grad_hidden", "grad_weight"), out, ref, strict=True):
        torch.testing.assert_close(a, b.float(), rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_bf16_matches_fp32_oracle_on_the_same_values():
    hidden, weight, labels, mask, w1, w2 = case(dtype=torch.bfloat16, seed=1)
    lp, en, gh, gw = run(fused(), hidden, weight, labels, mask, w1, w2)
    assert gh.dtype == gw.dtype == torch.bfloat16 and lp.dtype == torch.float32
    rlp, ren, rgh, rgw = run(oracle, hidden, weight, labels, mask, w1, w2)
    # fp32 accumulation of bf16 products: the values agree to fp32 rounding; gradients carry bf16 rounding of dz
    torch.testing.assert_close(lp, rlp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(en, ren, rtol=1e-5, atol=1e-5)
    close_scaled(gh, rgh, 1e-2)
    close_scaled(gw, rgw, 1e-2)
    # and the bf16 materialised path megatron runs today is no closer to the oracle than the kernel
    blp, _, bgh, _ = run(
        lambda h, w, y, m: materialized_linear_logprob(h, w, y, m), hidden, weight, labels, mask, w1, w2
    )
    assert (lp - rlp).abs().max() <= (blp - rlp).abs().max() + 1e-6


def test_masked_rows_are_zero_and_get_no_gradient():
    hidden, weight, labels, mask, w1, w2 = case(seed=2, keep=0.5)
    assert 0 < mask.sum() < mask.numel()
    lp, en, gh, gw = run(fused(), hidden, weight, labels, mask, w1, w2)
    assert (lp[~mask] == 0).all() and (en[~mask] == 0).all() and (gh[~mask] == 0).all()
    assert (gh[mask].abs().sum(-1) > 0).all() and (en[mask] > 0).all()
    # nothing in the loss: zeros and no gradient at all
    none = torch.zeros_like(mask)
    lp, en, gh, gw = run(fused(), hidden, weight, labels, none, w1, w2)
    assert (lp == 0).all() and (en == 0).all()
    assert (gh is None or (gh == 0).all()) and (gw is None or (gw == 0).all())


def test_stable_at_large_logits_and_entropy_without_cancellation():
    hidden, weight, labels, mask, w1, w2 = case(t=16, h=32, v=100, seed=3, scale=300.0, keep=1.0)
    lp, en, gh, gw = run(fused(), hidden, weight, labels, mask, w1, w2)
    rlp, ren, rgh, rgw = run(oracle, hidden, weight, labels, mask, w1, w2)
    assert torch.isfinite(lp).all() and torch.isfinite(gh).all() and torch.isfinite(gw).all()
    assert rlp.abs().max() > 1e3  # logits in the thousands: exp() would overflow without the running max
    torch.testing.assert_close(lp, rlp, rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(en, ren, rtol=1e-4, atol=1e-4)  # relative to the max: no 1e3-sized cancellation
    assert (en >= 0).all()
    close_scaled(gw, rgw, 1e-4)  # fp32 logits of 1e3 carry 1e-4 absolute error into p


def test_chunked_reference_matches_materialised():
    data = case(seed=4)
    out = run(lambda h, w, y, m: chunked_linear_logprob(h, w, y, m, chunk_rows=8), *data)
    ref = run(lambda h, w, y, m: materialized_linear_logprob(h, w, y, m), *data)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---- the policy loss on top ---------------------------------------------------------------------------------
CFGS = [
    AlgorithmConfig(),
    AlgorithmConfig(policy_loss="ppo", loss_agg="seq_mean_token_mean", kl_coef=0.1, entropy_coef=0.01),
    AlgorithmConfig(policy_loss="is", loss_agg="seq_mean_token_sum", entropy_coef=0.05, kl_estimator="k3"),
]


def loss_case(v, h, seed=0, dtype=torch.float32):
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
    return batch, hidden, weight


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


# ---- memory: nothing logits-sized on the kernel path ---------------------------------------------------------
class LargestAllocation(TorchDispatchMode):
    """Records every op with an output of at least ``limit`` elements of ``dtype`` (counted in bytes: the Triton
    interpreter moves arguments as raw uint8 storages)."""

    def __init__(self, limit, dtype=torch.float32):
        super().__init__()
        self.limit_bytes, self.hits = limit * dtype.itemsize, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for x in tree_flatten(out)[0]:
            if isinstance(x, torch.Tensor) and x.numel() * x.element_size() >= self.limit_bytes:
                self.hits.append((str(func), tuple(x.shape)))
        return out


def test_no_logits_sized_tensor_on_the_kernel_path():
    t, h, v = 64, 32, 200  # H < T, so the weight-sized gradient buffers stay below T * V
    hidden, weight, labels, mask, w1, w2 = case(t, h, v, seed=6, keep=0.8)
    with LargestAllocation(t * v) as fused_watch:
        run(fused(), hidden, weight, labels, mask, w1, w2)
    assert fused_watch.hits == []
    with LargestAllocation(t * v) as ref_watch:  # the detector does see the materialised path
        run(lambda a, b, y, m: materialized_linear_logprob(a, b, y, m), hidden, weight, labels, mask, w1, w2)
    assert any(shape == (t, v) for _, shape in ref_watch.hits)


# ---- tensor parallel over the vocabulary ---------------------------------------------------------------------
TP_SHAPE = (29, 32, 203)  # V odd: the shards differ in size (102 + 101)


def _tp_worker(rank, world):
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=init_method())
    try:
        hidden, weight, labels, mask, w1, w2 = case(*TP_SHAPE, seed=7)
        shards = weight.chunk(world)
        start = sum(s.shape[0] for s in shards[:rank])
        kw = dict(vocab_start=start, group=dist.group.WORLD, reduce_hidden_grad=True)
        values = run(fused(**kw), hidden, shards[rank], labels, mask, w1, w2)
        cfg = CFGS[1]
        batch, lh, lw = loss_case(v=203, h=32, seed=8)
        lshards = lw.chunk(world)
        denom = step_denominators([batch])
        lstart = sum(s.shape[0] for s in lshards[:rank])
        loss = loss_and_grads(
            fused_packed_policy_loss, lh, lshards[rank], batch, denom, cfg, **(kw | dict(vocab_start=lstart))
        )
        return values, loss
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_tp2_matches_tp1():
    out = spawn(_tp_worker, 2)
    data = case(*TP_SHAPE, seed=7)
    ref = run(oracle, *data)
    tp1 = run(fused(), *data)
    for values, _ in out:
        for a, b in zip(values[:3], ref[:3], strict=True):  # logp, entropy, the summed hidden gradient
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([v[3] for v, _ in out]), tp1[3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([v[3] for v, _ in out]), ref[3], rtol=1e-5, atol=1e-5)

    batch, lh, lw = loss_case(v=203, h=32, seed=8)
    loss, n, metrics, gh, gw = loss_and_grads(
        fused_packed_policy_loss, lh, lw, batch, step_denominators([batch]), CFGS[1]
    )
    for _, (r_loss, r_n, r_metrics, r_gh, _) in out:
        assert int(r_n) == int(n)
        torch.testing.assert_close(r_loss, loss, rtol=1e-5, atol=1e-5)
        for k in metrics:
            torch.testing.assert_close(r_metrics[k], metrics[k], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(r_gh, gh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([o[1][4] for o in out]), gw, rtol=1e-5, atol=1e-5)


# ---- the benchmark script ------------------------------------------------------------------------------------
def test_bench_cpu_smoke_writes_csv(tmp_path):
    from cod_kernels import bench_fused_loss

    path = tmp_path / "kernels.csv"
    rows = bench_fused_loss.main(["--cpu-smoke", "--csv", str(path)])
    assert rows
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == bench_fused_loss.COLUMNS
    assert {"kernel", "provider", "mode", "metric", "T", "H", "V", "p50", "p20", "p80", "gpu", "git_sha"} <= set(
        table[0]
    )
    providers = {r["provider"] for r in table}
    assert {"triton_fused", "torch_eager", "torch_chunked"} <= providers
    assert {r["mode"] for r in table} >= {"forward", "backward", "full"}
    assert all(float(r["p50"]) > 0 for r in table if r["metric"] == "ms")
    assert all("--cpu-smoke" in r["command"] for r in table)


# ---- GPU: realistic shapes -----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_bf16_realistic_shape_matches_fp32_oracle():
    dev = torch.device("cuda")
    t, h, v = 4096, 4096, 32768
    hidden, weight, labels, mask, w1, w2 = (x.to(dev) for x in case(t, h, v, dtype=torch.bfloat16, seed=9))
    lp, en, gh, gw = run(fused(), hidden, weight, labels, mask, w1, w2)
    rlp, ren, rgh, rgw = run(
        lambda a, b, y, m: materialized_linear_logprob(a, b, y, m, upcast=True), hidden, weight, labels, mask, w1, w2
    )
    torch.testing.assert_close(lp, rlp, rtol=1e-4, atol=2e-3)
    torch.testing.assert_close(en, ren, rtol=1e-4, atol=2e-3)
    close_scaled(gh, rgh, 2e-2)
    close_scaled(gw, rgw, 2e-2)


@pytest.mark.gpu
def test_gpu_fp32_matches_and_no_logits_sized_allocation():
    dev = torch.device("cuda")
    t, h, v = 8192, 1024, 32768
    data = [x.to(dev) for x in case(t, h, v, seed=10)]
    with LargestAllocation(t * v) as watch:
        out = run(fused(), *data)  # fp32 grad buffers are V x H and T x H: below T x V since H < T
    assert watch.hits == []
    ref = run(lambda a, b, y, m: materialized_linear_logprob(a, b, y, m), *data)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
