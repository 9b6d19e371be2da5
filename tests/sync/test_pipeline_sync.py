"""Pipeline parallelism in the loop: every stage's layers reach rank 0's engines under their HF names.

PP = 2 and PP = 2 x VPP = 2 (two spawned gloo ranks) against PP = 1 in this process, from the same seeded init:
the engine on rank 0 receives exactly the PP = 1 weights (every HF tensor, the update closed once, by the last
stage), the first training step gives the same loss, and the weights synced after it agree (fp32, 1e-5).
"""

from __future__ import annotations

import pytest
import torch

from tests.dist import free_port, init_method, spawn
from tests.policy.parallel_utils import batches, tiny_cfg


class RecordingEngine:
    """Keeps a copy of every tensor it is sent and how often an update was closed."""

    def __init__(self):
        self.weights: dict[str, torch.Tensor] = {}
        self.closed: list[int] = []

    def update_weights(self, named_tensors, *, version, last):
        for name, t in named_tensors:
            assert name not in self.weights, f"{name} sent twice"
            self.weights[name] = t.detach().clone()
        if last:
            self.closed.append(version)


def _run(ckpt: str, *overrides: str, save: bool = False):
    """From the weights in ``ckpt`` (``save``: written there first): sync, one train step, sync again; rank 0
    returns both engine snapshots and the step's loss. A PP layout initialises its
    layers from another point of the RNG stream, so every layout starts from one checkpoint, resharded."""
    from cod_megatron.config import finalize
    from cod_megatron.policy.trainer import PolicyTrainer
    from cod_megatron.sync.weight_sync import WeightSync

    cfg = tiny_cfg(*overrides)
    layout = finalize(cfg)
    trainer = PolicyTrainer(cfg, layout)
    if save:
        trainer.save(ckpt, with_optimizer=False)
    trainer.load(ckpt, with_optimizer=False)
    engines = [RecordingEngine(), RecordingEngine()] if torch.distributed.get_rank() == 0 else []
    sync = WeightSync(cfg.model, engines[:1], bucket_bytes=8 << 10)
    sync.sync(trainer.model, version=0)
    # 3 micro-batches of different lengths: VPP pads them to one length and adds a filler (a multiple of pp)
    metrics = trainer.train_step(batches(cfg.model.vocab_size, n=3))
    sync.engines = engines[1:]
    sync.sync(trainer.model, version=1)
    if not engines:
        return None
    return [(e.weights, e.closed) for e in engines], metrics["loss"]


def _pp_worker(rank: int, world: int, ckpt: str, overrides: tuple[str, ...]):
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed

    init_distributed(finalize(tiny_cfg(*overrides)), rank=rank, world_size=world, init_method=init_method())
    try:
        return _run(ckpt, *overrides)
    finally:
        destroy_distributed()


@pytest.fixture(scope="module")
def pp1(tmp_path_factory):
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed

    ckpt = str(tmp_path_factory.mktemp("pp1") / "init")
    init_distributed(finalize(tiny_cfg()), master_port=free_port())
    try:
        return ckpt, _run(ckpt, save=True)
    finally:
        destroy_distributed()


@pytest.mark.dist
@pytest.mark.parametrize("layout", [("parallel.pp=2",), ("parallel.pp=2", "parallel.vpp=2")], ids=["pp2", "pp2_vpp2"])
def test_pipeline_stages_sync_the_same_weights_and_train_the_same_step_as_pp1(pp1, layout):
    overrides = (*layout, "parallel.dp=1", "parallel.colocated=false", "parallel.gpus_per_node=3")
    ckpt, (ref_engines, ref_loss) = pp1
    result, _ = spawn(_pp_worker, 2, ckpt, overrides)
    ref_before, ref_after = [e[0] for e in ref_engines]
    (before, closed0), (after, closed1) = result[0]
    assert closed0 == [0] and closed1 == [1]  # each update closed once, by the last stage's final bucket
    assert sorted(before) == sorted(ref_before) == sorted(after)
    for name, want in ref_before.items():
        torch.testing.assert_close(before[name], want, atol=1e-5, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
    assert result[1] == pytest.approx(ref_loss, abs=1e-5)
    assert any(not torch.equal(before[n], after[n]) for n in before)  # the step moved the weights
    for name, want in ref_after.items():
        torch.testing.assert_close(after[name], want, atol=1e-5, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
