"""gpu_check stage ``train_step``: megatron-core train steps through the loop's own batch path, fused LM head vs logits.

Two PolicyTrainers with the same weights (the second loads the first's and reloads its optimizer's main params) take
the same host-built PackedBatches through ``PolicyTrainer.train_step``, which moves each micro-batch to the model's
device itself. Per-token log-probs on the same weights are compared (reported), and the first step's loss and
gradient norm must agree between the fused kernel head and the materialised-logits head; then each path runs a few
timed steps (ms/step, peak memory above the resident state). On a GPU: bf16, a 4-layer model with a 64k vocabulary,
~4k tokens per micro-batch. On CPU (``--cpu``): the tiny ``debug_cpu`` model in fp32 under the Triton interpreter.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

import cod_recipes
from cod_megatron.config import apply_overrides, finalize
from cod_megatron.data import PackedBatch, synthetic_packed_batch
from cod_megatron.policy.distributed import destroy_distributed, init_distributed
from cod_megatron.policy.trainer import PolicyTrainer

GPU_MODEL = [
    "run.device=cuda",
    "model.params_dtype=bfloat16",
    "model.num_layers=4",
    "model.hidden_size=1024",
    "model.ffn_hidden_size=2816",
    "model.num_attention_heads=8",
    "model.num_query_groups=4",
    "model.kv_channels=128",
    "model.vocab_size=65536",
]
TIMED_STEPS = 3
# (loss, grad norm) relative tolerance of fused vs logits path: bf16 logits round at ~4e-3; fp32 agrees closely.
TOLERANCE = {torch.bfloat16: (2e-2, 5e-2), torch.float32: (1e-4, 1e-3)}


def host_batches(vocab: int, cuda: bool) -> list[PackedBatch]:
    """Two packed micro-batches built on the host, as the loop packs them (~4k tokens each on a GPU)."""
    if cuda:
        return [
            synthetic_packed_batch(seed=s, n_segments=16, vocab_size=vocab, min_len=64, max_len=448) for s in (1, 2)
        ]
    return [synthetic_packed_batch(seed=s, n_segments=3, vocab_size=vocab, min_len=5, max_len=19) for s in (1, 2)]


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_steps(trainer: PolicyTrainer, batches: list[PackedBatch]) -> dict[str, float]:
    """ms per ``train_step`` over TIMED_STEPS steps and the peak memory above what was allocated before them."""
    synchronize()
    resident = 0
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()
    start = time.perf_counter()
    for _ in range(TIMED_STEPS):
        metrics = trainer.train_step(batches)
    synchronize()
    ms = (time.perf_counter() - start) / TIMED_STEPS * 1e3
    peak = (torch.cuda.max_memory_allocated() - resident) / 2**30 if torch.cuda.is_available() else 0.0
    return {"ms_per_step": ms, "peak_above_resident_gib": peak, "loss": metrics["loss"], "ok": metrics["update_ok"]}


def write_csv(path: Path, rows: list[dict]) -> None:
    """One row per LM-head path (rewritten each run: the numbers of this machine, this commit)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", type=Path, default=None, help="write the per-path numbers here")
    args = p.parse_args()
    cuda = torch.cuda.is_available()
    cfg = cod_recipes.get("debug_cpu")
    apply_overrides(cfg, ["optimizer.lr=1e-4", "optimizer.clip_grad=0.0", *(GPU_MODEL if cuda else [])])
    layout = finalize(cfg)
    init_distributed(layout, seed=7)
    try:
        fused = PolicyTrainer(cfg, layout)
        logits = PolicyTrainer(cfg, layout)
        logits.model[0].module.load_state_dict(fused.model[0].module.state_dict())
        logits.optimizer.reload_model_params()  # its main (fp32) params follow the copied weights
        fused.fused, logits.fused = True, False
        dtype = next(fused.model[0].parameters()).dtype
        batches = host_batches(cfg.model.vocab_size, cuda)
        assert all(b.tokens.device.type == "cpu" for b in batches)
        print(f"device {fused.device} dtype {dtype} params {cfg.model.num_parameters() / 1e6:.1f} M")
        tokens = sum(b.num_tokens for b in batches)
        print(f"tokens per micro-batch {[b.num_tokens for b in batches]}")

        logp = {name: t.compute_logprobs(batches) for name, t in (("fused", fused), ("logits", logits))}
        logp_diff = max(
            float((a.float().cpu() - b.float().cpu())[m.loss_mask != 0].abs().max())
            for a, b, m in zip(logp["fused"], logp["logits"], batches, strict=True)
        )
        print(f"same weights: max |log-prob fused - logits path| over the loss mask {logp_diff:.3g}")

        first = {name: t.train_step(batches) for name, t in (("fused", fused), ("logits", logits))}
        for name, m in first.items():
            print(f"step 1 {name:>6}: loss {m['loss']:.6f} grad_norm {m['grad_norm']:.6g} update_ok {m['update_ok']}")
        rel = {
            k: abs(first["fused"][k] - first["logits"][k]) / max(abs(first["logits"][k]), 1e-12)
            for k in ("loss", "grad_norm")
        }
        loss_tol, grad_tol = TOLERANCE[dtype]
        agree = rel["loss"] <= loss_tol and rel["grad_norm"] <= grad_tol
        print(f"fused vs logits: loss rel diff {rel['loss']:.3g} (tol {loss_tol}), ", end="")
        print(f"grad_norm rel diff {rel['grad_norm']:.3g} (tol {grad_tol}): {'AGREE' if agree else 'DISAGREE'}")

        timings = {name: timed_steps(t, batches) for name, t in (("fused", fused), ("logits", logits))}
        for name, t in timings.items():
            print(
                f"{name:>6}: {t['ms_per_step']:.1f} ms/step, peak {t['peak_above_resident_gib']:.2f} GiB above resident"
            )
        if args.csv:
            device = torch.cuda.get_device_name() if cuda else "cpu"
            write_csv(
                args.csv,
                [
                    {"path": name, "device": device, "dtype": str(dtype).removeprefix("torch."), "tokens": tokens}
                    | {"step1_loss": first[name]["loss"], "step1_grad_norm": first[name]["grad_norm"]}
                    | {k: timings[name][k] for k in ("ms_per_step", "peak_above_resident_gib")}
                    for name in ("fused", "logits")
                ],
            )
        finite = all(m["update_ok"] == 1.0 and m["grad_norm"] > 0 for m in first.values())
        f, g = timings["fused"], timings["logits"]
        print(
            f"RESULT loss={first['fused']['loss']:.5g} grad_norm={first['fused']['grad_norm']:.4g} "
            f"loss_rel={rel['loss']:.2g} grad_rel={rel['grad_norm']:.2g} logp_maxdiff={logp_diff:.2g} "
            f"fused_ms={f['ms_per_step']:.1f} logits_ms={g['ms_per_step']:.1f} "
            f"fused_peak_gib={f['peak_above_resident_gib']:.2f} logits_peak_gib={g['peak_above_resident_gib']:.2f}"
        )
        return 0 if agree and finite else 1
    finally:
        destroy_distributed()


if __name__ == "__main__":
    raise SystemExit(main())
