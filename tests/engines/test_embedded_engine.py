"""The embedded engine against the trainer: the step-0 gates of the CoD loop, seeds, and weight-update checks."""

import pytest
import torch

import cod_recipes
from cod_envs import registry
from cod_megatron.cod.credit import assign_credit
from cod_megatron.config import apply_overrides, finalize
from cod_megatron.data.denominators import step_denominators
from cod_megatron.data.episodes import pack_episodes
from cod_megatron.engines.embedded import EmbeddedEngine
from cod_megatron.engines.interface import EngineRequest, SamplingParams
from cod_megatron.models.hf_config import hf_config_from_model
from cod_megatron.rollout.manager import DomainPlay, RolloutManager
from cod_megatron.rollout.pack_source import PackSource
from cod_megatron.rollout.renderers import renderer_for
from cod_megatron.sync.weight_sync import WeightSync
from tests.dist import free_port


@pytest.fixture(scope="module")
def setup():
    """A random-init debug_cpu trainer, its weights synced into an embedded engine in small buckets."""
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = apply_overrides(cod_recipes.get("debug_cpu"), ["rollout.packs_per_step=3", "rollout.group_size=4"])
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:
        trainer = PolicyTrainer(cfg, layout)
        renderer = renderer_for("hidden_key")
        engine = EmbeddedEngine(hf_config_from_model(cfg.model), stop_token_ids=[renderer.end_of_turn_id])
        sync = WeightSync(cfg.model, [engine], bucket_bytes=16 << 10)
        info = sync.sync(trainer.model, version=0)
        yield cfg, layout, trainer, renderer, engine, info
    finally:
        destroy_distributed()


def test_weights_arrive_in_several_buckets_and_set_the_version(setup):
    *_, engine, info = setup
    assert info["sync/buckets"] > 3 and engine.health() == {"ok": True, "weight_version": 0, "released": False}


def test_step0_trainer_logprobs_equal_the_engines_and_old_kl_is_zero(setup):
    cfg, layout, trainer, renderer, engine, _ = setup
    domain = registry.load("hidden_key")
    manager = RolloutManager(
        [engine], {domain.name: DomainPlay(domain.env)}, renderer, max_new_tokens=8, temperature=1.0, run_seed=7
    )
    result = manager.run(PackSource(domain, cfg).train_packs(1), cfg.rollout.group_size, step=1)
    assert len(result.lifecycles) == 12 and result.failed == 0
    # lock-step batching: one engine call per episode position, not one per episode
    assert result.engine_calls == 2 * cfg.rollout.pack_size - 1
    credit = assign_credit(result.lifecycles, cfg.algorithm)
    ranks, _ = pack_episodes(credit.episodes, budget=256, dp=1)
    batches = ranks[0]
    assert len(batches) > 1
    trainer_logp = trainer.compute_logprobs(batches)
    n = 0
    for b, logp in zip(batches, trainer_logp, strict=True):
        m = b.loss_mask.bool()
        n += int(m.sum())
        torch.testing.assert_close(logp[m], b.rollout_logprobs[m], atol=1e-5, rtol=0)
        b.old_logprobs = logp
    assert n == sum(e.num_generated for e in credit.episodes)
    metrics = trainer.evaluate(batches, step_denominators(batches))
    assert metrics["old_kl"] == 0.0 and metrics["ratio"] == 1.0 and metrics["clip_frac"] == 0.0
    assert 0 < metrics["mismatch_abs_logp_diff"] < 1e-5


def test_step0_gate_holds_at_a_sampling_temperature_below_one(setup):
    """The engine samples from softmax(logits / T); the trainer's log-probs must be those of the same distribution,
    else every ratio, KL and mismatch correction is off by the temperature (rollout.temperature != 1)."""
    cfg, layout, trainer, renderer, engine, _ = setup
    domain = registry.load("hidden_key")
    manager = RolloutManager(
        [engine], {domain.name: DomainPlay(domain.env)}, renderer, max_new_tokens=8, temperature=0.6, run_seed=3
    )
    result = manager.run(PackSource(domain, cfg).train_packs(2), 2, step=2)
    ranks, _ = pack_episodes(assign_credit(result.lifecycles, cfg.algorithm).episodes, budget=256, dp=1)
    trainer.cfg.rollout.temperature = 0.6
    try:
        trainer_logp = trainer.compute_logprobs(ranks[0])
    finally:
        trainer.cfg.rollout.temperature = 1.0
    for b, logp in zip(ranks[0], trainer_logp, strict=True):
        m = b.loss_mask.bool()
        torch.testing.assert_close(logp[m], b.rollout_logprobs[m], atol=1e-5, rtol=0)


