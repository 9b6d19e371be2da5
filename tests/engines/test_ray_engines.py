"""Engines as Ray actors: placement, weight updates through the object store, and a killed actor is restarted."""

import pytest
import torch

import cod_recipes
from cod_envs import registry
from cod_megatron.config import apply_overrides, finalize
from cod_megatron.engines.embedded import EmbeddedEngine
from cod_megatron.engines.startup import RayEngine, shutdown_engines, start_engines
from cod_megatron.models.hf_config import hf_config_from_model
from cod_megatron.rollout.manager import DomainPlay, RolloutManager
from cod_megatron.rollout.pack_source import PackSource
from cod_megatron.rollout.renderers import renderer_for


@pytest.mark.slow
def test_a_killed_engine_actor_is_restarted_resynced_and_the_lifecycles_retried():
    import ray

    cfg = apply_overrides(
        cod_recipes.get("debug_cpu"),
        [
            "rollout.packs_per_step=2",
            "rollout.group_size=2",
            "parallel.engines=2",
            "parallel.colocated=false",
            "parallel.gpus_per_node=3",
        ],
    )
    layout = finalize(cfg)
    renderer = renderer_for("hidden_key")
    kwargs = dict(hf_config=hf_config_from_model(cfg.model), stop_token_ids=[renderer.end_of_turn_id])
    weights = [(n, p.detach().clone()) for n, p in EmbeddedEngine(**kwargs).model.named_parameters()]
    engines = start_engines(cfg, layout, kwargs)
    try:
        assert len(engines) == 2 and all(isinstance(e, RayEngine) for e in engines)
        for e in engines:
            e.update_weights(weights, version=5, last=True)
        assert [e.health()["weight_version"] for e in engines] == [5, 5]
        resynced = []

        def resync(engine):
            engine.update_weights(weights, version=5, last=True)
            resynced.append(engine)

        domain = registry.load("hidden_key")
        plays = {domain.name: DomainPlay(domain.env)}
        manager = RolloutManager(
            engines, plays, renderer, max_new_tokens=8, temperature=1.0, run_seed=0, on_restart=resync
        )
        ray.kill(engines[1].actor)
        result = manager.run(PackSource(domain, cfg).train_packs(1), cfg.rollout.group_size, step=1)
        assert result.failed == 0 and len(result.lifecycles) == 4
        assert result.restarts == 1 and resynced == [engines[1]] and engines[1].restarts == 1
        assert result.retries == 2  # the two lifecycles of the pack on the dead engine, nothing else
        assert engines[1].health() == {"ok": True, "weight_version": 5, "released": False}
        lp = [e.rollout_logprobs for lc in result.lifecycles for e in lc.episodes]
        assert all(torch.isfinite(torch.tensor(x)).all() for x in lp)
    finally:
        shutdown_engines(engines)
    assert not ray.is_initialized()
