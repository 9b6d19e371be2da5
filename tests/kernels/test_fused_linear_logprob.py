"""The fused LM-head log-prob / entropy kernel against materialised-logits torch.

Each test picks its device: CUDA when present (the kernels are compiled there), else the CPU under the Triton
interpreter (``tests/conftest.py`` sets ``TRITON_INTERPRET`` only without CUDA). The TP test's gloo workers always
run on the CPU, under the interpreter they are started with.
"""

import csv

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from cod_kernels.fused_linear_logprob import CPU_CONFIG, KernelConfig, fused_linear_logprob
from cod_kernels.fused_linear_logprob_reference import chunked_linear_logprob, materialized_linear_logprob
from tests.dist import gloo_group, spawn, vocab_shard

# split vocab programs and unequal forward/backward tiles: the partial-merge path and odd tile edges
SPLIT_CONFIG = KernelConfig(16, 16, 16, 1, 1, 32, 16, 32, 1, 1, vocab_splits=3)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def case(t=37, h=48, v=203, *, dtype=torch.float32, seed=0, scale=1.0, keep=0.7, device=DEVICE):
    """Seeded inputs, drawn on the CPU (the same values on any device), placed on ``device``."""
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(t, h, generator=g) * scale).to(dtype)
    weight = (torch.randn(v, h, generator=g) * h**-0.5 * 2).to(dtype)
    labels = torch.randint(0, v, (t,), generator=g)
    mask = torch.rand(t, generator=g) < keep
    w1, w2 = torch.randn(t, generator=g), torch.randn(t, generator=g)
    return tuple(x.to(device) for x in (hidden, weight, labels, mask, w1, w2))


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
    with gloo_group(rank, world):
        hidden, weight, labels, mask, w1, w2 = case(*TP_SHAPE, seed=7, device="cpu")  # gloo moves CPU tensors
        shard, kw = vocab_shard(weight, rank, world)
        return run(fused(**kw), hidden, shard, labels, mask, w1, w2)


@pytest.mark.dist
def test_tp2_matches_tp1(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the workers' kernels run on their CPU tensors, GPU host or not
    out = spawn(_tp_worker, 2)
    data = case(*TP_SHAPE, seed=7)
    ref = [t.cpu() for t in run(oracle, *data)]
    tp1 = [t.cpu() for t in run(fused(), *data)]
    for values in out:
        for a, b in zip(values[:3], ref[:3], strict=True):  # logp, entropy, the summed hidden gradient
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([v[3] for v in out]), tp1[3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([v[3] for v in out]), ref[3], rtol=1e-5, atol=1e-5)


# ---- the benchmark script ------------------------------------------------------------------------------------
def test_bench_cpu_smoke_writes_csv(tmp_path):
    from cod_kernels import bench_fused_linear_logprob

    path = tmp_path / "kernels.csv"
    rows = bench_fused_linear_logprob.main(["--cpu-smoke", "--csv", str(path)])
    assert rows
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == bench_fused_linear_logprob.COLUMNS
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
    hidden, weight, labels, mask, w1, w2 = case(t, h, v, dtype=torch.bfloat16, seed=9, device=dev)
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
    data = case(t, h, v, seed=10, device=dev)
    with LargestAllocation(t * v) as watch:
        out = run(fused(), *data)  # fp32 grad buffers are V x H and T x H: below T x V since H < T
    assert watch.hits == []
    ref = run(lambda a, b, y, m: materialized_linear_logprob(a, b, y, m), *data)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
