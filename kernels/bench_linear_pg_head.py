"""Benchmark of the LM-head policy-gradient op against the first fused kernel and torch: time, TFLOP/s, memory.

``python -m cod_kernels.bench_linear_pg_head --csv docs/benchmarks/kernels.csv --mask-frac 0.7`` on a GPU. Same
CSV columns, timer, roofline GEMM and table as ``bench_fused_linear_logprob`` (whose helpers it uses); the loss
is a REC-style ``-sum A_t logp_t / N - 0.01 sum H_t / N`` over the loss rows, with the advantage a fixed function of
the label so every provider sees the same loss. ``linear_pg_head`` does all its GEMMs in the forward (6 Tm H V) and
its "backward" row is a rescale: compare "full" (the forward/backward TFLOP/s columns count 2 and 4 T H V by the
shared convention). ``--cpu-smoke`` runs tiny shapes under the Triton interpreter, only to test the script.
"""

from __future__ import annotations

import sys

import torch

from cod_kernels.bench_fused_linear_logprob import COLUMNS, Provider, run_benchmark

__all__ = ["COLUMNS", "main"]
KERNEL = "linear_pg_head"
ENT_COEF = 0.01


def _advantage(labels: torch.Tensor) -> torch.Tensor:
    """A deterministic per-token advantage in [-1, 1] (the benchmark has no rollouts)."""
    return ((labels % 7).float() - 3.0) / 3.0


def _providers(cpu_smoke: bool) -> dict[str, Provider]:
    """name -> ``f(hidden, weight, labels, mask) -> scalar loss`` with the same value and gradient."""
    from cod_kernels.fused_linear_logprob import fused_linear_logprob
    from cod_kernels.fused_linear_logprob_reference import chunked_linear_logprob, materialized_linear_logprob
    from cod_kernels.linear_pg_head import linear_pg_head

    chunk = 16 if cpu_smoke else 2048

    def via_logprobs(fn) -> Provider:
        def loss(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            logp, ent = fn(h, w, y, m)
            return (-(_advantage(y) * logp) - ENT_COEF * ent)[m].sum() / m.sum()

        return loss

    def pg_head(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        adv, n = _advantage(y), m.sum()

        def grad_fn(rows: torch.Tensor, logp: torch.Tensor, ent: torch.Tensor):
            return -adv[rows] / n, torch.full_like(ent, -ENT_COEF) / n

        out = linear_pg_head(h, w, y, mask=m, grad_fn=grad_fn, chunk_rows=chunk)
        value = (-(adv * out.logp) - ENT_COEF * out.entropy)[m].sum() / n
        return value.detach() + out.surrogate

    return {
        "triton_pg_head": pg_head,
        "triton_fused": via_logprobs(fused_linear_logprob),
        "torch_eager": via_logprobs(materialized_linear_logprob),
        "torch_chunked": via_logprobs(lambda h, w, y, m: chunked_linear_logprob(h, w, y, m, chunk_rows=chunk)),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; returns the rows it appended."""
    argv = sys.argv[1:] if argv is None else argv
    return run_benchmark(
        argv, kernel=KERNEL, module="cod_kernels.bench_linear_pg_head", providers=_providers, mask_frac=0.7
    )


if __name__ == "__main__":
    main()
