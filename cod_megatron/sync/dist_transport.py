"""Bucketed weight transfer over torch.distributed, trainer ranks -> engine ranks (gloo on CPU, NCCL on GPU).

The wire side of the two disaggregated plans of :mod:`cod_megatron.sync.plan`; what the receiving engine
does with the tensors is :meth:`InferenceEngine.update_weights <cod_megatron.engines.interface.InferenceEngine>`.

* ``broadcast``: :class:`BroadcastSender` on the trainer's source rank (dp = tp = pp = 0) sends the HF tensors that
  :func:`~cod_megatron.policy.hf_export.export_hf_weights` gathered (every TP rank runs the export, it is a TP
  collective; only the source sends); :class:`BroadcastReceiver` on every engine rank of the group receives them.
* ``tp_aligned``: :class:`ShardSender` on EVERY trainer TP rank sends its own megatron shards (no TP all-gather, no
  HF conversion on the trainer); :class:`ShardReceiver` on the engine rank receives the shards of all TP ranks and
  rebuilds full HF tensors with the map's own inverse layout (:func:`~cod_megatron.models.hf_names.hf_from_shards`).

Wire protocol, per group and per bucket (slime / verl style: flattening avoids one collective per tensor):

1. a header with ``broadcast_object_list``: kind, weight version, ``last`` flag and a :class:`WireTensor` (name,
   shape, dtype; for shards also the megatron layout kind and the HF names) per tensor;
2. ONE flat buffer per dtype (dtypes in first-appearance order), with ``dist.broadcast`` from the sender;

and after the last bucket a ``{"kind": "done", "version", "buckets"}`` header, which the receiver checks. The sender
looks one bucket ahead, so the header of the final bucket says ``last`` and the engine swaps the weights in as soon
as it has arrived. Every bucket gets a fresh buffer (an engine may keep views of it; slime does not reuse buffers
either, for the same reason).

Groups. Both sides take a ``ProcessGroup`` that contains the sender and the engine ranks and nothing else, so a
broadcast costs nothing on ranks outside it. Tests make it with :func:`weight_update_group` (``dist.new_group``)
from an outer world they create. In real runs the engine processes are not in the trainer's world: SGLang makes its
own group from ``/init_weights_update_group`` (a rendezvous of the source rank and the server's ranks at
``master_address:port``, see :meth:`SGLangEngine.init_weights_update_group
<cod_megatron.engines.sglang.client.SGLangEngine.init_weights_update_group>`) and receives with its own code: the
pinned SGLang expects one broadcast per tensor after each ``/update_weights_from_distributed`` call (the
``SGLangEngine.broadcast`` callable), so it does not read these flat buffers. The receivers here are for engines
whose receiving side we own (the embedded engine in another process, a Ray actor).

TP-aligned mapping (megatron layouts as in :mod:`~cod_megatron.models.hf_names`). Trainer TP rank ``r`` of ``tp`` holds,
per parameter: vocab rows ``r*V/tp:(r+1)*V/tp`` (embedding, output layer); the query groups ``r*ng/tp:(r+1)*ng/tp`` of
``linear_qkv`` as ``[groups, (q_per_group + 2) * hd, H]`` (q heads, then k, then v, per group; the qwen2 bias
likewise); ``linear_fc1`` = ``cat(gate[rows_r], up[rows_r])``; ``linear_proj`` / ``linear_fc2`` the input columns
``r*D/tp:(r+1)*D/tp``; norms whole (every rank sends its copy: a few KB per layer). Implemented: an engine with
``engine_tp = 1`` (the embedded engine): its rank receives from all ``tp`` trainer ranks, one group each
(``[trainer rank r, engine rank]``), and reassembles full HF tensors. Not implemented: engines with
``engine_tp > 1`` that load shards directly. The mapping there: when ``tp = k * engine_tp`` engine rank ``e`` takes
trainer ranks ``e*k .. e*k+k-1``, whose concatenated shards are exactly its own megatron shard at TP =
``engine_tp`` (consecutive query groups, vocab rows, gate and up rows, input columns), so it would apply the same
reassembly with ``ng/engine_tp`` groups to get its HF-named slice; when ``engine_tp = m * tp`` trainer rank ``r``
feeds engine ranks ``r*m .. r*m+m-1``, each cutting 1/m of the shard (of gate and of up separately for fc1, whole
query groups for qkv). Neither SGLang release nor :class:`InferenceEngine` takes pre-sharded tensors today, so that
half needs an engine-side loader. Also not implemented: PP > 1 (each stage's TP ranks would be sources, with
``last`` only on the final stage's last bucket). Buckets of the TP ranks line up because the map requires even
splits (equal shard sizes give equal bucket boundaries); the receiver checks that they do.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cod_megatron.config import ModelConfig
from cod_megatron.engines.interface import InferenceEngine
from cod_megatron.models.hf_names import HFTarget, hf_from_shards, hf_targets, model_chunks
from cod_megatron.policy.hf_export import tp_rank_and_size
from cod_megatron.sync.buckets import bucketed, with_last


@dataclass(frozen=True)
class WireTensor:
    """What the header says about one tensor of a bucket; ``kind`` and ``hf`` only for TP shards."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    kind: str | None = None
    """The megatron layout (vocab | qkv | fc1 | row | replicated) of a TP shard."""
    hf: tuple[str, ...] = ()
    """The HF tensors the full parameter is made of (q/k/v, gate/up, or one)."""

    @property
    def nbytes(self) -> int:
        """Bytes on the wire."""
        return _numel(self.shape) * self.dtype.itemsize