def test_a_request_samples_the_same_in_any_batch(setup):
    *_, engine, _ = setup
    words = renderer_for("hidden_key").encode
    a = EngineRequest(words("<bos> solve hint : k1 distractor : d3 answer :"), SamplingParams(6, seed=11))
    b = EngineRequest(words("<bos> update previous hint : none answer : k0 reward : 0"), SamplingParams(6, seed=5))
    alone = engine.generate_batch([a])[0]
    together = engine.generate_batch([b, a, b])[1]
    assert alone.token_ids == together.token_ids
    torch.testing.assert_close(torch.tensor(alone.logprobs), torch.tensor(together.logprobs), atol=1e-5, rtol=0)
    other_seed = [engine.generate_batch([EngineRequest(a.prompt_ids, SamplingParams(6, seed=s))])[0] for s in range(8)]
    assert len({tuple(g.token_ids) for g in other_seed}) > 1


def test_engine_refuses_to_serve_without_or_with_partial_weights(setup):
    cfg, *_, engine, _ = setup
    fresh = EmbeddedEngine(hf_config_from_model(cfg.model), stop_token_ids=[2])
    req = [EngineRequest([1, 2, 3], SamplingParams(2, seed=0))]
    with pytest.raises(RuntimeError, match="no weights"):
        fresh.generate_batch(req)
    tensors = dict(fresh.model.named_parameters())
    first = next(iter(tensors))
    with pytest.raises(ValueError, match="missing"):
        fresh.update_weights([(first, tensors[first].detach())], version=3, last=True)
    with pytest.raises(KeyError, match="nosuch"):
        fresh.update_weights([("nosuch", torch.zeros(1))], version=3, last=False)
    engine.release_memory()
    with pytest.raises(RuntimeError, match="released"):
        engine.generate_batch(req)
    engine.resume_memory()
    assert len(engine.generate_batch(req)[0].token_ids) >= 1


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_runs_engine_generates_on_the_runs_device(device):
    """A GPU run's embedded engine lives on the GPU (its rollouts are not generated on the host)."""
    from cod_megatron.loop.run_parts import engine_kwargs

    cfg = cod_recipes.get("debug_cpu")
    cfg.run.device = device
    kwargs = engine_kwargs(cfg, renderer_for("hidden_key"))
    assert kwargs["device"] == device
    if device == "cpu" or torch.cuda.is_available():
        engine = EmbeddedEngine(**kwargs)
        assert engine.device.type == device and next(engine.model.parameters()).device.type == device


def test_the_lm_head_projects_only_the_last_position_of_each_call():
    """The prefill needs the next-token logits of the last prompt position only; a [n, longest, V] head would cost
    about a fifth of the prefill's FLOPs on SmolLM2 and a logits tensor the size of the KV cache times V / H."""
    cfg = cod_recipes.get("debug_cpu")
    engine = EmbeddedEngine(hf_config_from_model(cfg.model), stop_token_ids=[])
    engine.update_weights([(n, p.detach()) for n, p in engine.model.named_parameters()], version=0, last=True)
    rows: list[int] = []
    engine.model.lm_head.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[1]))
    reqs = [EngineRequest(list(range(1, 11)), SamplingParams(3, seed=0)), EngineRequest([4, 5, 6], SamplingParams(3))]
    assert [len(g.token_ids) for g in engine.generate_batch(reqs)] == [3, 3]
    assert rows == [1, 1, 1]


def test_decoding_reads_values_back_a_few_times_per_batch_not_per_token():
    """Issue 31 item 5: the decode loop keeps tokens, log-probs and finish flags on the engine's device and reads
    "all finished?" once per ``DONE_CHECK_EVERY`` steps; the old loop copied the logits to the host every token."""
    import math

    from cod_megatron.engines.embedded import DONE_CHECK_EVERY
    from tests.host_reads import count_host_reads

    cfg = cod_recipes.get("debug_cpu")
    engine = EmbeddedEngine(hf_config_from_model(cfg.model), stop_token_ids=[])
    engine.update_weights(list(engine.model.named_parameters()), version=0, last=True)
    requests = [EngineRequest([1, 2, 3], SamplingParams(24, seed=s)) for s in range(3)]
    with count_host_reads() as reads:
        out = engine.generate_batch(requests)
    assert [len(g.token_ids) for g in out] == [24, 24, 24]  # no stop token: every request decodes its budget
    checks = math.ceil(24 / DONE_CHECK_EVERY)
    assert reads["__bool__"] <= checks and sum(reads.values()) <= checks + 8, dict(reads)  # + the final copies
