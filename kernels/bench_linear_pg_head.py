"""Benchmark of the LM-head policy-gradient op against the first fused kernel and torch: time, TFLOP/s, memory.

``python -m cod_kernels.bench_linear_pg_head --csv docs/benchmarks/kernels.csv --mask-frac 0.7`` on a GPU. Same
CSV columns, timer, roofline GEMM and table as ``bench_fused_linear_logprob`` (whose helpers it uses); the loss
is a REC-style ``-sum A_t logp_t / N - 0.01 sum H_t / N`` over the loss rows, with the advantage a fixed function of
the label so every provider sees the same loss. ``linear_pg_head`` does all its GEMMs in the forward (6 Tm H V) and
its "backward" row is a rescale: compare "full" (the forward/backward TFLOP/s columns count 2 and 4 T H V by the
shared convention). TFLOP/s count 6 Tm H V on the loss rows Tm, whatever a provider computes besides; ``ms`` is the
wall time for that same useful work. Grid (GPU): H 4096 x V 128K / 16K x T 8K / 32K x 50 % / 100 % loss rows;
torch.compile (of the plain-torch loss over every row) only at 8K tokens; Liger is ``LigerFusedLinearCrossEntropyLoss``
(liger-kernel 0.8.5, its default Triton path at TP 1; cross-entropy only, no entropy output: less work than the
others; its CuTe-DSL / NVSHMEM TP path lives in the separate ``liger-cute-kernels`` package and is not run).
``--png`` draws full-step TFLOP/s against the GEMM rate of the same run. ``--cpu-smoke`` runs tiny shapes under the
Triton interpreter, only to test the script.
"""

from __future__ import annotations

import sys

import torch

from cod_kernels.bench_fused_linear_logprob import (
    COLUMNS,
    Provider,
    ProviderBuilder,
    liger_flce,
    logprob_builders,
    run_benchmark,
)

__all__ = ["COLUMNS", "main"]
KERNEL = "linear_pg_head"
GPU_SHAPES = [(t, 4096, v) for t in (8192, 32768) for v in (131072, 16384)]
"""H 4096 at V 128K (TP 1) and V 16K (one TP-8 shard), 8K and 32K tokens (issue 18's grid)."""
ENT_COEF = 0.01


def _advantage(labels: torch.Tensor) -> torch.Tensor:
    """A deterministic per-token advantage in [-1, 1] (the benchmark has no rollouts)."""
    return ((labels % 7).float() - 3.0) / 3.0


def _providers(cpu_smoke: bool) -> dict[str, ProviderBuilder]:
    """name -> a builder of ``f(hidden, weight, labels, mask) -> scalar loss`` with the same value and gradient; each
    builder imports what its provider needs (only the requested ones are built)."""
    chunk = 16 if cpu_smoke else 2048

    def via_logprobs(fn) -> Provider:
        def loss(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            logp, ent = fn(h, w, y, m)
            return (-(_advantage(y) * logp) - ENT_COEF * ent)[m].sum() / m.sum()

        return loss

    def triton_pg_head() -> Provider:
        from cod_kernels.linear_pg_head import linear_pg_head

        def pg_head(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            adv, n = _advantage(y), m.sum()

            def grad_fn(rows: torch.Tensor, logp: torch.Tensor, ent: torch.Tensor):
                return -adv[rows] / n, torch.full_like(ent, -ENT_COEF) / n

            out = linear_pg_head(h, w, y, mask=m, grad_fn=grad_fn, chunk_rows=chunk)
            value = (-(adv * out.logp) - ENT_COEF * out.entropy)[m].sum() / n
            return value.detach() + out.surrogate

        return pg_head

    def plain_torch(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        lsm = torch.log_softmax((h @ w.T).float(), dim=-1)  # every row: what torch.compile gets to fuse
        logp, ent = lsm.gather(-1, y[:, None]).squeeze(-1), -(lsm.exp() * lsm).sum(-1)
        return torch.where(m, -(_advantage(y) * logp) - ENT_COEF * ent, 0.0).sum() / m.sum()

    def torch_compile() -> Provider:
        return torch.compile(plain_torch, dynamic=False)

    # pg_head first: on a short budget its rows are the ones that must exist
    out: dict[str, ProviderBuilder] = {"triton_pg_head": triton_pg_head} | logprob_builders(via_logprobs, chunk)
    if torch.cuda.is_available():  # inductor on the CPU machine would only time the C++ compiler
        out["torch_compile"] = torch_compile
    out["liger_flce"] = liger_flce  # LigerFusedLinearCrossEntropyLoss: CE only
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; returns the rows it appended."""
    argv = sys.argv[1:] if argv is None else argv
    return run_benchmark(
        argv,
        kernel=KERNEL,
        module="cod_kernels.bench_linear_pg_head",
        providers=_providers,
        mask_frac="0.5,1.0",
        gpu_shapes=GPU_SHAPES,
    )


if __name__ == "__main__":
    main()
