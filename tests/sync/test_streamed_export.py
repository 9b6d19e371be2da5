"""Streamed weight sync: no rank holds more than a bucket plus the parameter being gathered, never the model.

A TorchDispatchMode counts the bytes of every tensor allocated during ``WeightSync.sync`` (outputs that do not alias
an input's storage) for as long as the tensor object lives, and keeps the peak -- live tensors, not RSS. The engine
only counts what it is sent. TP = 1 in-process and TP = 2 on gloo (the all-gathers are the allocations there).

Gloo's worker thread drops its reference to a finished all-gather's outputs only after ``wait`` has returned, so the
previous parameter's shards could outlive the library's last use under load. At TP = 2 the gather therefore runs
through :func:`gloo_gather_waited`: gloo fills outputs of its own, allocated outside the count, the work handle is
waited on, and only then are they copied into the library's tensors. What is measured is what the library holds.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from tests.dist import free_port, init_method, spawn

BUCKET = 128 << 10
"""At least the largest HF tensor (the 512 x 64 fp32 embedding), so every bucket is bounded by it."""


def bound(largest: int) -> int:
    """A bucket and the parameter being gathered (its shards and the gathered output)."""
    return BUCKET + 2 * largest


LAYERS = 12


class LiveBytes(TorchDispatchMode):
    """Bytes of tensors allocated under the mode that are still alive, and their peak."""

    def __init__(self):
        super().__init__()
        self.now = self.peak = 0

    def _free(self, n: int) -> None:
        self.now -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                n = t.numel() * t.element_size()
                self.now += n
                self.peak = max(self.peak, self.now)
                weakref.finalize(t, self._free, n)
        return out


def gloo_gather_waited(all_gather):
    """``dist.all_gather`` with gloo's own outputs kept out of the count: waited on, then copied into the caller's."""
    from torch.utils._python_dispatch import _disable_current_modes

    def gather(tensor_list, tensor, group=None, async_op=False):
        assert not async_op
        with _disable_current_modes():
            outputs = [torch.empty_like(t) for t in tensor_list]
            all_gather(outputs, tensor, group=group, async_op=True).wait()
            for mine, theirs in zip(tensor_list, outputs, strict=True):
                mine.copy_(theirs)

    return gather


class CountingEngine:
    """Takes each bucket and keeps only its size (a real engine copies the tensors into its own weights)."""

    def __init__(self):
        self.bytes, self.buckets, self.last = 0, [], None

    def update_weights(self, named_tensors, *, version, last):
        size = sum(t.numel() * t.element_size() for _, t in named_tensors)
        self.bytes += size
        self.buckets.append(size)
        self.last = last


def _measure(tp: int):
    import cod_recipes
    from cod_megatron.config import apply_overrides, finalize
    from cod_megatron.policy.hf_export import iter_hf_weights
    from cod_megatron.policy.trainer import PolicyTrainer
    from cod_megatron.sync.weight_sync import WeightSync

    cfg = apply_overrides(
        cod_recipes.get("debug_cpu"),
        [
            "model.vocab_size=512",
            f"model.num_layers={LAYERS}",
            f"parallel.tp={tp}",
            "parallel.colocated=false",
            "parallel.gpus_per_node=3",
        ],
    )
    layout = finalize(cfg)
    trainer = PolicyTrainer(cfg, layout)
    sizes = [t.numel() * t.element_size() for _, t in iter_hf_weights(trainer.model, cfg.model)]
    engine = CountingEngine()
    with LiveBytes() as live:
        stats = WeightSync(cfg.model, [engine], bucket_bytes=BUCKET).sync(trainer.model, version=1)
    return dict(peak=live.peak, largest=max(sizes), model=sum(sizes), engine=engine, stats=stats)


def _check(m) -> None:
    assert m["engine"].bytes == m["model"] == m["stats"]["sync/bytes"]  # every byte of the model, once
    assert len(m["engine"].buckets) > 4 and m["engine"].last is True
    assert m["largest"] <= BUCKET and max(m["engine"].buckets) <= BUCKET
    assert m["model"] > 3 * bound(m["largest"])  # a whole-model export would break the bound below
    assert 0 < m["peak"] <= bound(m["largest"]), m


def test_tp1_sync_holds_at_most_a_bucket_and_one_parameter():
    import cod_recipes
    from cod_megatron.config import apply_overrides, finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed

    layout = finalize(
        apply_overrides(cod_recipes.get("debug_cpu"), ["model.vocab_size=512", f"model.num_layers={LAYERS}"])
    )
    init_distributed(layout, master_port=free_port())
    try:
        _check(_measure(1))
    finally:
        destroy_distributed()


def _tp2_worker(rank: int, world: int):
    import cod_recipes
    from cod_megatron.config import apply_overrides, finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed

    cfg = apply_overrides(
        cod_recipes.get("debug_cpu"),
        [
            "model.vocab_size=512",
            f"model.num_layers={LAYERS}",
            "parallel.tp=2",
            "parallel.colocated=false",
            "parallel.gpus_per_node=3",
        ],
    )
    import torch.distributed as dist

    init_distributed(finalize(cfg), rank=rank, world_size=world, init_method=init_method())
    dist.all_gather = gloo_gather_waited(dist.all_gather)  # a spawned worker of its own: nothing else sees it
    try:
        m = _measure(2)
        return {k: v for k, v in m.items() if k != "engine"} | {
            "engine_bytes": m["engine"].bytes,
            "buckets": m["engine"].buckets,
            "last": m["engine"].last,
        }
    finally:
        destroy_distributed()


def test_tp2_sync_on_gloo_holds_at_most_a_bucket_and_one_parameter_per_rank():
    for m in spawn(_tp2_worker, 2):
        assert m["engine_bytes"] == m["model"] and m["last"] is True and len(m["buckets"]) > 4
        assert m["largest"] <= BUCKET and m["model"] > 3 * bound(m["largest"])
        assert 0 < m["peak"] <= bound(m["largest"]), m