def weight_update_group(sender: int, engine_ranks: Sequence[int]) -> dist.ProcessGroup:
    """``dist.new_group([sender, *engine_ranks])``: collective over the outer world, EVERY rank must call it.

    The test's stand-in for SGLang's ``init_weights_update_group``, which builds the group outside the trainer's
    world (see the module docstring).
    """
    return dist.new_group(ranks=[sender, *engine_ranks])


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def wire_buckets(
    items: Iterable[tuple[WireTensor, torch.Tensor]], bucket_bytes: int
) -> Iterator[list[tuple[WireTensor, torch.Tensor]]]:
    """The transport's buckets: :func:`~cod_megatron.sync.buckets.bucketed` by the header's wire bytes."""
    return bucketed(items, bucket_bytes, lambda item: item[0].nbytes)


def _by_dtype(metas: Sequence[WireTensor]) -> dict[torch.dtype, list[int]]:
    """Indices of the bucket's tensors per dtype, dtypes in first-appearance order (both sides compute it)."""
    out: dict[torch.dtype, list[int]] = {}
    for i, m in enumerate(metas):
        out.setdefault(m.dtype, []).append(i)
    return out


def _send_header(header: dict[str, Any], src: int, group: dist.ProcessGroup) -> None:
    dist.broadcast_object_list([header], src=src, group=group)


def _recv_header(src: int, group: dist.ProcessGroup) -> dict[str, Any]:
    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=src, group=group)
    return box[0]


def _send_bucket(
    bucket: list[tuple[WireTensor, torch.Tensor]],
    *,
    version: int,
    last: bool,
    src: int,
    group: dist.ProcessGroup,
    device: torch.device,
    **extra: Any,
) -> int:
    """Header (plus ``extra`` fields), then one flat buffer per dtype; returns the payload bytes."""
    metas = [m for m, _ in bucket]
    _send_header({"kind": "bucket", "version": version, "last": last, "tensors": metas, **extra}, src, group)
    for dtype, idx in _by_dtype(metas).items():
        flat = torch.cat([bucket[i][1].detach().reshape(-1).to(device, dtype) for i in idx])
        dist.broadcast(flat, src=src, group=group)
    return sum(m.nbytes for m in metas)


def _post_recv(
    metas: Sequence[WireTensor], src: int, group: dist.ProcessGroup, device: torch.device
) -> tuple[list[Any], list[Any]]:
    """Start the flat receives of one bucket (async, so several groups can stream at once); see :func:`_unflatten`."""
    bufs, works = [], []
    for dtype, idx in _by_dtype(metas).items():
        buf = torch.empty(sum(_numel(metas[i].shape) for i in idx), dtype=dtype, device=device)
        works.append(dist.broadcast(buf, src=src, group=group, async_op=True))
        bufs.append((idx, buf))
    return bufs, works


def _unflatten(metas: Sequence[WireTensor], bufs: list[Any], works: list[Any]) -> list[torch.Tensor]:
    """Wait for the receives and cut the flat buffers back into the bucket's tensors, in header order."""
    for w in works:
        w.wait()
    out: list[torch.Tensor | None] = [None] * len(metas)
    for idx, buf in bufs:
        parts = torch.split(buf, [_numel(metas[i].shape) for i in idx])
        for i, part in zip(idx, parts, strict=True):
            out[i] = part.view(metas[i].shape)
    return out  # type: ignore[return-value]


