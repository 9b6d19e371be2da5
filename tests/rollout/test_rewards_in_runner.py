"""Rewards as the runner records them (cod.md 3.1, 3.3): the step penalty and the hint penalty reach r_x and r_z."""

import pytest

from cod_envs import registry
from cod_megatron.cod.episode import Pack, Task
from cod_megatron.cod.rewards import RewardRule
from cod_megatron.config import AlgorithmConfig
from cod_megatron.engines.interface import SamplingParams, TextPolicyEngine
from cod_megatron.rollout.renderers import renderer_for
from cod_megatron.rollout.rewards import reward_rule
from cod_megatron.rollout.text_play import run_text_lifecycle
from cod_megatron.rollout.token_play import run_token_lifecycle


def _frozenlake_pack(n_packs: int = 6):
    domain = registry.load("frozenlake_obscure")
    rows = domain.make_rows(4 * n_packs, 3, "train", "easy")
    return domain, [rows[4 * i : 4 * i + 4] for i in range(n_packs)]


def test_frozenlake_oracle_successes_pay_the_step_penalty_of_the_domain():
    domain, packs = _frozenlake_pack()
    seen = 0
    for i, rows in enumerate(packs):
        lc = run_text_lifecycle(domain.env, rows, pack_seed=i, policy=domain.policies["oracle"](i))
        for ep in (e for e in lc.episodes if e.kind == "solve"):
            budget = ep.turn_budget
            assert budget == 8  # easy maps: agent_max_steps 8
            if ep.outcome > 0:
                seen += 1
                assert ep.penalty == pytest.approx(0.1 * ep.turns_used / budget)
                assert ep.reward == pytest.approx(ep.outcome - 0.1 * ep.turns_used / budget)
                assert ep.reward < 1.0
            else:
                assert ep.penalty == 0.0 and ep.reward == ep.outcome
        assert lc.solve_rewards == [e.reward for e in lc.episodes if e.kind == "solve"]
    assert seen > 0


def test_the_registry_entry_owns_the_coefficient():
    coefs = {name: registry.load(name).step_penalty_coef for name in registry.DOMAINS}
    assert coefs["frozenlake_obscure"] == coefs["alchemy_random"] == 0.1
    for name in ("grid_navigation", "pde_discovery", "terminal", "optimal_control", "hidden_key"):
        assert coefs[name] == 0.0, name


def test_a_recipe_override_replaces_the_domain_coefficient():
    domain, packs = _frozenlake_pack(3)
    rule = reward_rule(AlgorithmConfig(step_penalty_coef=0.0), domain)
    for i, rows in enumerate(packs):
        lc = run_text_lifecycle(domain.env, rows, pack_seed=i, policy=domain.policies["oracle"](i), rewards=rule)
        assert all(e.reward == e.outcome for e in lc.episodes if e.kind == "solve")
    assert reward_rule(AlgorithmConfig(), domain).step_penalty_coef == 0.1
    assert reward_rule(AlgorithmConfig(step_penalty_coef=0.25), domain).step_penalty_coef == 0.25


def test_the_update_penalty_is_read_from_the_config():
    domain, packs = _frozenlake_pack(1)
    rule = reward_rule(AlgorithmConfig(hint_penalty=0.3), domain)
    garbage = lambda messages: "no hint and no answer"  # noqa: E731
    lc = run_text_lifecycle(domain.env, packs[0], pack_seed=0, policy=garbage, rewards=rule)
    assert lc.update_rewards == [-0.3] * 3


def test_the_token_runner_records_outcome_and_penalty_on_each_episode():
    domain, packs = _frozenlake_pack(2)
    renderer = renderer_for(domain.name)
    for i, rows in enumerate(packs):
        pack = Pack(
            pack_id=i, seed=i, tasks=tuple(Task(taskset_id=domain.name, row=k, data=r) for k, r in enumerate(rows))
        )
        engine = TextPolicyEngine(domain.policies["oracle"](i), renderer.encode, renderer.end_of_turn_id)
        lc, trace = run_token_lifecycle(
            domain.env, pack, 0, engine=engine, renderer=renderer, params=SamplingParams(max_new_tokens=2048)
        )
        text = run_text_lifecycle(domain.env, rows, pack_seed=i, policy=domain.policies["oracle"](i))
        assert lc.solve_rewards() == text.solve_rewards
        for ep in lc.solves():
            assert ep.outcome is not None and ep.reward == pytest.approx(max(0.0, ep.outcome - ep.penalty))
            if ep.outcome > 0:
                assert ep.penalty > 0


def test_the_token_ramp_uses_response_tokens_when_configured():
    rule = RewardRule(step_penalty_coef=0.1, len_zero_penalty=10, len_full_penalty=20)
    # ramp = mean(clip((15 - 10) / 10), clip((30 - 10) / 10)) = mean(0.5, 1.0) = 0.75; turns 2 of 8
    assert rule.solve(1.0, [15, 30], turns_used=2, turn_budget=8) == pytest.approx(1.0 - 0.1 * (0.75 + 0.25))
    assert rule.solve(0.0, [15, 30], turns_used=2, turn_budget=8) == 0.0
    assert rule.solve(-0.1, [15], turns_used=1, turn_budget=8) == -0.1


def test_rollout_metrics_log_outcome_and_penalty_apart():
    from cod_megatron.rollout.manager import RolloutResult
    from cod_megatron.rollout.metrics import rollout_metrics

    domain, packs = _frozenlake_pack(2)
    renderer = renderer_for(domain.name)
    lcs = []
    for i, rows in enumerate(packs):
        pack = Pack(
            pack_id=i, seed=i, tasks=tuple(Task(taskset_id=domain.name, row=k, data=r) for k, r in enumerate(rows))
        )
        engine = TextPolicyEngine(domain.policies["oracle"](i), renderer.encode, renderer.end_of_turn_id)
        lcs.append(
            run_token_lifecycle(domain.env, pack, 0, engine=engine, renderer=renderer, params=SamplingParams(2048))[0]
        )
    m = rollout_metrics(RolloutResult(lcs, [], 0.0, 0, 0, 0, 0))
    solves = [e for lc in lcs for e in lc.solves()]
    assert m["rollout/solve_outcome"] == pytest.approx(sum(e.outcome for e in solves) / len(solves))
    assert m["rollout/solve_penalty"] == pytest.approx(sum(e.penalty for e in solves) / len(solves))
    assert m["rollout/solve_penalty"] > 0
    mean_r = sum(m[f"rollout/reward_pos_{j}"] for j in range(4)) / 4
    assert mean_r == pytest.approx(m["rollout/solve_outcome"] - m["rollout/solve_penalty"])


def test_the_update_prompt_shows_r_x_after_the_penalty():
    from cod_megatron.cod.hints import format_reward

    domain, packs = _frozenlake_pack(4)
    for i, rows in enumerate(packs):
        oracle, prompts = domain.policies["oracle"](i), []

        def policy(messages, oracle=oracle, prompts=prompts):
            prompts.append(messages)
            return oracle(messages)

        lc = run_text_lifecycle(domain.env, rows, pack_seed=i, policy=policy)
        for solve, update in zip(lc.episodes[0::2], lc.episodes[1::2], strict=False):
            text = "\n".join(m["content"] for m in update.prompt)
            assert f"Reward: {format_reward(solve.reward)}" in text
            if solve.outcome > 0:
                assert f"Reward: {format_reward(solve.outcome)}" not in text
