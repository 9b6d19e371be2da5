"""Benchmark of the fused LM-head log-prob loss against torch and Liger: time, effective TFLOP/s, peak memory.

``python -m cod_kernels.bench_fused_linear_logprob --csv docs/benchmarks/kernels.csv`` on a GPU: for every shape and
provider the forward, backward and full step (median and 20/80 % quantiles of ``triton.testing.do_bench``), the
effective TFLOP/s counting 2/4/6 T H V (the GEMM work of forward / backward / both; the kernel's recompute is not
counted), and the peak memory above the inputs. A plain bf16 GEMM ``[T, H] x [H, V]`` measured in the same run is
the roofline. ``--cpu-smoke`` runs tiny shapes under the Triton interpreter, only to test the script (its times mean
nothing). Rows are appended to the CSV, never rewritten. Liger computes its gradients inside the forward, so its
"backward" row is only the gradient copy; compare "full".
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import torch

COLUMNS = [
    "date",
    "kernel",
    "provider",
    "mode",
    "metric",
    "T",
    "H",
    "V",
    "mask_frac",
    "p50",
    "p20",
    "p80",
    "gpu",
    "git_sha",
    "command",
]
KERNEL = "fused_linear_logprob"
GPU_SHAPES = [(t, h, v) for t in (8192, 32768) for h, v in ((4096, 131072), (8192, 152064))]
SMOKE_SHAPES = [(24, 32, 80)]
MODE_FLOPS = {"forward": 2, "backward": 4, "full": 6}
COMPILE_MAX_TOKENS = 8192
"""torch.compile runs only up to this many tokens: compiling and autotuning the larger shapes would eat the budget."""

Provider = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
ProviderBuilder = Callable[[], Provider]
"""Imports and builds one provider; only the requested ones are called."""


def _git_sha() -> str:
    """Short commit of the working tree (the CSV ties every number to code)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def logprob_builders(wrap: Callable[[Callable[..., Any]], Provider], chunk: int) -> dict[str, ProviderBuilder]:
    """The builders of the three log-prob heads both benches time (``triton_fused``, ``torch_eager``,
    ``torch_chunked`` at ``chunk`` rows), each turned into a loss by ``wrap``; each imports its head when built."""

    def triton_fused() -> Provider:
        from cod_kernels.fused_linear_logprob import fused_linear_logprob

        return wrap(fused_linear_logprob)

    def torch_eager() -> Provider:
        from cod_kernels.fused_linear_logprob_reference import materialized_linear_logprob

        return wrap(materialized_linear_logprob)

    def torch_chunked() -> Provider:
        from cod_kernels.fused_linear_logprob_reference import chunked_linear_logprob

        return wrap(lambda h, w, y, m: chunked_linear_logprob(h, w, y, m, chunk_rows=chunk))

    return {"triton_fused": triton_fused, "torch_eager": torch_eager, "torch_chunked": torch_chunked}


