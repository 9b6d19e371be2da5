"""gpu_check stage ``kernels``: the LM-head kernels against the bf16 GEMM of the same run, and pg_head's determinism.

First ``linear_pg_head`` twice on the same inputs: its hidden and weight gradients must be bitwise equal (no atomics
in its design). Then ``cod_kernels.bench_linear_pg_head`` (its CSV rows, its table) at a TP=1 shape (H 4096,
V 128k) and a TP=8 vocab shard (V 16k), 8k tokens, half the rows in the loss (RL: responses), providers
triton_pg_head / triton_fused (the first kernel) / torch_eager (torch_compile, Liger and the other grid points are
left to ``make bench-kernels``: compiling alone would eat this stage's time slice). The bench's ``torch_gemm`` row
is one ``[T, H] x [H, V]`` GEMM in the same dtype: the summary gives each kernel's full step as a fraction of it
(counted on the rows computed) and its peak memory against eager logits. ``--cpu``: tiny shapes under the
interpreter (the times mean nothing).
"""

from __future__ import annotations

import argparse

import torch

from cod_kernels.bench_linear_pg_head import main as bench
from cod_kernels.linear_pg_head import linear_pg_head

GPU_ARGS = [
    "--shape",
    "8192,4096,131072",
    "--shape",
    "8192,4096,16384",
    "--providers",
    "triton_pg_head,triton_fused,torch_eager",
    "--mask-frac",
    "0.5",
]
KERNELS = ("triton_pg_head", "triton_fused")


def determinism(t: int, h: int, v: int, dtype: torch.dtype, device: str) -> str:
    """Two calls on the same inputs: dH and the fp32 ``main_grad`` must be bitwise equal."""
    gen = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(t, h, generator=gen, device=device).to(dtype)
    weight = (torch.randn(v, h, generator=gen, device=device) / h**0.5).to(dtype).requires_grad_(True)
    labels = torch.randint(0, v, (t,), generator=gen, device=device)
    rows = torch.arange(0, t, 2, device=device)  # half the rows in the loss

    def grad_fn(r, logp, ent):
        return -((labels[r] % 7).float() - 3.0) / 3.0 / rows.numel(), torch.full_like(ent, -0.01 / rows.numel())

    grads = []
    for _ in range(2):
        h_in = hidden.clone().requires_grad_(True)
        main_grad = torch.zeros(v, h, dtype=torch.float32, device=device)
        out = linear_pg_head(h_in, weight, labels, rows=rows, grad_fn=grad_fn, main_grad=main_grad)
        out.surrogate.backward()
        grads.append((h_in.grad, main_grad))
    if not all(g.abs().sum() > 0 for g in grads[0]):
        raise RuntimeError("pg_head determinism check: a gradient is all zeros")
    same = all(torch.equal(a, b) for a, b in zip(grads[0], grads[1], strict=True))
    return f"pg_head_bitwise_equal={same} (T {t}, H {h}, V {v}, {str(dtype).removeprefix('torch.')})"


def summarise(rows: list[dict]) -> list[str]:
    """Per shape and kernel: full-step TFLOP/s and % of the GEMM, ms, peak GiB against eager logits."""
    value = {(r["T"], r["H"], r["V"], r["provider"], r["mode"], r["metric"]): float(r["p50"]) for r in rows}
    shapes = sorted({(r["T"], r["H"], r["V"]) for r in rows})
    out = []
    for t, h, v in shapes:
        gemm = value.get((t, h, v, "torch_gemm", "forward", "tflops"))
        if gemm is None:
            raise ValueError(f"shape {t},{h},{v}: the bench wrote no torch_gemm row")
        parts = [f"V{v}: gemm_tflops={gemm:.3g}"]
        peak_e = value.get((t, h, v, "torch_eager", "full", "peak_mem_gib"))
        for k in KERNELS:
            tflops = value.get((t, h, v, k, "full", "tflops"))
            if tflops is None:
                parts.append(f"{k}=missing")
                continue
            peak = value.get((t, h, v, k, "full", "peak_mem_gib"))
            mem = f" peak_gib={peak:.2f}" if peak is not None else ""
            ms = value[(t, h, v, k, "full", "ms")]
            parts.append(f"{k}: tflops={tflops:.3g} pct_gemm={100 * tflops / gemm:.0f} ms={ms:.2f}{mem}")
        if peak_e:
            parts.append(f"eager peak_gib={peak_e:.2f}")
        out.append(" ".join(parts))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", required=True)
    args = p.parse_args()
    cuda = torch.cuda.is_available()
    lines = [
        determinism(4096, 4096, 32768, torch.bfloat16, "cuda")
        if cuda
        else determinism(64, 16, 96, torch.float32, "cpu")
    ]
    print(lines[0])
    lines += summarise(bench(["--csv", args.csv] + (GPU_ARGS if cuda else ["--cpu-smoke", "--mask-frac", "0.5"])))
    for line in lines[1:]:
        print(line)
    print("RESULT " + " | ".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
