"""Alchemy-Random (cod.md 9.2): seeds, shared recipe graph, texts, malformed actions, limited mode, hint use."""

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cod_envs.alchemy_random import ENV, POLICIES, SETTINGS, generate_graph, make_rows
from cod_envs.alchemy_random import policies as pol
from cod_envs.alchemy_random.data import main as data_main
from cod_envs.alchemy_random.env import FORMAT_ERROR_FEEDBACK, AlchemyRandom
from cod_envs.alchemy_random.graph import solution_path
from cod_envs.base import PackState, TaskContext
from cod_megatron.rollout.text_play import run_text_lifecycle
from tests.envs.domain_checks import (
    cli_output_is_reproducible,
    disjoint_splits,
    format_errors_within,
    hostile_texts,
    policies_match_the_cod_core,
    read_jsonl,
    rows_are_reproducible,
    steps_never_raise,
)
from tests.envs.hint_use import hint_use, lifecycles, oracle_rises_and_hint_blind_is_flat

ROW = make_rows(1, seed=0)[0]
HARD_ROW = make_rows(1, seed=0, setting="hard")[0]


def make_env(row=ROW, pack_seed=7, task_idx=0, pack_size=4):
    return AlchemyRandom(TaskContext(row=row, pack_seed=pack_seed, task_idx=task_idx, pack_size=pack_size), PackState())


def answer(a, b):
    return f"<answer>{a} + {b}</answer>"


def failing_pair(env):
    """Two held base elements whose pair is no recipe (privileged: tests only)."""
    base = sorted(env.inventory)
    return next((a, b) for a in base for b in base if tuple(sorted((a, b))) not in env.graph.recipes)


# ---- data ------------------------------------------------------------------------------------------------------
def test_rows_are_deterministic_disjoint_and_prefix_stable(tmp_path):
    rows_are_reproducible(make_rows, 50, 20)
    assert make_rows(20, seed=3) != make_rows(20, seed=4)
    for setting, cfg in SETTINGS.items():
        train, _ = disjoint_splits(make_rows, setting)
        assert len({r["seed"] for r in train}) == 300
        assert all((r["max_rounds"], r["material_mode"]) == (cfg.max_rounds, cfg.material_mode) for r in train)
    args = ["--train-size", "30", "--test-size", "10", "--seed", "5", "--setting", "hard"]
    out = cli_output_is_reproducible(data_main, args, tmp_path)
    assert read_jsonl(out / "train.jsonl") == make_rows(30, 5, "train", "hard")


# ---- hidden structure ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", ["easy", "hard"])
def test_graphs_are_tiered_dags_with_valid_targets(setting):
    cfg = SETTINGS[setting]
    for seed in range(300):
        g = generate_graph(seed, setting, 4)
        assert cfg.min_tiers <= len(g.tiers) <= cfg.max_tiers and cfg.min_base <= len(g.tiers[0]) <= cfg.max_base
        names = [e for tier in g.tiers for e in tier]
        assert len(names) == len(set(names)) and all(e.isalpha() and e.islower() and 3 <= len(e) <= 5 for e in names)
        for (a, b), c in g.recipes.items():
            assert a <= b and g.tier_of(c) > max(g.tier_of(a), g.tier_of(b))
        assert 1 <= len(g.targets) <= 4 and len(set(g.targets)) == len(g.targets)
        for t in g.targets:
            assert g.tier_of(t) >= 1 and t not in g.noise
            path = solution_path(t, g.recipes)  # real elements never need a distractor
            assert path[-1][2] == t and not {e for step in path for e in step} & g.noise
        if setting == "easy":
            assert not g.noise
    assert any(generate_graph(s, "hard", 4).noise for s in range(50))


def test_pack_shares_the_graph_and_targets_follow_task_idx():
    rows = make_rows(8, seed=2)
    envs = [make_env(row, pack_seed=1234, task_idx=j, pack_size=8) for j, row in enumerate(rows)]
    graph = envs[0].graph
    assert all(env.graph == graph for env in envs)
    assert [env.target for env in envs] == [graph.targets[j % len(graph.targets)] for j in range(8)]
    assert make_env(rows[0], pack_seed=1234, task_idx=3).target == make_env(rows[5], pack_seed=1234, task_idx=3).target
    assert len({generate_graph(s, "easy", 4).tiers for s in range(50)}) == 50
    # G rollouts of one pack: identical prompts and identical worlds
    lcs = [run_text_lifecycle(ENV, rows[:4], pack_seed=99, policy=pol.hint_blind(g)) for g in range(3)]
    firsts = [[e.prompt for e in lc.episodes if e.kind == "solve"] for lc in lcs]
    assert firsts[0] == firsts[1] == firsts[2]