def _providers(cpu_smoke: bool) -> dict[str, ProviderBuilder]:
    """name -> a builder of ``f(hidden, weight, labels, mask) -> scalar loss``; each builder imports what its provider
    needs, so ``run_benchmark`` imports and builds only the providers it runs."""

    def with_weights(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> Provider:
        def loss(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            logp, ent = fn(h, w, y, m)
            return logp.sum() - 0.01 * ent.sum()  # both outputs carry a gradient, as in the policy loss

        return loss

    def plain_torch(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: torch.Tensor):
        lsm = torch.log_softmax((h @ w.T).float(), dim=-1)
        logp = lsm.gather(-1, y[:, None]).squeeze(-1)
        ent = -(lsm.exp() * lsm).sum(-1)
        return torch.where(m, logp, 0.0), torch.where(m, ent, 0.0)

    def torch_compile() -> Provider:
        return with_weights(torch.compile(plain_torch, dynamic=False))

    out = logprob_builders(with_weights, chunk=16 if cpu_smoke else 4096)
    if torch.cuda.is_available():  # inductor on the CPU machine would only time the C++ compiler
        out["torch_compile"] = torch_compile
    out["liger_flce"] = liger_flce
    return out


def liger_flce() -> Provider:
    """``LigerFusedLinearCrossEntropyLoss`` (cross-entropy only: no entropy output); both benches' Liger provider."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    flce = LigerFusedLinearCrossEntropyLoss(reduction="sum")

    def liger(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return flce(w, h, torch.where(m, y, -100))

    return liger


def build_providers(builders: dict[str, ProviderBuilder], requested: str | None) -> dict[str, Provider]:
    """Build the providers ``requested`` names (comma-separated; every one of ``builders`` when None), in the order of
    ``builders``. Only those are imported and built. A requested one that cannot be built, or an unknown name, stops
    the run with its name; without a request a provider that cannot be built is skipped with a message."""
    names = list(builders) if requested is None else [n for n in requested.split(",") if n]
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise SystemExit(f"unknown provider(s) {', '.join(unknown)}; known: {', '.join(builders)}")
    chosen: dict[str, Provider] = {}
    for name in (n for n in builders if n in names):
        try:
            chosen[name] = builders[name]()
        except Exception as e:  # an import or build error of any kind (liger raises RuntimeError on some Tritons)
            why = f"{type(e).__name__}: {e}"
            if requested is not None:
                raise SystemExit(f"provider {name} was requested but cannot be built ({why})") from e
            print(f"provider {name} skipped: cannot be built ({why})")
    return chosen


def _time(fn: Callable[[], object], grad_to_none: list[torch.Tensor], cuda: bool) -> tuple[float, float, float]:
    """(p50, p20, p80) milliseconds: ``triton.testing.do_bench`` on GPU, a few wall-clock runs otherwise."""
    if cuda:
        import triton.testing

        p50, p20, p80 = triton.testing.do_bench(fn, grad_to_none=grad_to_none, quantiles=[0.5, 0.2, 0.8])
        return p50, p20, p80
    times = []
    for _ in range(2):
        for t in grad_to_none:
            t.grad = None
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    q = statistics.quantiles(times, n=10, method="inclusive")
    return statistics.median(times), q[1], q[7]


def _inputs(t: int, h: int, v: int, device: torch.device, dtype: torch.dtype, mask_frac: float, seed: int = 0):
    """Hidden ~ N(0, 1), weight ~ N(0, 0.02) (logits of order one), random labels and loss mask."""
    g = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(t, h, device=device, generator=g).to(dtype).requires_grad_(True)
    weight = (torch.randn(v, h, device=device, generator=g) * 0.02).to(dtype).requires_grad_(True)
    labels = torch.randint(0, v, (t,), device=device, generator=g)
    mask = torch.rand(t, device=device, generator=g) < mask_frac
    return hidden, weight, labels, mask


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _measure(
    name: str, fn: Provider, shape: tuple[int, int, int], dev: torch.device, dtype, mask_frac: float
) -> list[dict]:
    """forward / backward / full timings (and peak memory on GPU) of one provider at one shape and loss fraction."""
    t, h, v = shape
    cuda = dev.type == "cuda"
    hidden, weight, labels, mask = _inputs(t, h, v, dev, dtype, mask_frac)
    grads = [hidden, weight]
    rows = []
    flop_tokens = int(mask.sum())  # useful work: the loss rows, whatever a provider computes besides

    def add(mode: str, metric: str, p50: float, p20: float, p80: float) -> None:
        rows.append(
            dict(provider=name, mode=mode, metric=metric, T=t, H=h, V=v, mask_frac=mask_frac, p50=p50, p20=p20, p80=p80)
        )

    def ms_rows(mode: str, q: tuple[float, float, float]) -> None:
        add(mode, "ms", *q)
        work = MODE_FLOPS[mode] * flop_tokens * h * v
        add(mode, "tflops", *(work / (x * 1e-3) / 1e12 for x in (q[0], q[2], q[1])))

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if cuda else 0
    loss = fn(hidden, weight, labels, mask)
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        add("full", "peak_mem_gib", peak, peak, peak)

    def forward() -> torch.Tensor:
        return fn(hidden, weight, labels, mask)

    def full() -> None:
        fn(hidden, weight, labels, mask).backward()

    ms_rows("forward", _time(forward, grads, cuda))
    graph = [forward()]
    ms_rows("backward", _time(lambda: graph[0].backward(retain_graph=True), grads, cuda))
    graph.clear()
    ms_rows("full", _time(full, grads, cuda))
    return rows


def _gemm_row(shape: tuple[int, int, int], dev: torch.device, dtype) -> dict:
    """The roofline: one ``[T, H] x [H, V]`` GEMM in the benchmark dtype, as effective TFLOP/s."""
    t, h, v = shape
    a = torch.randn(t, h, device=dev, dtype=dtype)
    b = torch.randn(h, v, device=dev, dtype=dtype)
    p50, p20, p80 = _time(lambda: a @ b, [], dev.type == "cuda")
    work = 2 * t * h * v
    return dict(
        provider="torch_gemm",
        mode="forward",
        metric="tflops",
        T=t,
        H=h,
        V=v,
        mask_frac=1.0,
        **{k: work / (x * 1e-3) / 1e12 for k, x in (("p50", p50), ("p20", p80), ("p80", p20))},
    )


def _write(path: str, rows: list[dict]) -> None:
    """Append rows (header only for a new file)."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _print_table(rows: list[dict]) -> None:
    """One line per (shape, provider, mode): ms, TFLOP/s, % of the GEMM roofline, peak memory."""
    gemm = {(r["T"], r["H"], r["V"]): r["p50"] for r in rows if r["provider"] == "torch_gemm"}
    key = ("T", "H", "V", "mask_frac", "provider")
    peak = {tuple(r[k] for k in key): r["p50"] for r in rows if r["metric"] == "peak_mem_gib"}
    tflops = {(*(r[k] for k in key), r["mode"]): r["p50"] for r in rows if r["metric"] == "tflops"}
    head = ("T", "H", "V", "loss", "provider", "mode", "ms p50", "TFLOP/s", "%gemm", "peak GiB")
    print("{:>6} {:>5} {:>7} {:>5} {:<14} {:<8} {:>10} {:>8} {:>6} {:>8}".format(*head))
    for r in rows:
        if r["metric"] != "ms":
            continue
        shape = (r["T"], r["H"], r["V"])
        tf = tflops[(*(r[k] for k in key), r["mode"])]
        frac = f"{100 * tf / gemm[shape]:.0f}" if gemm.get(shape) else "-"
        mem = peak.get(tuple(r[k] for k in key))
        mem_s = f"{mem:.2f}" if mem is not None and r["mode"] == "full" else ""
        print(
            f"{r['T']:>6} {r['H']:>5} {r['V']:>7} {r['mask_frac']:>5.2f} {r['provider']:<14} {r['mode']:<8} "
            f"{r['p50']:>10.3f} {tf:>8.1f} {frac:>6} {mem_s:>8}"
        )


def _plot(path: str, rows: list[dict], title: str) -> None:
    """Full-step TFLOP/s per provider at each (shape, loss fraction), the GEMM rate of the same run as a line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib not importable: {path} not written")
        return
    full = [r for r in rows if r["metric"] == "tflops" and r["mode"] == "full"]
    groups = sorted({(r["T"], r["H"], r["V"], r["mask_frac"]) for r in full})
    providers = list(dict.fromkeys(r["provider"] for r in full))
    value = {(r["T"], r["H"], r["V"], r["mask_frac"], r["provider"]): float(r["p50"]) for r in full}
    gemm = {(r["T"], r["H"], r["V"]): float(r["p50"]) for r in rows if r["provider"] == "torch_gemm"}
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    width = 0.8 / max(len(providers), 1)
    for i, prov in enumerate(providers):
        xs = [g + (i - (len(providers) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [value.get((*grp, prov), 0.0) for grp in groups], width, label=prov)
    for g, grp in enumerate(groups):
        if grp[:3] in gemm:
            ax.hlines(gemm[grp[:3]], g - 0.45, g + 0.45, colors="k", linestyles="dashed")
    ax.set_xticks(range(len(groups)), [f"T{t // 1024}K V{v // 1024}K\n{m:.0%} rows" for t, _, v, m in groups])
    ax.set_ylabel("TFLOP/s, fwd+bwd (6 Tm H V), dashed: GEMM")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def run_benchmark(
    argv: list[str],
    *,
    kernel: str,
    module: str,
    providers: Callable[[bool], dict[str, ProviderBuilder]],
    mask_frac: str,
    gpu_shapes: list[tuple[int, int, int]] = GPU_SHAPES,
) -> list[dict]:
    """The shared benchmark driver (this kernel's and ``bench_linear_pg_head``'s): parse ``argv``, build the requested
    providers of ``providers(cpu_smoke)`` (:func:`build_providers`), time the GEMM roofline and each of them at every
    shape, print the table, append the CSV."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", default=None, help="append rows here")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny shapes (interpreter on CPU): tests the script")
    p.add_argument("--providers", default=None, help="comma-separated subset (only these are imported and built)")
    p.add_argument("--shape", action="append", default=None, help="T,H,V (repeatable); default: the GPU grid")
    p.add_argument(
        "--mask-frac", default=mask_frac, help="fraction(s) of rows in the loss, comma-separated (RL: responses)"
    )
    p.add_argument("--png", default=None, help="write the full-step TFLOP/s chart here")
    args = p.parse_args(argv)
    masks = [float(x) for x in str(args.mask_frac).split(",")]

    cuda = torch.cuda.is_available()
    if not cuda:
        if not args.cpu_smoke:
            raise SystemExit("no CUDA device: GPU numbers need a GPU (use --cpu-smoke to test the script)")
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before the @triton.jit decorators run
    dev = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda and not args.cpu_smoke else torch.float32
    shapes = [tuple(int(x) for x in s.split(",")) for s in args.shape] if args.shape else None
    shapes = shapes or (SMOKE_SHAPES if args.cpu_smoke else gpu_shapes)
    chosen = build_providers(providers(args.cpu_smoke), args.providers)

    rows: list[dict] = []
    for shape in shapes:
        try:
            rows.append(_gemm_row(shape, dev, dtype))
        except torch.cuda.OutOfMemoryError:
            print(f"{shape}: the roofline GEMM does not fit")
        _free()
        for frac in masks:
            for name, fn in chosen.items():
                if name == "torch_compile" and shape[0] > COMPILE_MAX_TOKENS:
                    continue
                try:
                    rows += _measure(name, fn, shape, dev, dtype, frac)
                except torch.cuda.OutOfMemoryError:
                    print(f"{shape} {name}: out of memory, skipped")
                _free()

    meta = dict(
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        kernel=kernel,
        gpu=torch.cuda.get_device_name() if cuda else "cpu-interpreter",
        git_sha=_git_sha(),
        command=" ".join([f"python -m {module}", *argv]),
    )
    rows = [meta | r | {k: f"{r[k]:.6g}" for k in ("p50", "p20", "p80")} for r in rows]
    _print_table([r | {k: float(r[k]) for k in ("p50", "p20", "p80")} for r in rows])
    if args.csv:
        _write(args.csv, rows)
    if args.png:
        _plot(args.png, rows, f"{kernel} on {meta['gpu']} ({str(dtype).removeprefix('torch.')})")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; returns the rows it appended."""
    argv = sys.argv[1:] if argv is None else argv
    return run_benchmark(
        argv, kernel=KERNEL, module="cod_kernels.bench_fused_linear_logprob", providers=_providers, mask_frac="1.0"
    )


if __name__ == "__main__":
    main()
