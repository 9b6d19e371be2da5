"""Weight-sync planner: bytes per link and wire time of each way to push trainer weights to the engines.

``python -m cod_megatron.sync --recipe NAME [--node-gbps 50] [--nvlink-gbps 300] [overrides]`` prints it
(:mod:`cod_megatron.sync.__main__`).

A lower bound on paper, for choosing a method and sizing buckets: it counts bytes on the busiest link of each
kind and divides by the stated bandwidth (GB/s = 1e9 B/s; network links full duplex, each direction counted on
its own; no overlap between plan stages). It does not count HF name conversion, serialisation or the engines'
own load time, which the published numbers show dominate in practice.

* ``broadcast`` (disaggregated): one source rank per PP stage (dp = tp = 0) gathers its stage (TP all-gather on
  NVLink) and broadcasts it in buckets on its own NCCL group with each engine (``sync/stage_groups.py``; stages one
  after the other). A ring or tree broadcast moves each stage once through each node's NIC: the whole model into
  every engine node, no stage through another trainer rank.
* ``tp_aligned`` (disaggregated): every trainer rank of the sending DP replicas sends its own TP shard straight to
  the matching rank of its engines (engine ``e`` is fed by replica ``e % dp``); no gather, no rank holds a full
  tensor. Needs ``engine_tp`` to be a multiple or divisor of ``tp`` (otherwise shards are re-cut on receipt).
* ``cuda_ipc`` (colocated): trainer ranks all-gather TP shards (and PP stages) into full tensors, then every engine
  rank maps the tensor on its own GPU through a CUDA IPC handle and copies its shard: no network unless PP spans
  nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cod_megatron.config.layout import ParallelLayout
from cod_megatron.config.memory import param_bytes
from cod_megatron.config.root import RunConfig

HBM_GBPS = 1500.0
"""Effective device-to-device copy rate on an H100 (read + write of the shard)."""


@dataclass(frozen=True)
class LinkLoad:
    """Bytes over the busiest link of one kind in one stage, and the seconds they take at its bandwidth."""

    stage: int
    link: str
    bytes: float
    gbps: float

    @property
    def seconds(self) -> float:
        """Wire time at the stated bandwidth."""
        return self.bytes / (self.gbps * 1e9)


@dataclass(frozen=True)
class SyncPlan:
    """One method's per-link loads: links of a stage run at once (the slowest sets its time), stages add up."""

    method: str
    loads: list[LinkLoad]
    applies: bool
    note: str = ""

    @property
    def seconds(self) -> float:
        """Estimated sync time: the sum over stages of the slowest link in each."""
        stages = {load.stage for load in self.loads}
        return sum(max(x.seconds for x in self.loads if x.stage == s) for s in stages)


def model_bytes(cfg: RunConfig) -> float:
    """Bytes of one full copy of the weights in the engines' dtype."""
    return float(cfg.model.num_parameters() * param_bytes(cfg.model))


def broadcast_plan(cfg: RunConfig, layout: ParallelLayout, node_gbps: float, nvlink_gbps: float) -> SyncPlan:
    """A source per PP stage, bucketed NCCL broadcast to every engine rank: gather (stage 0), broadcast (stage 1)."""
    full = model_bytes(cfg)
    sources = "the source" if layout.pp == 1 else f"each of {layout.pp} stage sources, its stage"
    loads = [
        LinkLoad(
            0, "nvlink: TP all-gather into the source rank", full / layout.pp * (layout.tp - 1) / layout.tp, nvlink_gbps
        ),
        LinkLoad(1, f"NIC per node: broadcast ring (out at {sources}; in at each engine node)", full, node_gbps),
    ]
    return SyncPlan(
        "broadcast",
        loads,
        applies=not layout.colocated,
        note=f"{layout.engine_gpus} engine ranks each receive {full / 1e9:.1f} GB and keep 1/{layout.engine_tp}",
    )


