"""RolloutManager and the lock-step batcher: batching, seeds, retries and engine restarts (no model needed)."""

import dataclasses
import threading

import pytest

from cod_envs import registry
from cod_megatron.cod.episode import Pack, Task
from cod_megatron.engines.interface import EngineRequest, Generation, SamplingParams
from cod_megatron.rollout.batcher import LockstepBatcher
from cod_megatron.rollout.manager import DomainPlay, RolloutManager, TrainingRollouts, lifecycle_seed
from cod_megatron.rollout.renderers import renderer_for

RENDERER = renderer_for("hidden_key")
K0 = RENDERER.encode("k0")[0]


class EchoEngine:
    """Answers ``k0 <eos>`` (a solve cut at 1 token is ``k0``); records batch sizes and seeds; can fail on cue."""

    def __init__(self, fail_calls=(), always_fail=False):
        self.batches, self.seeds, self.calls = [], [], 0
        self.fail_calls, self.always_fail = set(fail_calls), always_fail
        self.healthy, self.restarted = True, 0

    def generate_batch(self, requests):
        self.calls += 1
        if self.always_fail or self.calls in self.fail_calls:
            self.healthy = False
            raise ConnectionError(f"engine call {self.calls} failed")
        self.batches.append(len(requests))
        self.seeds += [r.params.seed for r in requests]
        return [
            Generation(
                token_ids=[K0, RENDERER.end_of_turn_id][: r.params.max_new_tokens],
                logprobs=[-0.5, -0.1][: r.params.max_new_tokens],
            )
            for r in requests
        ]

    def health(self):
        return {"ok": self.healthy, "weight_version": 0}

    def restart(self):
        self.healthy, self.restarted = True, self.restarted + 1


def _packs(n, size=3):
    domain = registry.load("hidden_key")
    rows = domain.make_rows(n * size, 0, "train")
    return [
        Pack(
            pack_id=k,
            seed=100 + k,
            tasks=tuple(Task(taskset_id="hidden_key", row=i, data=rows[k * size + i]) for i in range(size)),
        )
        for k in range(n)
    ]


def _manager(engines, **kw):
    plays = {"hidden_key": DomainPlay(registry.load("hidden_key").env)}
    return RolloutManager(engines, plays, RENDERER, max_new_tokens=8, temperature=1.0, run_seed=3, **kw)


def test_lifecycles_run_in_lock_step_one_engine_call_per_episode_position():
    engine = EchoEngine()
    res = _manager([engine]).run(_packs(3), 2, step=1)
    assert len(res.lifecycles) == 6 and res.failed == 0 and res.retries == 0
    assert engine.batches == [6] * 5 and res.engine_calls == 5  # 3 solves + 2 updates, all 6 lifecycles together
    # env caps reach the engine: solves answer 1 token, updates up to 2 (k0 <eos>)
    lc = res.lifecycles[0]
    assert [e.num_generated for e in sorted(lc.episodes, key=lambda e: (e.position, e.kind))] == [1, 2, 1, 2, 1]
    assert lc.solve_rewards() in ([1.0] * 3, [0.0] * 3)  # k0 is right for the whole pack or for none of it
    # every model call of every lifecycle draws its own seed, the same in a rerun
    assert len(set(engine.seeds)) == len(engine.seeds)
    again = EchoEngine()
    _manager([again]).run(_packs(3), 2, step=1)
    assert sorted(again.seeds) == sorted(engine.seeds)
    assert lifecycle_seed(3, 1, 100, 0) != lifecycle_seed(3, 2, 100, 0)


def test_packs_spread_over_engines():
    a, b = EchoEngine(), EchoEngine()
    res = _manager([a, b]).run(_packs(3), 2, step=1)
    assert len(res.lifecycles) == 6 and a.batches == [4] * 5 and b.batches == [2] * 5


def test_a_failed_generation_retries_the_lifecycles_and_restarts_the_engine():
    engine, synced = EchoEngine(fail_calls={2}), []
    res = _manager([engine], on_restart=synced.append).run(_packs(2), 2, step=1)
    assert len(res.lifecycles) == 4 and res.failed == 0
    assert res.retries == 4 and res.restarts == 1 and engine.restarted == 1 and synced == [engine]
    for lc in res.lifecycles:  # the retried lifecycles are whole: no episode of the failed attempt is kept
        assert len(lc.solves()) == 3 and len(lc.updates()) == 2


