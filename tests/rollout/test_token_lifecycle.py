"""The runner at token level: engine interface, episodes token-in/token-out, and credit + packing on top."""

import pytest

from cod_envs import registry
from cod_megatron.cod.credit import assign_credit
from cod_megatron.cod.episode import Pack, Task
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data.episodes import pack_episodes
from cod_megatron.engines.interface import SamplingParams, TextPolicyEngine
from cod_megatron.models.chat_templates import template_renderer
from cod_megatron.models.tiny_tokenizer import build_tiny_tokenizer
from cod_megatron.rollout.text_play import run_text_lifecycle
from cod_megatron.rollout.token_play import run_token_lifecycle


@pytest.fixture(scope="module")
def renderer():
    return template_renderer(build_tiny_tokenizer("qwen3"), "qwen3")


def _pack(domain, pack_id, size=3):
    rows = domain.make_rows(size, pack_id, "test", "easy")
    return Pack(
        pack_id=pack_id,
        seed=1000 + pack_id,
        tasks=tuple(Task(taskset_id=domain.name, row=i, data=r) for i, r in enumerate(rows)),
    )


class RecordingEngine(TextPolicyEngine):
    """Keeps every prompt it was sent."""

    def generate(self, prompt_ids, params, messages=None):
        self.prompts = [*getattr(self, "prompts", []), list(prompt_ids)]
        return super().generate(prompt_ids, params, messages)


def _engine(domain, seed, renderer):
    return RecordingEngine(domain.policies["oracle"](seed), renderer.encode, renderer.end_of_turn_id)


@pytest.mark.parametrize("env", ["frozenlake_obscure", "hidden_key", "code_lock"])
def test_token_runner_matches_the_text_runner_and_records_every_token(env, renderer):
    from cod_megatron.rollout.renderers import renderer_for

    renderer = renderer_for(env)  # HiddenKey, CodeLock: their word vocabularies (the env caps responses in them)
    domain = registry.load(env)
    pack = _pack(domain, 0)
    params = SamplingParams(max_new_tokens=2048, seed=0)
    engine = _engine(domain, 5, renderer)
    lc, trace = run_token_lifecycle(domain.env, pack, 0, engine=engine, renderer=renderer, params=params)
    text = run_text_lifecycle(
        domain.env, [t.data for t in pack.tasks], pack_seed=pack.seed, policy=domain.policies["oracle"](5)
    )
    assert lc.solve_rewards() == text.solve_rewards and lc.update_rewards() == text.update_rewards
    assert len(lc.solves()) == 3 and len(lc.updates()) == 2
    for ep, tr in zip(sorted(lc.episodes, key=lambda e: (e.position, e.kind != "solve")), trace.episodes, strict=True):
        assert (ep.kind, ep.position) == (tr.kind, tr.position)
        generated = [t for t, g in zip(ep.token_ids, ep.generated, strict=True) if g]
        decoded = renderer.decode_response(generated).replace("<eos>", "")
        assert decoded.replace(" ", "") == "".join(tr.responses).replace(" ", "").replace("<eos>", "")
        assert ep.turn_ids == sorted(ep.turn_ids) and max(ep.turn_ids) == len(tr.responses) - 1
    # every engine call saw exactly a prefix of the episode it belongs to (token-in/token-out, never re-tokenised)
    assert len(engine.prompts) == sum(len(tr.responses) for tr in trace.episodes)
    for prompt in engine.prompts:
        assert any(ep.token_ids[: len(prompt)] == prompt for ep in lc.episodes)


def test_credit_and_packing_run_on_runner_output(renderer):
    domain = registry.load("frozenlake_obscure")
    lifecycles = []
    for pack_id in range(2):
        pack = _pack(domain, pack_id)
        for rollout in range(2):
            lc, _ = run_token_lifecycle(
                domain.env,
                pack,
                rollout,
                engine=_engine(domain, 10 * pack_id + rollout, renderer),
                renderer=renderer,
                params=SamplingParams(max_new_tokens=2048),
            )
            lifecycles.append(lc)
    credit = assign_credit(lifecycles, AlgorithmConfig(adaptive_red=False))
    assert len(credit.episodes) == 4 * 5 and all(e.advantage is not None for e in credit.episodes)
    ranks, stats = pack_episodes(credit.episodes, budget=8192, dp=2)
    assert stats.loss_tokens == sum(e.num_generated - e.generated[0] for e in credit.episodes)
    assert len(ranks[0]) == len(ranks[1])
