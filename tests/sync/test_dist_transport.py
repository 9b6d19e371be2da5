"""Bucketed weight transfer over gloo: a TP=2 megatron trainer (ranks 0-1) -> an embedded engine (rank 2).

One outer world of 3 processes. megatron's groups are built over the first two ranks only
(``initialize_model_parallel(local_world_size=2)``); every rank calls it, because ``new_group`` is collective over
the whole world even for groups a rank is not in. The update groups ([0, 2] for the broadcast plan; [0, 2] and
[1, 2] for the TP-aligned plan) come from ``dist.new_group`` as well. Three transfers, each checked exactly:

1. broadcast plan, version 3: rank 0 sends the tensors ``export_hf_weights`` gathered (rank 1 only joins the export);
2. TP-aligned plan, version 4, after a simulated optimizer step: both trainer ranks send their own shards;
3. a recording engine on rank 2 receives buckets of mixed dtypes and shapes (one flat buffer per dtype).
"""

from __future__ import annotations

import pytest
import torch

from tests.dist import init_method, spawn

BUCKET_BYTES = 16 << 10
MIXED = {
    "a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
    "b": torch.tensor([1.5, -2.25], dtype=torch.bfloat16),
    "c": torch.arange(5, dtype=torch.int64),
    "d": torch.tensor(7.0),  # 0-d
    "e": torch.linspace(0, 1, 4, dtype=torch.float32),
}
IDS = torch.tensor([[3, 14, 15, 9, 26, 5, 35, 8, 9, 7]])


def _model_cfg():
    import cod_recipes

    cfg = cod_recipes.get("debug_cpu").model
    assert cfg.vocab_size == 44 and cfg.num_query_groups == 2 and not cfg.tie_word_embeddings
    return cfg


class _Recorder:
    """Just the update_weights part of an engine: remembers every call."""

    def __init__(self):
        self.calls: list[tuple[list[tuple[str, torch.Tensor]], int, bool]] = []

    def update_weights(self, named_tensors, *, version, last):
        self.calls.append(([(n, t.clone()) for n, t in named_tensors], version, last))


@torch.no_grad()
def _perturb(model, step: int) -> None:
    """A stand-in for an optimizer step: sharded weights move by this rank's noise, norms by shared noise."""
    from megatron.core import parallel_state

    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    own, shared = torch.Generator().manual_seed(100 * step + tp_rank), torch.Generator().manual_seed(100 * step)
    for name, p in model.named_parameters():
        if "norm" in name:  # replicated: must stay equal on both TP ranks
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=shared))
        else:
            p.add_(0.05 * torch.randn(p.shape, generator=own))


def _engine_tensors(engine) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in engine.model.named_parameters()}


def _worker(rank: int, world: int) -> dict:
    import torch.distributed as dist
    from megatron.core import parallel_state

    from cod_megatron.config import ParallelConfig, ParallelLayout
    from cod_megatron.engines.embedded import EmbeddedEngine
    from cod_megatron.models.hf_config import hf_config_from_model
    from cod_megatron.policy import cpu_compat
    from cod_megatron.policy.hf_export import export_hf_weights
    from cod_megatron.policy.model import build_model
    from cod_megatron.sync.dist_transport import (
        BroadcastReceiver,
        BroadcastSender,
        ShardReceiver,
        ShardSender,
        weight_update_group,
    )

    model_cfg = _model_cfg()
    parallel = ParallelConfig(tp=2, engines=1, engine_tp=1, colocated=False, gpus_per_node=4)
    layout = ParallelLayout.from_config(parallel, model_cfg)
    assert layout.world_size == world  # disaggregated: 2 trainer ranks + 1 engine rank
    trainer = rank < layout.trainer_world_size
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=init_method())
    try:
        # megatron groups over ranks 0-1 only; rank 2 takes part in the new_group calls and belongs to none
        parallel_state.initialize_model_parallel(
            **layout.megatron_kwargs(), create_gloo_process_groups=True, local_world_size=layout.trainer_world_size
        )
        engine_rank = layout.trainer_world_size
        bcast = weight_update_group(0, [engine_rank])
        shard_groups = [weight_update_group(r, [engine_rank]) for r in range(layout.tp)]
        out: dict = {}
        if trainer:
            cpu_compat.install(1234)
            torch.manual_seed(1234)
            model = build_model(model_cfg, layout).eval()
            _perturb(model, 1)
            exported = export_hf_weights(model, model_cfg)  # TP collective: both trainer ranks
            if rank == 0:
                out["sent1"] = exported
                out["stats1"] = BroadcastSender(bcast, bucket_bytes=BUCKET_BYTES).send(exported, version=3)
            _perturb(model, 2)
            out["sent2"] = export_hf_weights(model, model_cfg)  # the reference only: the transfer gathers nothing
            tp_rank = parallel_state.get_tensor_model_parallel_rank()
            sender = ShardSender(shard_groups[tp_rank], bucket_bytes=BUCKET_BYTES)
            out["stats2"] = sender.send(model, model_cfg, version=4)
            if rank == 0:
                BroadcastSender(bcast, bucket_bytes=40).send(MIXED, version=5)
            with torch.no_grad():
                out["logits"] = model(IDS, torch.arange(IDS.shape[1])[None], None)  # [1, T, V/TP]
        else:
            engine = EmbeddedEngine(hf_config_from_model(model_cfg), stop_token_ids=[2])
            out["stats1"] = BroadcastReceiver(engine, bcast, src=0).receive()
            out["engine1"], out["health1"] = _engine_tensors(engine), engine.health()
            sources = [(g, r) for r, g in enumerate(shard_groups)]
            out["stats2"] = ShardReceiver(engine, model_cfg, sources).receive()
            out["engine2"], out["health2"] = _engine_tensors(engine), engine.health()
            with torch.no_grad():
                out["logits"] = engine.model(IDS).logits
            recorder = _Recorder()
            out["stats3"] = BroadcastReceiver(recorder, bcast, src=0).receive()
            out["calls"] = recorder.calls
        dist.barrier()
        return out
    finally:
        parallel_state.destroy_model_parallel()
        dist.destroy_process_group()
        cpu_compat.uninstall()


