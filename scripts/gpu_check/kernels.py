"""gpu_check stage ``kernels``: the fused LM-head benchmark, with the bf16 GEMM of the same run as the roofline.

Runs ``cod_kernels.bench_fused_linear_logprob`` (its CSV rows, its table) at a TP=1 shape (H 4096, V 128k) and a
TP=8 vocab shard (V 16k), 8k tokens, providers triton_fused / torch_eager / torch_chunked (torch_compile and Liger
are left to ``make bench-kernels``: compiling alone would eat this stage's time slice). The bench's ``torch_gemm``
row is one ``[T, H] x [H, V]`` GEMM in the same dtype: the summary gives the fused kernel's full step as a
fraction of it, and the peak memory of the fused kernel against eager logits. ``--cpu``: the bench's
``--cpu-smoke`` (interpreter; the times mean nothing).
"""

from __future__ import annotations

import argparse

import torch

from cod_kernels.bench_fused_linear_logprob import main as bench

GPU_ARGS = [
    "--shape",
    "8192,4096,131072",
    "--shape",
    "8192,4096,16384",
    "--providers",
    "triton_fused,torch_eager,torch_chunked",
]


def summarise(rows: list[dict]) -> list[str]:
    """Per shape: GEMM TFLOP/s, fused full-step TFLOP/s and % of the GEMM, peak GiB fused vs eager."""
    value = {(r["T"], r["H"], r["V"], r["provider"], r["mode"], r["metric"]): float(r["p50"]) for r in rows}
    shapes = sorted({(r["T"], r["H"], r["V"]) for r in rows})
    out = []
    for t, h, v in shapes:
        gemm = value.get((t, h, v, "torch_gemm", "forward", "tflops"))
        fused = value.get((t, h, v, "triton_fused", "full", "tflops"))
        if gemm is None or fused is None:
            raise ValueError(
                f"shape {t},{h},{v}: the bench wrote no {'torch_gemm' if gemm is None else 'triton_fused'} row"
            )
        ms = value[(t, h, v, "triton_fused", "full", "ms")]
        peak_f = value.get((t, h, v, "triton_fused", "full", "peak_mem_gib"))
        peak_e = value.get((t, h, v, "torch_eager", "full", "peak_mem_gib"))
        mem = f" peak_gib_fused={peak_f:.2f} peak_gib_eager={peak_e:.2f}" if peak_f is not None and peak_e else ""
        out.append(
            f"V{v}: gemm_tflops={gemm:.3g} fused_full_tflops={fused:.3g} fused_pct_gemm={100 * fused / gemm:.0f} "
            f"fused_full_ms={ms:.2f}{mem}"
        )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", required=True)
    args = p.parse_args()
    bench_args = ["--csv", args.csv] + (GPU_ARGS if torch.cuda.is_available() else ["--cpu-smoke"])
    lines = summarise(bench(bench_args))
    for line in lines:
        print(line)
    print("RESULT " + " | ".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