def _check_done(header: dict[str, Any], version: int, buckets: int, who: str) -> None:
    if header.get("kind") != "done" or header.get("version") != version or header.get("buckets") != buckets:
        raise RuntimeError(f"{who}: expected done(version={version}, buckets={buckets}), got {header!r}")


def _stats(t0: float, nbytes: int, buckets: int, version: int) -> dict[str, float]:
    return {
        "sync/seconds": time.perf_counter() - t0,
        "sync/bytes": float(nbytes),
        "sync/buckets": float(buckets),
        "sync/version": float(version),
    }


# ---- broadcast plan: one source rank, full HF tensors ------------------------------------------------------------
class _BucketSender:
    """What both senders share: the group, the source rank, the bucket bound, the buffer device and the send loop.

    ``src`` is the sender's global rank (default: this rank); ``device`` is where the flat buffers live (the CUDA
    device under NCCL; ``export_hf_weights`` returns CPU tensors).
    """

    def __init__(
        self,
        group: dist.ProcessGroup,
        *,
        src: int | None = None,
        bucket_bytes: int = 64 << 20,
        device: str | torch.device = "cpu",
    ):
        self.group, self.bucket_bytes, self.device = group, bucket_bytes, torch.device(device)
        self.src = dist.get_rank() if src is None else src

    def _send_all(
        self, items: Iterable[tuple[WireTensor, torch.Tensor]], version: int, t0: float, **extra: Any
    ) -> dict[str, float]:
        """Every bucket (``extra`` fields in each header), then ``done``; ``t0`` is when the caller's send began."""
        nbytes, n = 0, 0
        for bucket, last in with_last(wire_buckets(items, self.bucket_bytes)):
            nbytes += _send_bucket(
                bucket, version=version, last=last, src=self.src, group=self.group, device=self.device, **extra
            )
            n += 1
        _send_header({"kind": "done", "version": version, "buckets": n}, self.src, self.group)
        return _stats(t0, nbytes, n, version)


class BroadcastSender(_BucketSender):
    """Trainer source rank: every bucket of HF tensors to all engine ranks of ``group`` by broadcast."""

    def send(
        self, tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]], version: int
    ) -> dict[str, float]:
        """Send all buckets, then ``done``; returns seconds, bytes and bucket count (like ``WeightSync.sync``).

        ``tensors``: a mapping, or a stream of ``(name, tensor)`` such as :func:`~cod_megatron.policy.hf_export.
        iter_hf_weights` (bucketed as it arrives, so the sender never holds the whole model).
        """
        t0 = time.perf_counter()
        pairs = iter(tensors.items() if isinstance(tensors, Mapping) else tensors)
        first = next(pairs, None)
        if first is None:
            raise ValueError("BroadcastSender.send: no tensors (the engine would never see a last bucket)")
        items = ((WireTensor(k, tuple(t.shape), t.dtype), t) for k, t in itertools.chain([first], pairs))
        return self._send_all(items, version, t0)


class BroadcastReceiver:
    """Engine rank: receives what :class:`BroadcastSender` sends and loads each bucket into a local engine."""

    def __init__(
        self, engine: InferenceEngine, group: dist.ProcessGroup, src: int, *, device: str | torch.device = "cpu"
    ):
        self.engine, self.group, self.src, self.device = engine, group, src, torch.device(device)

    def receive(self) -> dict[str, float]:
        """One whole weight update: buckets until ``done``; the engine serves the new version after the last."""
        t0, nbytes, n = time.perf_counter(), 0, 0
        version: int | None = None
        while True:
            header = _recv_header(self.src, self.group)
            if header["kind"] == "done":
                if version is None:
                    raise RuntimeError(f"BroadcastReceiver: 'done' before any bucket: {header!r}")
                _check_done(header, version, n, "BroadcastReceiver")
                return _stats(t0, nbytes, n, version)
            if version is not None and header["version"] != version:
                raise RuntimeError(f"BroadcastReceiver: version {header['version']} in the middle of {version}")
            version, metas = header["version"], header["tensors"]
            tensors = _unflatten(metas, *_post_recv(metas, self.src, self.group, self.device))
            self.engine.update_weights(
                [(m.name, t) for m, t in zip(metas, tensors, strict=True)], version=version, last=header["last"]
            )
            nbytes += sum(m.nbytes for m in metas)
            n += 1