@pytest.fixture(scope="module")
def ranks():
    """One spawn of the 3-process world, shared by every test that uses it."""
    return spawn(_worker, 3)


def _assert_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, t in want.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t), name


@pytest.mark.dist
@pytest.mark.slow
def test_broadcast_plan_engine_weights_equal_the_exported_tensors(ranks):
    t0, _, engine = ranks
    _assert_equal(engine["engine1"], t0["sent1"])
    assert engine["health1"]["weight_version"] == 3
    assert t0["stats1"]["sync/buckets"] > 3
    assert engine["stats1"]["sync/buckets"] == t0["stats1"]["sync/buckets"]
    assert (
        engine["stats1"]["sync/bytes"]
        == t0["stats1"]["sync/bytes"]
        == sum(t.numel() * t.element_size() for t in t0["sent1"].values())
    )


@pytest.mark.dist
@pytest.mark.slow
def test_tp_aligned_plan_rebuilds_full_tensors_from_the_shards(ranks):
    t0, t1, engine = ranks
    _assert_equal(t0["sent2"], t1["sent2"])
    _assert_equal(engine["engine2"], t0["sent2"])
    assert any(not torch.equal(engine["engine2"][n], engine["engine1"][n]) for n in engine["engine2"])
    assert engine["health2"]["weight_version"] == 4
    assert t0["stats2"]["sync/buckets"] == t1["stats2"]["sync/buckets"] == engine["stats2"]["sync/buckets"] > 3
    # each TP rank sends only its shard: together about one model (plus the replicated norms twice), not two
    full = sum(t.numel() * t.element_size() for t in t0["sent2"].values())
    assert t0["stats2"]["sync/bytes"] < 0.6 * full
    assert engine["stats2"]["sync/bytes"] == t0["stats2"]["sync/bytes"] + t1["stats2"]["sync/bytes"]


@pytest.mark.dist
@pytest.mark.slow
def test_engine_logits_equal_the_trainer_logits(ranks):
    t0, t1, engine = ranks
    trainer = torch.cat([t0["logits"], t1["logits"]], dim=-1)  # vocab-parallel halves
    torch.testing.assert_close(engine["logits"], trainer, atol=1e-5, rtol=0)


@pytest.mark.dist
@pytest.mark.slow
def test_mixed_dtypes_and_shapes_round_trip_bucket_by_bucket(ranks):
    calls = ranks[2]["calls"]
    assert len(calls) > 1 and [last for *_, last in calls] == [False] * (len(calls) - 1) + [True]
    assert {v for _, v, _ in calls} == {5} and ranks[2]["stats3"]["sync/version"] == 5
    got = [pair for named, *_ in calls for pair in named]
    assert [n for n, _ in got] == list(MIXED)
    _assert_equal(dict(got), MIXED)
    assert dict(got)["d"].shape == ()


def test_bucketing_marks_only_the_final_bucket_last_and_rejects_an_empty_update():
    from cod_megatron.sync.buckets import with_last
    from cod_megatron.sync.dist_transport import BroadcastSender, WireTensor, wire_buckets

    items = [(WireTensor(str(i), (4,), torch.float32), torch.zeros(4)) for i in range(5)]
    got = [([m.name for m, _ in b], last) for b, last in with_last(wire_buckets(items, 32))]
    assert got == [(["0", "1"], False), (["2", "3"], False), (["4"], True)]
    assert list(with_last([])) == []
    with pytest.raises(ValueError, match="no tensors"):
        BroadcastSender(None, src=0).send({}, version=1)  # fails before any collective
