"""Where the real model's CPU training step goes, and what makes it cheaper: A/B variants of one step, interleaved.

``python scripts/bench_train_step.py [--repeats 2] [--episodes 56] [--variants fp32,bf16,...] [overrides ...]``

Builds trainers of ``smollm2_135m_cod_cpu`` (the prepared pre-trained weights; ``overrides`` as for the recipe) in
one process, one per variant, and times the same optimizer step (at learning rate 0, so the weights never move) on
the same packed micro-batches shaped like the recipe's step (56 episodes of 100-180 tokens, ~8 % of them generated;
``optimizer.micro_batch_tokens`` per micro-batch), variants interleaved A, B, A, B so the ratios hold on a shared
machine where absolute seconds do not. Each variant's per-token log-probs are compared with the ``fp32`` variant's
(the recipe) on the loss tokens: the tolerance a step-0 gate would need under that variant.

Variants: ``fp32`` (the recipe: float32, one thread, materialised logits), ``fp32_t2`` (two torch threads: the
engine actor idles while the synchronous loop trains), ``bf16`` (bfloat16 parameters and activations with an fp32
master copy: megatron's mixed precision, which the recipe validation refuses on CPU), ``pg_head`` (the fused LM head,
``linear_pg_head``, under ``TRITON_INTERPRET=1``: logits only at the loss rows).
"""

from __future__ import annotations

import argparse
import copy
import os
import socket
import sys
import time

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any triton import: the pg_head variant on CPU

import torch  # noqa: E402

from cod_megatron.data import PackedBatch, pack_segments  # noqa: E402
from cod_megatron.infra.cli import resolve_recipe  # noqa: E402

RECIPE = "smollm2_135m_cod_cpu"
VARIANTS = ("fp32", "fp32_t2", "bf16", "pg_head")


def step_batches(vocab: int, micro_batch_tokens: int, episodes: int = 56, seed: int = 0) -> list[PackedBatch]:
    """``episodes`` (the recipe's step: 56, ~8k tokens, ~650 of them generated) of 100-180 random tokens, the last
    8 % generated, packed greedily into micro-batches of at most ``micro_batch_tokens``."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(100, 181, (episodes,), generator=g).tolist()
    out, segs, plens, advs, used = [], [], [], [], 0
    for n in lens:
        if segs and used + n > micro_batch_tokens:
            out.append(pack_segments(segs, plens, advs))
            segs, plens, advs, used = [], [], [], 0
        segs.append(torch.randint(0, vocab, (n,), generator=g).tolist())
        plens.append(int(n * 0.92))
        advs.append(float(torch.randn((), generator=g)))
        used += n
    out.append(pack_segments(segs, plens, advs))
    return out


def free_port() -> int:
    """A TCP port nobody listens on now (gloo's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(cfg, layout, variant: str):
    """A trainer of ``variant`` (settings the validation refuses on CPU are set after it, as the bf16 tests do)."""
    from cod_megatron.loop import run_parts

    cfg = copy.deepcopy(cfg)
    cfg.optimizer.lr = 0.0
    if variant == "bf16":
        cfg.model.params_dtype = "bfloat16"
    if variant == "pg_head":
        cfg.model.fused_lm_head, cfg.model.fused_lm_head_kernel = True, "pg_head"
    return run_parts.start_trainer(cfg, layout, renderer=None)


def main(argv: list[str] | None = None) -> int:
    """Time every variant's step, interleaved; print seconds, ratios to fp32 and log-prob differences."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--episodes", type=int, default=56, help="episodes in the step (the recipe's: 56)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    variants = ["fp32", *[v for v in args.variants.split(",") if v != "fp32"]]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    cfg, layout = resolve_recipe(RECIPE, ["rollout.backend=inprocess", *args.overrides])
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed

    batches = step_batches(cfg.model.vocab_size, cfg.optimizer.micro_batch_tokens, args.episodes)
    tokens = sum(b.num_tokens for b in batches)
    loss_tokens = int(sum(b.loss_mask.sum() for b in batches))
    print(f"{len(batches)} micro-batches, {tokens} tokens, {loss_tokens} loss tokens", flush=True)
    init_distributed(layout, master_port=free_port())
    try:
        trainers = {v: build(cfg, layout, v) for v in variants}
        threads = {v: 2 if v.endswith("_t2") else cfg.run.torch_threads or 1 for v in variants}
        logp = {}
        for v, t in trainers.items():
            torch.set_num_threads(threads[v])
            lps = zip(t.compute_logprobs(batches), batches, strict=True)
            logp[v] = torch.cat([lp[b.loss_mask.bool()].float() for lp, b in lps])
        times: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(args.repeats):
            for v, t in trainers.items():
                torch.set_num_threads(threads[v])
                t0 = time.perf_counter()
                t.train_step(batches)
                times[v].append(time.perf_counter() - t0)
                print(f"repeat {r} {v:8s} {times[v][-1]:7.2f} s", flush=True)
    finally:
        destroy_distributed()
    base = sum(times["fp32"])
    print(
        f"\n| variant | s / step (mean of {args.repeats}) | speed-up vs fp32 | log-prob diff vs fp32: mean abs / max |"
    )
    print("|---|---|---|---|")
    for v in variants:
        diff = (logp[v] - logp["fp32"]).abs()
        print(
            f"| {v} | {sum(times[v]) / args.repeats:.2f} | {base / sum(times[v]):.2f}x "
            f"| {diff.mean().item():.2e} / {diff.max().item():.2e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