def tp_aligned_plan(cfg: RunConfig, layout: ParallelLayout, node_gbps: float, nvlink_gbps: float) -> SyncPlan:
    """Each trainer rank broadcasts its own shard to the same-TP-index ranks of its engines, all groups at once."""
    full = model_bytes(cfg)
    shard = full / (layout.tp * layout.pp)
    engines_per_replica = math.ceil(layout.engines / layout.dp)
    gpus_on_node = min(layout.tp * layout.pp, layout.gpus_per_node)
    engine_nodes = max(1, math.ceil(layout.engine_tp / layout.gpus_per_node))
    loads = [
        LinkLoad(0, "trainer NIC out: its ranks' shards, once (the ring relays them)", shard * gpus_on_node, node_gbps),
        LinkLoad(0, "engine NIC in: the engine's share of the model", full / engine_nodes, node_gbps),
    ]
    note = f"{layout.tp * layout.pp} senders per replica, {shard / 1e9:.2f} GB each, {engines_per_replica} engine(s)"
    note += " per replica"
    if layout.engine_tp % layout.tp and layout.tp % layout.engine_tp:
        note += f"; engine_tp={layout.engine_tp} vs tp={layout.tp}: shards are re-cut on receipt"
    return SyncPlan("tp_aligned", loads, applies=not layout.colocated, note=note)


def cuda_ipc_plan(cfg: RunConfig, layout: ParallelLayout, node_gbps: float, nvlink_gbps: float) -> SyncPlan:
    """Colocated: gather full tensors on each GPU (stage 0), then engines copy their shard via IPC (stage 1)."""
    full = model_bytes(cfg)
    loads = [LinkLoad(0, "nvlink per GPU: TP all-gather", full / layout.pp * (layout.tp - 1) / layout.tp, nvlink_gbps)]
    if layout.pp > 1:
        cross = layout.tp * layout.pp > layout.gpus_per_node
        loads.append(
            LinkLoad(
                0,
                f"{'NIC' if cross else 'nvlink'}: PP broadcast of the other stages",
                full * (layout.pp - 1) / layout.pp,
                node_gbps if cross else nvlink_gbps,
            )
        )
    loads.append(LinkLoad(1, "HBM copy per GPU: engine shard from the IPC handle", full / layout.engine_tp, HBM_GBPS))
    return SyncPlan("cuda_ipc", loads, applies=layout.colocated, note="no network unless PP spans nodes")


BUCKET_BYTES = 64 << 20
"""``WeightSync``'s default bucket."""


def sender_peak_bytes(cfg: RunConfig, bucket_bytes: int = BUCKET_BYTES) -> float:
    """Transient bytes a sending rank holds during a streamed sync: one bucket plus the parameter being gathered
    (its TP shards and its full HF tensor), at most twice the largest tensor -- the embedding or LM head."""
    largest = cfg.model.vocab_size * cfg.model.hidden_size * param_bytes(cfg.model)
    return float(bucket_bytes + 2 * largest)


def plan_sync(
    cfg: RunConfig, layout: ParallelLayout, node_gbps: float = 50.0, nvlink_gbps: float = 300.0
) -> list[SyncPlan]:
    """All three plans for a recipe; ``applies`` marks those its colocation setting can use."""
    return [f(cfg, layout, node_gbps, nvlink_gbps) for f in (broadcast_plan, tp_aligned_plan, cuda_ipc_plan)]


def render(cfg: RunConfig, layout: ParallelLayout, plans: list[SyncPlan], node_gbps: float, nvlink_gbps: float) -> str:
    """Human-readable report (what the CLI prints)."""
    lines = [
        f"{cfg.run.name}: {model_bytes(cfg) / 1e9:.1f} GB of {cfg.model.params_dtype} weights; trainer tp={layout.tp} "
        f"pp={layout.pp} dp={layout.dp}; {layout.engines} engine(s) x tp={layout.engine_tp}; "
        f"{'colocated' if layout.colocated else 'disaggregated'}; {node_gbps:g} GB/s per node, "
        f"{nvlink_gbps:g} GB/s NVLink per GPU",
    ]
    lines.append(
        f"streamed export: a sending rank holds at most {sender_peak_bytes(cfg) / 1e9:.1f} GB at a time (one "
        f"{BUCKET_BYTES >> 20} MiB bucket + twice the largest tensor), not its stage's "
        f"{model_bytes(cfg) / layout.pp / 1e9:.1f} GB"
    )
    for p in plans:
        lines.append(f"\n{p.method:<11} {'applies' if p.applies else 'n/a here'}  ~{p.seconds:.2f} s  ({p.note})")
        for load in p.loads:
            lines.append(f"  stage {load.stage}  {load.bytes / 1e9:7.1f} GB  {load.seconds:6.2f} s  {load.link}")
    return "\n".join(lines)