def test_lifecycles_that_keep_failing_are_counted_not_hung():
    engine = EchoEngine(always_fail=True)
    res = _manager([engine], retries=1).run(_packs(2), 2, step=1)
    assert res.lifecycles == [] and res.failed == 4 and res.retries == 4


def test_batcher_waits_for_every_live_client_and_lets_leavers_go():
    engine = EchoEngine()
    batcher = LockstepBatcher(engine, clients=3)
    req = EngineRequest([1, 2], SamplingParams(2, seed=0))

    def client(key, calls):
        c = batcher.client(key)
        for _ in range(calls):
            c.generate(req.prompt_ids, req.params)
        batcher.leave()

    threads = [threading.Thread(target=client, args=(k, n)) for k, n in enumerate([1, 2, 3])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert engine.batches == [3, 2, 1] and batcher.requests == 6


class CachingEngine(EchoEngine):
    """Reports, like SGLang's radix cache, the longest prompt prefix it served before (all but the last token)."""

    def __init__(self):
        super().__init__()
        self.seen: list[list[int]] = []

    def generate_batch(self, requests):
        gens, out = super().generate_batch(requests), []
        for r, g in zip(requests, gens, strict=True):
            best = 0
            for seen in self.seen:
                n = min(len(seen), len(r.prompt_ids))
                best = max(best, next((i for i in range(n) if seen[i] != r.prompt_ids[i]), n))
            out.append(dataclasses.replace(g, cached_tokens=min(best, len(r.prompt_ids) - 1)))
            self.seen.append(list(r.prompt_ids))
        return out


def test_prompt_tokens_and_prefix_cache_hits_are_counted_per_step():
    from cod_megatron.rollout.metrics import rollout_metrics

    engine = CachingEngine()
    res = _manager([engine]).run(_packs(2), 2, step=1)
    assert res.prompt_tokens == sum(len(p) for p in engine.seen)
    assert 0 < res.cached_tokens < res.prompt_tokens  # a pack's later prompts share its earlier ones' prefix
    metrics = rollout_metrics(res)
    assert metrics["rollout/prefix_cache_hit_rate"] == res.cached_tokens / res.prompt_tokens
    assert _manager([EchoEngine()]).run(_packs(2), 2, step=1).cached_tokens == 0  # an engine without a cache


class NoRestartEngine:
    """Generates and answers health probes, but declares no restart."""

    generate_batch = EchoEngine.generate_batch
    health = EchoEngine.health


def test_an_engine_that_declares_no_restart_is_refused_at_construction():
    with pytest.raises(TypeError, match="NoRestartEngine is not a ServingEngine"):
        _manager([EchoEngine(), NoRestartEngine()])


def test_every_engine_the_loop_starts_declares_what_the_manager_calls():
    from cod_megatron.engines.embedded import EmbeddedEngine
    from cod_megatron.engines.interface import InferenceEngine, SerializedWeightsEngine, ServingEngine
    from cod_megatron.engines.sglang.client import SGLangEngine
    from cod_megatron.engines.sglang.ray_engine import SGLangRayEngine
    from cod_megatron.engines.startup import RayEngine

    for cls in (EmbeddedEngine, RayEngine, SGLangRayEngine, SGLangEngine):
        assert issubclass(cls, ServingEngine) and issubclass(cls, InferenceEngine), cls.__name__
    for cls in (SGLangRayEngine, SGLangEngine):  # the colocated CUDA-IPC weight path
        assert issubclass(cls, SerializedWeightsEngine), cls.__name__


class StepPacks:
    """A pack source that records which step's packs were asked for."""

    def __init__(self):
        self.steps = []

    def train_packs(self, step):
        self.steps.append(step)
        return _packs(2)


def test_training_rollouts_generate_a_step_by_name_as_the_manager_runs_it():
    source, engine, direct = StepPacks(), EchoEngine(), EchoEngine()
    res = TrainingRollouts(_manager([engine]), source, group_size=2, update_branches=1).generate(4)
    assert source.steps == [4] and len(res.lifecycles) == 4
    _manager([direct]).run(_packs(2), 2, step=4)
    assert engine.seeds == direct.seeds  # seeded by the step it was asked for, exactly as a direct run
