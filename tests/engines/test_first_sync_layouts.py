"""The first weight sync of a run cannot raise for the shipped recipes' layouts, scaled down to two CPU ranks.

Two trainer ranks (TP 2, or PP 2 x VPP 2 as in the 70B recipe) start disaggregated SGLang engines (the stand-in
program, each in its own process, joining real gloo update groups) the way `train` does, and sync: every engine
receives every HF tensor of the model once per sync. With PP the second stage's source broadcasts its layers
straight to the engines, in a group of its own per engine; after an engine restart both groups are made again.
"""

import json

import pytest

import cod_recipes
from tests.dist import init_method, spawn
from tests.engines.sglang_standin import COMMAND
from tests.policy.parallel_utils import tiny_cfg


def _worker(rank, world, tmp_path, overrides):
    from cod_megatron.config import apply_overrides, finalize
    from cod_megatron.engines.sglang.protocol import HttpClient
    from cod_megatron.engines.startup import shutdown_engines, start_engines
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer
    from cod_megatron.sync.weight_sync import WeightSync

    cfg = apply_overrides(cod_recipes.get("debug_cpu"), ["parallel.engines=2", "parallel.colocated=false", *overrides])
    layout = finalize(cfg)  # a CPU config refuses rollout.engine=sglang; the stand-in is what makes it run here
    apply_overrides(cfg, [
        "rollout.engine=sglang", "rollout.backend=inprocess", f"rollout.sglang_command={json.dumps(COMMAND)}",
        "rollout.sglang_model_path=/models/standin", "rollout.sglang_startup_timeout_s=60",
        f"run.output_dir={tmp_path}",
    ])  # fmt: skip
    init_distributed(layout, rank=rank, world_size=world, init_method=init_method())
    engines = []
    try:
        trainer = PolicyTrainer(cfg, layout)
        engines = start_engines(cfg, layout, {"stop_token_ids": [99], "hf_config": None}) if rank == 0 else []
        sync = WeightSync(cfg.model, engines, bucket_bytes=8 << 10)
        sync.sync(trainer.model, version=0)
        if rank == 0:
            engines[1].restart()  # a new server: rank 0 re-joins its group now, a stage source at the next sync
        sync.sync(trainer.model, version=1)
        infos = [HttpClient(e.url).request("GET", "/server_info") for e in engines]
        return [{**i["standin_engine"], "groups": len(i["standin_update_groups"])} for i in infos]
    finally:
        shutdown_engines(engines)
        destroy_distributed()


def _hf_tensor_count(cfg) -> int:
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.hf_export import iter_hf_weights
    from cod_megatron.policy.trainer import PolicyTrainer
    from tests.dist import free_port

    init_distributed(finalize(cfg), master_port=free_port())
    try:
        return sum(1 for _ in iter_hf_weights(PolicyTrainer(cfg, finalize(cfg)).model, cfg.model))
    finally:
        destroy_distributed()


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.parametrize(
    "overrides",
    [["parallel.tp=2", "parallel.gpus_per_node=4"], ["parallel.pp=2", "parallel.vpp=2", "parallel.gpus_per_node=4"]],
    ids=["tp2", "pp2_vpp2"],
)
def test_the_first_sync_reaches_every_engine_with_every_tensor(tmp_path, overrides):
    want = _hf_tensor_count(tiny_cfg())
    result, _ = spawn(_worker, 2, tmp_path, overrides)
    # engine 0 got both syncs; engine 1 restarted in between, its new server got the second one
    assert [(e["weight_version"], e["tensors_received"]) for e in result] == [(1, 2 * want), (1, want)]
    # one update group with rank 0, and with PP one more per later stage, hosted by that stage's source
    stages = 2 if "parallel.pp=2" in overrides else 1
    assert [e["groups"] for e in result] == [stages, stages]