def test_same_inputs_give_same_texts_and_stable_across_processes():
    def trace():
        env = make_env(pack_seed=5)
        out = [env.system_prompt(), env.first_observation()]
        base = sorted(env.inventory)
        for a in base:
            for b in base:
                res = env.step(answer(a, b))
                out.append((res.observation, res.reward, res.done, res.feedback))
                if res.done:
                    return out, env.final_feedback()
        return out, env.final_feedback()

    assert trace() == trace()
    code = "from cod_envs.alchemy_random import generate_graph; g = generate_graph(2**40 + 3, 'hard', 8); print(g)"
    env = {"PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == str(generate_graph(2**40 + 3, "hard", 8))


# ---- texts and rules -----------------------------------------------------------------------------------------
def test_prompt_observation_and_feedback_texts():
    env = make_env()
    system = env.system_prompt()
    assert f'synthesize the target element "{env.target}"' in system and "- **No consumption**" in system
    tier_lines = "\n".join(f"- tier {t}: {', '.join(n)}" for t, n in enumerate(env.graph.tiers))
    want = f"## Element Tiers\n\n{tier_lines}\n\nThe target element '{env.target}' is at tier "
    assert want in system and system.endswith("later on.\n")
    base = sorted(env.inventory)
    assert env.first_observation() == (
        f"Round 1/8\n\nTarget: {env.target}\n\nAvailable elements in your inventory:\n"
        + "".join(f"- {e}\n" for e in base)
        + "\nChoose two elements available in your inventory to combine."
    )
    a, b = failing_pair(env)
    res = env.step(answer(a.upper(), " " + b))  # case-insensitive, stripped
    assert res.feedback == f"{a} + {b} — nothing happened." and not res.done and res.turns_used == 1
    assert res.observation.startswith(f"Round 2/8\n\n{res.feedback}\n\nTarget: ")
    res = env.step(answer("zzzzzz", a))
    assert res.feedback == "'zzzzzz' is not in your inventory." and not res.format_error
    res = env.step(answer("qqqqqq", "zzzzzz"))
    assert res.feedback == "'qqqqqq' and 'zzzzzz' are not in your inventory."
    assert sorted(env.inventory) == base


def test_success_and_out_of_rounds():
    env = make_env()
    for a, b, c in solution_path(env.target, env.graph.recipes):
        res = env.step(answer(a, b))
        assert res.feedback == f"You combined {a} + {b} and created: {c}!"
    assert res.done and res.reward == 1.0 and env.final_feedback() == f"Success! Synthesized {env.target}."
    env = make_env()
    a, b = failing_pair(env)
    for k in range(8):
        res = env.step(answer(a, b))
        assert res.done == (k == 7)
    assert res.reward == 0.0 and res.turns_used == 8
    assert env.final_feedback() == f"Failed: Ran out of rounds (8/8). Could not synthesize {env.target}."
    assert env.step(answer(a, b)).turns_used == 8  # stepping past the end is harmless


def test_limited_mode_consumes_and_runs_out():
    env = make_env(HARD_ROW, pack_seed=3, pack_size=8)
    assert env.max_turns == 15 and "- **Consumption**" in env.system_prompt()
    counts = set(env.inventory.values())
    assert len(counts) == 1
    total = sum(env.inventory.values())
    assert env.first_observation().split("\n")[4] == f"Inventory ({total} total copies):"
    a, b = failing_pair(env)
    res = env.step(answer(a, b))
    assert res.feedback == f"{a} + {b} — nothing happened. Materials consumed."
    assert sum(env.inventory.values()) == total - 2
    while not res.done:
        held = sorted(env.inventory)
        single = next((e for e in held if env.inventory[e] == 1), None)
        if single is not None:
            res = env.step(answer(single, single))
            assert res.feedback == f"Not enough '{single}' (need 2, have 1)."
        else:
            res = env.step(answer(held[0], held[-1]))
    assert env.outcome in ("materials", "rounds", "success")
    if env.outcome == "materials":
        assert env.final_feedback().startswith("Failed: Ran out of materials.")


# ---- malformed actions ---------------------------------------------------------------------------------------
MEGA = "x" * (1 << 20)


def _pair():
    return sorted(make_env().inventory)[:2]


@pytest.mark.parametrize(
    "text,format_error",
    [
        ("", True),
        ("{a} + {b}", True),
        ("<answer>{a} + {b}</answer><answer>{a} + {b}</answer>", True),
        ("<answer>{a} + {b}", True),
        ("</answer>{a} + {b}<answer>", True),
        ("<answer>{a}</answer>", True),
        ("<answer>{a} + </answer>", True),
        ("<answer> + {b}</answer>", True),
        ("<answer>{a} + {b} + {a}</answer>", True),
        ("<answer>{a} & {b}</answer>", True),
        ("<answer></answer>", True),
        ("<answer>__import__('os').system('x')</answer>", True),
        ("<answer>$(rm -rf /) + `id`</answer>", False),
        (MEGA + "<answer>{a} + {b}</answer>", True),
        ("<answer>" + MEGA + " + y</answer>", True),
        ("<answer>{a} + {a}</answer>", False),
        ("<answer>{A} +{b}</answer> trailing", False),
        ("<answer>nosuch + {b}</answer>", False),
    ],
)
def test_malformed_action_truth_table(text, format_error):
    a, b = _pair()
    env = make_env()
    res = env.step(text.replace("{a}", a).replace("{b}", b).replace("{A}", a.upper()))
    assert res.format_error == format_error and res.turns_used == 1
    if format_error:
        assert (res.done, res.reward, res.observation) == (True, 0.0, "")
        assert res.feedback == FORMAT_ERROR_FEEDBACK == env.final_feedback()
    else:
        assert res.reward in (0.0, 1.0) and len(res.feedback) < 200


ADVERSARIAL = [
    "__import__('os').system('x')",
    "<answer>__import__('os').system('touch /tmp/pwned') + x</answer>",
    "; rm -rf / #",
    "<answer>$(reboot) + `id`</answer>",
    "<answer>a\x00 + b</answer>",
    "\udcff<answer>a + b</answer>",
    "<answer>" * 1000,
    "<answer>" + "+" * 5000 + "</answer>",
    "<answer>" + "a" * 60_000 + " + b</answer>",
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hostile_texts(
        ADVERSARIAL,
        ["<answer>", "</answer>", "+", " ", "abc", "\n", "x"],
        st.builds(lambda s, t: f"<answer>{s} + {t}</answer>", st.text(max_size=20), st.text(max_size=20)),
    )
)
def test_step_never_raises_on_any_text(text):
    results = steps_never_raise(make_env(HARD_ROW if len(text) % 2 else ROW), text, seconds=0.5)
    assert all(len(res.feedback) < 300 for res in results)


def test_megabyte_inputs_cost_bounded_time():
    texts = (MEGA, "<answer>" + MEGA + "</answer>", "<answer>" + "+" * (1 << 20) + "</answer>")
    format_errors_within(make_env, texts, seconds=0.2)


# ---- policies and hint use -----------------------------------------------------------------------------------
def test_policy_delimiters_match_the_cod_core():
    policies_match_the_cod_core(POLICIES)


def test_oracle_hint_states_only_true_facts():
    learned = 0
    for i, lc in enumerate(lifecycles(ENV, make_rows(4 * 30, seed=8), pol.oracle, 30, length_limit=1000)):
        graph = generate_graph(i, "easy", 4)
        assert lc.update_rewards == [0.0, 0.0, 0.0]
        for hint in lc.hints[1:]:
            know = pol.Knowledge()
            know.add_text(hint, hint=True)
            assert all(graph.recipes.get(k) == c for k, c in know.recipes.items())
            assert not know.failed & set(graph.recipes)
            learned += len(know.recipes)
    assert learned > 30 * 3


def _gaps(policy_factory, n_packs, size=4):
    return hint_use(
        ENV, make_rows(size * n_packs, seed=0, split="train", setting="easy"), policy_factory, n_packs, size
    )


def test_oracle_uses_the_hint_and_hint_blind_is_flat():
    """200 packs of 4 (easy): the oracle's gap (positions >= 1 minus position 0) has a 95% CI (normal approximation
    over packs) above 0.1; hint-blind's contains 0."""
    means = oracle_rises_and_hint_blind_is_flat(_gaps, pol.oracle, pol.hint_blind, 200, oracle_gap_above=0.1)
    random_means, _ = _gaps(pol.random_policy, 50)
    assert max(random_means) < min(means)
