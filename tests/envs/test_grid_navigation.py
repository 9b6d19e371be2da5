"""Grid Navigation (cod.md 9.6): seeds, shared landscape, per-lifecycle reveals, malformed actions, hint use."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cod_envs import scripted
from cod_envs.base import PackState, TaskContext
from cod_envs.grid_navigation import ENV, POLICIES, cost_landscape, make_rows, start_and_target
from cod_envs.grid_navigation import policies as pol
from cod_envs.grid_navigation.data import main as data_main
from cod_envs.grid_navigation.env import REVEALED_KEY, SETTINGS, GridNavigation
from cod_megatron.cod import hints
from cod_megatron.rollout.text_play import run_text_lifecycle
from tests.envs.hint_use import hint_use

ROWS = make_rows(8, seed=0)
MEGA = "x" * (1 << 20)


def make_env(row=ROWS[0], pack_seed=7, task_idx=0, state=None):
    ctx = TaskContext(row=row, pack_seed=pack_seed, task_idx=task_idx, pack_size=4)
    return GridNavigation(ctx, state if state is not None else PackState())


def legal_moves(env):
    r, c = env.pos
    return [(r, k) for k in range(env.size) if k != c] + [(k, c) for k in range(env.size) if k != r]


def ans(cell):
    return f"<answer>{cell[0]},{cell[1]}</answer>"


def test_rows_cli_and_landscape_are_deterministic(tmp_path):
    assert make_rows(20, 3) == make_rows(40, 3)[:20] and make_rows(20, 3) != make_rows(20, 4)
    assert not {r["seed"] for r in make_rows(200, 1, "train")} & {r["seed"] for r in make_rows(200, 1, "test")}
    for out in ("a", "b"):
        data_main(["--train-size", "10", "--test-size", "5", "--seed", "2", "--out", str(tmp_path / out)])
    assert (tmp_path / "a/train.jsonl").read_bytes() == (tmp_path / "b/train.jsonl").read_bytes()
    for name, cfg in SETTINGS.items():
        for seed in range(30):
            costs = cost_landscape(seed, cfg)
            assert cfg.min_size <= len(costs) <= cfg.max_size
            assert all(0 <= x <= 99 for row in costs for x in row) and max(map(max, costs)) == 99, name
            rounds, start, target = start_and_target(seed, len(costs), cfg.min_rounds, cfg.max_rounds)
            assert cfg.min_rounds <= rounds <= cfg.max_rounds and start != target
    with pytest.raises(ValueError):
        make_rows(1, split="dev")


def test_same_inputs_same_texts_and_g_rollouts_share_the_landscape():
    def trace():
        env = make_env()
        out = [env.system_prompt(), env.first_observation()]
        while not env.done:
            res = env.step(ans(legal_moves(env)[0]))
            out += [res.observation, res.feedback, res.reward]
        return out + [env.final_feedback()]

    assert trace() == trace()
    envs = [make_env(row, pack_seed=7, task_idx=j) for j, row in enumerate(ROWS[:4])]
    assert len({e.costs for e in envs}) == 1 and len({(e.start, e.target, e.rounds) for e in envs}) > 1
    assert make_env(pack_seed=8).costs != envs[0].costs


def test_first_task_is_all_unknown_and_texts_follow_the_spec():
    env = make_env()
    obs = env.first_observation()
    assert obs.startswith(f"Round 1/{env.rounds}\n\nCurrent position: ") and "?" in obs and not obs.endswith("\n")
    assert all(
        t == "?"
        for line in obs.split("Observed cost grid:\n")[1].split("\n")[1 : env.size + 1]
        for t in line.split()[1:]
    )
    dest = legal_moves(env)[-1]
    res = env.step(ans(dest))
    assert (
        res.feedback.startswith(f"You moved to ({dest[0]},{dest[1]}) through ")
        and "Cumulative normalized" in res.feedback
    )
    assert res.observation.startswith(f"Round 2/{env.rounds}\n\n{res.feedback}\n\n")


def _rook_path(src, dst):
    """The cells a rook move enters (the destination included, the source not), written out independently."""
    (r0, c0), (r1, c1) = src, dst
    if r0 == r1:
        return [(r0, c) for c in (range(c0 + 1, c1 + 1) if c1 > c0 else range(c0 - 1, c1 - 1, -1))]
    return [(r, c0) for r in (range(r0 + 1, r1 + 1) if r1 > r0 else range(r0 - 1, r1 - 1, -1))]


def test_reward_is_one_minus_mean_cost_on_success_and_zero_otherwise():
    env = make_env()
    route = pol._plan(pol.np.zeros((env.size, env.size)), env.pos, env.target, env.rounds)
    cells, here = [], env.pos
    for dest in route:
        cells += _rook_path(here, dest)
        res = env.step(ans(dest))
        here = dest
    loss = sum(env.costs[r][c] for r, c in cells) / (100 * len(cells))
    assert res.done and not res.format_error and res.reward == pytest.approx(1 - loss)
    assert env.final_feedback().startswith(f"Success: finished round {env.rounds} at the target.")
    env = make_env()
    while not env.done:
        res = env.step(ans(next(m for m in legal_moves(env) if m != env.target)))
    assert res.reward == 0.0 and env.final_feedback().startswith("Failed: after")
    assert "\n\nFinal observed cost grid:\n" in env.final_feedback()


def test_reveals_persist_within_a_lifecycle_but_not_across_interleaved_ones():
    a, b = PackState(), PackState()
    env_a = make_env(state=a)
    env_b = make_env(state=b)
    env_a.step(ans(legal_moves(env_a)[0]))
    assert a.data[REVEALED_KEY] and not b.data[REVEALED_KEY]
    env_b.step(ans(legal_moves(env_b)[-1]))
    assert a.data[REVEALED_KEY] != b.data[REVEALED_KEY]
    later = make_env(ROWS[1], task_idx=1, state=a)
    assert later.first_observation().count("?") < make_env(ROWS[1], task_idx=1).first_observation().count("?")
    assert set(a.data[REVEALED_KEY]) <= later.revealed and make_env(ROWS[1], state=PackState()).revealed == set()


def test_update_trajectory_appends_the_final_state():
    lc = run_text_lifecycle(ENV, ROWS[:2], pack_seed=3, policy=pol.oracle(0))
    prompt = lc.episodes[1].prompt
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    assert "\n\nFinal environment state:\nPosition: (" in text and "Normalized loss: " in text
    assert "## Hints" not in text.split(hints.TRAJECTORY_HEADER)[-1]


def invalid(message):
    return f"Invalid action: {message} Game over."


PARSE = invalid("expected exactly one <answer>row,col</answer> destination.")


@pytest.mark.parametrize(
    "text,feedback",
    [
        ("", PARSE),
        ("1,2", PARSE),
        ("<answer>1,2</answer><answer>1,3</answer>", PARSE),
        ("<answer>1 2</answer>", PARSE),
        ("<answer>(1,2)</answer>", PARSE),
        ("<answer>1,2,3</answer>", PARSE),
        ("<answer>1.0,2</answer>", PARSE),
        ("<answer>__import__('os')</answer>", PARSE),
        (MEGA + "<answer>1,2</answer>", PARSE),
        ("<answer>99,0</answer>", invalid("Destination (99,0) is outside the grid.")),
        ("<answer>-1,0</answer>", invalid("Destination (-1,0) is outside the grid.")),
        ("<answer>" + "9" * 5000 + ",1</answer>", invalid("Destination (999999999999...,1) is outside the grid.")),
        ("SAME", invalid("The destination must differ from the current position.")),
        ("DIAG", invalid("The destination must be in the same row or the same column.")),
    ],
)
def test_malformed_actions_end_the_task_with_zero_and_the_flag(text, feedback):
    env = make_env()
    r, c = env.pos
    text = {"SAME": ans((r, c)), "DIAG": ans(((r + 1) % env.size, (c + 1) % env.size))}.get(text, text)
    res = env.step(text)
    assert (res.done, res.reward, res.format_error, res.turns_used) == (True, 0.0, True, 1)
    assert res.feedback == feedback and env.final_feedback().startswith(feedback)


@pytest.mark.parametrize(
    "fmt", ["<answer>{r},{c}</answer>", "x <answer> {r} , {c} </answer> y", "<answer>{r},0{c}</answer>"]
)
def test_accepted_spellings(fmt):
    env = make_env()
    r, c = legal_moves(env)[0]
    assert not env.step(fmt.format(r=r, c=c)).format_error


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(lambda s: f"<answer>{s}</answer>", st.text(max_size=40)),
        st.builds(lambda a, b: f"<answer>{a},{b}</answer>", st.integers(-(10**30), 10**30), st.integers(-20, 20)),
        st.lists(st.sampled_from(["<answer>", "</answer>", ",", " ", "1", "-", "0", "x"]), max_size=12).map("".join),
    )
)
def test_step_never_raises_on_any_text(text):
    env = make_env()
    for _ in range(3):
        t0 = time.perf_counter()
        res = env.step(text)
        assert time.perf_counter() - t0 < 0.5 and isinstance(res.feedback, str) and 0.0 <= res.reward <= 1.0
    assert isinstance(env.final_feedback(), str)


def test_megabyte_inputs_cost_bounded_time():
    for text in (MEGA, "<answer>" + MEGA + "</answer>", "<answer>" + "7" * (1 << 20) + ",1</answer>"):
        t0 = time.perf_counter()
        res = make_env().step(text)
        assert time.perf_counter() - t0 < 0.2 and res.format_error


def test_policy_delimiters_match_the_cod_core():
    assert (scripted.HINT_START, scripted.HINT_END) == (hints.HINT_START, hints.HINT_END)
    assert set(POLICIES) == {"oracle", "hint-blind", "random"}


def _gaps(policy_factory, n_packs, size=4):
    means, (lo, hi) = hint_use(ENV, make_rows(size * n_packs, seed=0, split="train"), policy_factory, n_packs, size)
    return means, (lo, (lo + hi) / 2, hi)


def test_oracle_uses_the_hint_beyond_the_environments_memory():
    """400 packs of 4 (27B training setting). Reveals persist, so hint-blind's curve rises too (reported, not 0);
    the oracle's gap is clearly positive and exceeds hint-blind's.

    Measured: oracle gap 0.1215 [0.1078, 0.1351] (hint-blind 0.0940); rows seed 1: 0.1135 [0.1006, 0.1264]; held-out
    pack seeds 60000+..120000+: lower bounds 0.109-0.123. The ceiling (true costs from position 1 on) is 0.125, lower
    bound 0.112, since position 0 is the same blind solver for both policies."""
    means, (lo, gap, hi) = _gaps(pol.oracle, 400)
    blind_means, (blo, bgap, bhi) = _gaps(pol.hint_blind, 400)
    print(
        f"oracle {means} gap {gap:.4f} [{lo:.4f}, {hi:.4f}]; "
        f"hint-blind {blind_means} gap {bgap:.4f} [{blo:.4f}, {bhi:.4f}]"
    )
    assert lo > 0.1, (means, lo, hi)
    assert gap > bgap and means[0] == blind_means[0]
    random_means, _ = _gaps(pol.random_policy, 50)
    assert max(random_means) < min(means)
