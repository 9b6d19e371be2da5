"""The trainer -> SGLang weight channel for real on CPU: a gloo update group the stand-in server joins like SGLang.

The trainer joins as rank 0 while the engine's ``/init_weights_update_group`` POST is in flight, then a weight sync
sends every bucket through ``/update_weights_from_distributed`` with one broadcast per tensor; the stand-in's engine
ends up with exactly the trainer's HF tensors. After a restart (a new server) the trainer joins its new group.
"""

from __future__ import annotations

import torch

from cod_megatron.engines.sglang.client import SGLangEngine
from cod_megatron.engines.sglang.update_group import connect_engine
from tests.dist import free_port
from tests.engines.sglang_standin import GlooTransport, SGLangStandIn


class Weights:
    """The stand-in's engine: keeps what it is sent."""

    def __init__(self):
        self.params: dict[str, torch.Tensor] = {}
        self.versions: list[int] = []

    def update_weights(self, named_tensors, *, version, last):
        self.params |= {n: t.clone() for n, t in named_tensors}
        if last:
            self.versions.append(version)


def _serve(urls, done, out: str) -> None:
    """A stand-in server in its own process (the group's name is per process, as between trainer and SGLang)."""
    served = Weights()
    with SGLangStandIn(served, transport=GlooTransport()) as server:
        urls.put(server.url)
        done.wait(120)
        torch.save({"params": served.params, "versions": served.versions, "joined": server.transport.joined}, out)


def test_a_weight_sync_reaches_the_server_through_its_update_group(tmp_path):
    import multiprocessing as mp

    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer
    from cod_megatron.sync.hf_map import export_hf_weights
    from cod_megatron.sync.weight_sync import WeightSync
    from tests.policy.parallel_utils import tiny_cfg

    ctx = mp.get_context("spawn")
    cfg = tiny_cfg("model.num_layers=2")
    init_distributed(finalize(cfg), master_port=free_port())
    try:
        trainer = PolicyTrainer(cfg, finalize(cfg))
        want = export_hf_weights(trainer.model, cfg.model)
        for attempt in range(2):  # the second time: a restarted server, a new group
            urls, done, out = ctx.Queue(), ctx.Event(), str(tmp_path / f"served{attempt}.pt")
            proc = ctx.Process(target=_serve, args=(urls, done, out))
            proc.start()
            try:
                engine = SGLangEngine(urls.get(timeout=60), transport="distributed")
                connect_engine(engine, "127.0.0.1", free_port(), backend="gloo")
                stats = WeightSync(cfg.model, [engine], bucket_bytes=16 << 10).sync(trainer.model, version=attempt)
            finally:
                done.set()
                proc.join(60)
            served = torch.load(out, weights_only=False)
            assert served["joined"][0]["rank_offset"] == 1 and served["joined"][0]["world_size"] == 2
            assert stats["sync/buckets"] > 2 and served["versions"] == [attempt] and engine.weight_version == attempt
            assert sorted(served["params"]) == sorted(want)
            for name, t in want.items():
                assert torch.equal(served["params"][name], t), name
    finally:
        destroy_distributed()
