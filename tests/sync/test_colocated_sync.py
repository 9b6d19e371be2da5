"""The colocated weight sync: every trainer rank serializes its own full copy of each bucket, rank 0 sends them.

Two spawned gloo ranks (TP 2; or DP 2) against stand-in SGLang servers that are separate programs, as SGLang is:
every engine ends up with exactly the HF tensors a single-rank export of the same checkpoint gives, each engine TP
rank loaded the payload of the trainer rank on its GPU, and each update was closed once, with the right version. A
failing POST on rank 0 fails the sync on every rank instead of leaving the others waiting.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.dist import free_port, init_method, spawn
from tests.engines.sglang_standin import COMMAND
from tests.policy.parallel_utils import tiny_cfg


def _worker(rank: int, world: int, ckpt: str, tmp: str, overrides: tuple[str, ...]):
    from cod_megatron.config import finalize
    from cod_megatron.engines.sglang.client import SGLangEngine
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer
    from cod_megatron.sync.weight_sync import WeightSync

    cfg = tiny_cfg(*overrides)
    layout = finalize(cfg)
    init_distributed(layout, rank=rank, world_size=world, init_method=init_method())
    # rank 0 owns the servers: their shared-memory client keeps the ranks' torch_shm_manager (which holds this
    # spawn's pipes) alive, so they must end before the ranks do, or the spawn would never see its children exit
    actors = _servers(Path(tmp), layout.engines, layout.engine_tp) if rank == 0 else []
    try:
        trainer = PolicyTrainer(cfg, layout)
        trainer.load(ckpt, with_optimizer=False)
        engines = [SGLangEngine(a.start(), transport="tensor") for a in actors]
        sync = WeightSync(cfg.model, engines, bucket_bytes=8 << 10, engine_ranks=layout.colocated_engine_ranks())
        stats = sync.sync(trainer.model, version=3)
        # payloads that do not match the engine's TP size: rank 0's POST fails, and so must every rank's sync
        wrong = [[0, 1]] if layout.engine_tp == 1 else [[0]]
        bad = WeightSync(cfg.model, engines[:1], bucket_bytes=8 << 10, engine_ranks=wrong)
        try:
            bad.sync(trainer.model, version=4)
            failure = None
        except Exception as exc:
            failure = type(exc).__name__
        return {"buckets": stats["sync/buckets"], "versions": [e.weight_version for e in engines], "failure": failure}
    finally:
        for a in actors:
            a.shutdown()
        destroy_distributed()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A TP 1 checkpoint and its single-rank HF export."""
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_export import export_hf_weights
    from cod_megatron.policy.trainer import PolicyTrainer

    ckpt = str(tmp_path_factory.mktemp("colocated") / "init")
    cfg = tiny_cfg()
    init_distributed(finalize(cfg), master_port=free_port())
    try:
        trainer = PolicyTrainer(cfg, finalize(cfg))
        trainer.save(ckpt, with_optimizer=False)
        return ckpt, export_hf_weights(trainer.model, cfg.model)
    finally:
        destroy_distributed()


def _servers(tmp: Path, engines: int, engine_tp: int) -> list:
    """Stand-in server programs (not started), engine ``i`` recording what it loads to ``tmp/engine<i>.pt``."""
    from cod_megatron.engines.sglang.actor import SGLangServerActor
    from cod_megatron.engines.sglang.server import SGLangServerConfig

    actors = []
    for i in range(engines):
        record = ("--record", str(tmp / f"engine{i}.pt"))
        srv = SGLangServerConfig(model_path="standin", tp_size=engine_tp, extra_args=record)
        actors.append(SGLangServerActor(srv, log_dir=str(tmp), name=f"engine{i}", command=COMMAND, gpu_ids=[]))
    return actors


@pytest.mark.parametrize(
    "overrides,engines,engine_tp",
    [
        (("parallel.tp=2", "parallel.engines=2"), 2, 1),  # qwen3_8b's shape: one TP-1 engine per trainer rank
        (("parallel.dp=2", "parallel.engine_tp=2"), 1, 2),  # one engine at TP 2 over both ranks' GPUs
    ],
)
def test_each_engine_loads_every_ranks_full_export(tmp_path, reference, overrides, engines, engine_tp):
    ckpt, want = reference
    overrides = (*overrides, "parallel.colocated=true", "parallel.gpus_per_node=2")
    results = spawn(_worker, 2, ckpt, str(tmp_path), overrides)
    records = [tmp_path / f"engine{i}.pt" for i in range(engines)]
    assert results[0]["versions"] == [3] * engines and results[0]["buckets"] > 2
    assert [r["failure"] for r in results] == ["SGLangError", "RuntimeError"]
    for record in records:
        served = torch.load(record, weights_only=True)
        assert served["versions"] == [3] and served["buckets"] == results[0]["buckets"]  # closed once, every bucket
        assert sorted(served["weights"]) == sorted(want)
        for name, t in want.items():
            assert torch.equal(served["weights"][name], t), name