# ---- TP-aligned plan: every trainer TP rank sends its own shard --------------------------------------------------
def local_shards(model: torch.nn.Module | Iterable[torch.nn.Module], cfg: ModelConfig) -> list[Any]:
    """This rank's megatron parameters with their layout and HF names, as ``(WireTensor, tensor)``; no collective.

    A tied output layer is skipped, as in ``export_hf_weights`` (it is a copy of the embedding).
    """
    out = []
    for chunk in model_chunks(model):
        for name, param, target in hf_targets(chunk, cfg):
            if name == "output_layer.weight" and cfg.tie_word_embeddings:
                continue
            key = f"{target.hf[0]}@{name}"  # HF-based, so names of virtual pipeline chunks stay unique
            out.append((WireTensor(key, tuple(param.shape), param.dtype, target.kind, target.hf), param.detach()))
    return out


class ShardSender(_BucketSender):
    """Trainer TP rank: its own shards, bucketed, to the engine rank(s) of its group (no TP all-gather)."""

    def send(
        self, model: torch.nn.Module | Iterable[torch.nn.Module], cfg: ModelConfig, version: int
    ) -> dict[str, float]:
        """Send this rank's shards and ``done``; the header also names the TP rank and size."""
        rank, size = tp_rank_and_size()
        t0 = time.perf_counter()
        return self._send_all(local_shards(model, cfg), version, t0, tp=(rank, size))


class ShardReceiver:
    """Engine rank of an ``engine_tp = 1`` engine: shards from all trainer TP ranks -> full HF tensors -> engine.

    ``sources[r]`` is ``(group, global rank)`` of trainer TP rank ``r``; each bucket round reads one header from
    every source, then receives all their payloads at once (async) and reassembles.
    """

    def __init__(
        self,
        engine: InferenceEngine,
        cfg: ModelConfig,
        sources: Sequence[tuple[dist.ProcessGroup, int]],
        *,
        device: str | torch.device = "cpu",
    ):
        self.engine, self.cfg, self.sources, self.device = engine, cfg, list(sources), torch.device(device)

    def receive(self) -> dict[str, float]:
        """One whole weight update from all TP ranks; returns seconds, bytes (all links), buckets and version."""
        t0, nbytes, n = time.perf_counter(), 0, 0
        version: int | None = None
        while True:
            headers = [_recv_header(src, group) for group, src in self.sources]
            kinds = {h["kind"] for h in headers}
            if kinds == {"done"}:
                if version is None:
                    raise RuntimeError("ShardReceiver: 'done' before any bucket")
                for h in headers:
                    _check_done(h, version, n, "ShardReceiver")
                return _stats(t0, nbytes, n, version)
            version = self._check_round(headers, version)
            sources = zip(headers, self.sources, strict=True)
            posted = [_post_recv(h["tensors"], src, group, self.device) for h, (group, src) in sources]
            shards = [_unflatten(h["tensors"], *p) for h, p in zip(headers, posted, strict=True)]
            named: list[tuple[str, torch.Tensor]] = []
            for j, meta in enumerate(headers[0]["tensors"]):
                assert meta.kind is not None
                parts = [s[j] for s in shards]
                full = hf_from_shards(HFTarget(meta.kind, meta.hf), parts, self.cfg)
                named.extend(zip(meta.hf, full, strict=True))
            self.engine.update_weights(named, version=version, last=headers[0]["last"])
            nbytes += sum(m.nbytes for h in headers for m in h["tensors"])
            n += 1

    def _check_round(self, headers: list[dict[str, Any]], version: int | None) -> int:
        """All TP ranks in the same bucket (names, layouts, last flag, version) and in TP order."""
        h0 = headers[0]
        if any(h["kind"] != "bucket" for h in headers):
            raise RuntimeError(f"ShardReceiver: TP ranks out of step: {[h['kind'] for h in headers]}")
        if [h["tp"] for h in headers] != [(r, len(headers)) for r in range(len(headers))]:
            raise RuntimeError(f"ShardReceiver: sources must be trainer TP ranks 0..{len(headers) - 1} in order")
        keys = [(m.name, m.kind, m.hf) for m in h0["tensors"]]
        for h in headers[1:]:
            if [(m.name, m.kind, m.hf) for m in h["tensors"]] != keys or (h["last"], h["version"]) != (
                h0["last"],
                h0["version"],
            ):
                raise RuntimeError("ShardReceiver: TP ranks bucketed their shards differently")
        if version is not None and h0["version"] != version:
            raise RuntimeError(f"ShardReceiver: version {h0['version']} in the middle of {version}")
        return h0["version"]
