"""FrozenLake-Obscure (cod.md 9.1): seeds, shared permutation, solvable maps, texts, malformed actions, hint use."""

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cod_envs.base import MAX_ACTION_CHARS, PackState, TaskContext
from cod_envs.frozenlake_obscure import ENV, POLICIES, SETTINGS, action_mapping, make_rows
from cod_envs.frozenlake_obscure import policies as pol
from cod_envs.frozenlake_obscure.data import main as data_main
from cod_envs.frozenlake_obscure.env import (
    DELTAS,
    FORMAT_ERROR_FEEDBACK,
    HOLE_FEEDBACK,
    SUCCESS_FEEDBACK,
    SYSTEM_PROMPT,
    FrozenLakeObscure,
    generate_map,
    render_map,
    shortest_path_length,
)
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


def make_env(row, pack_seed=7, task_idx=0, pack_size=4):
    ctx = TaskContext(row=row, pack_seed=pack_seed, task_idx=task_idx, pack_size=pack_size)
    return FrozenLakeObscure(ctx, PackState())


def action_for(env, direction):
    """The action number of a direction (privileged: tests only)."""
    return next(k for k, d in env.mapping.items() if d == direction)


def answer(k):
    return f"<answer>Direction {k}</answer>"


ROW = make_rows(1, seed=0)[0]


# ---- data ------------------------------------------------------------------------------------------------------
def test_rows_are_deterministic_disjoint_and_prefix_stable(tmp_path):
    rows_are_reproducible(make_rows, 50, 20)
    assert make_rows(20, seed=3) != make_rows(20, seed=4)
    for setting, cfg in SETTINGS.items():
        train, test = disjoint_splits(make_rows, setting)
        assert len({r["seed"] for r in train}) == 300
        for row in train + test:
            assert cfg.min_size <= row["size"] <= cfg.max_size and 0.6 <= row["p"] <= 0.7
            assert (row["env_max_steps"], row["agent_max_steps"]) == (cfg.env_max_steps, cfg.agent_max_steps)


def test_cli_writes_identical_jsonl_twice(tmp_path):
    args = ["--train-size", "30", "--test-size", "10", "--seed", "5", "--setting", "hard"]
    train = read_jsonl(cli_output_is_reproducible(data_main, args, tmp_path) / "train.jsonl")
    assert len(train) == 30 and train == make_rows(30, 5, "train", "hard")


@pytest.mark.parametrize("setting,n", [("easy", 400), ("hard", 150)])
def test_every_generated_map_is_solvable_within_env_max_steps(setting, n):
    for row in make_rows(n, seed=11, split="test", setting=setting):
        grid, start, goal = generate_map(row["seed"], row["size"], row["p"], row["env_max_steps"])
        assert len(grid) == row["size"] and all(len(line) == row["size"] for line in grid)
        assert start != goal and grid[start[0]][start[1]] == "S" and grid[goal[0]][goal[1]] == "G"
        steps = shortest_path_length(grid, start, goal)
        assert steps is not None and 1 <= steps <= row["env_max_steps"]


# ---- hidden structure ----------------------------------------------------------------------------------------
def test_pack_shares_the_permutation_while_maps_differ_by_row():
    rows = make_rows(8, seed=2)
    envs = [make_env(row, pack_seed=1234, task_idx=j, pack_size=8) for j, row in enumerate(rows)]
    assert all(env.mapping == envs[0].mapping for env in envs)
    assert sorted(envs[0].mapping.values()) == sorted(DELTAS)
    assert len({env.grid for env in envs}) > 1
    assert make_env(rows[0], pack_seed=1234).grid == make_env(rows[0], pack_seed=99).grid  # map: row only
    assert len({tuple(action_mapping(s).values()) for s in range(100)}) > 12  # mapping varies across packs


def test_same_inputs_give_same_prompts_observations_and_rewards():
    actions = [answer(k) for k in (1, 2, 3, 4, 1, 2, 3, 4)]

    def trace():
        env = make_env(ROW, pack_seed=5)
        out = [env.system_prompt(), env.first_observation()]
        for a in actions:
            res = env.step(a)
            out.append((res.observation, res.reward, res.done, res.feedback))
            if res.done:
                break
        return out, env.final_feedback()

    assert trace() == trace()


def test_hidden_structure_is_stable_across_processes():
    code = (
        "from cod_envs.frozenlake_obscure import action_mapping, generate_map;"
        "print(action_mapping(2**40 + 3), generate_map(12345, 5, 0.65, 6))"
    )
    env = {"PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == f"{action_mapping(2**40 + 3)} {generate_map(12345, 5, 0.65, 6)}"


# ---- texts ---------------------------------------------------------------------------------------------------
def test_observation_and_feedback_texts():
    env = make_env(ROW)
    first = env.first_observation()
    lines = first.split("\n")
    assert lines[:3] == ["Step 1/8", "", "Current map:"]
    size = ROW["size"]
    assert all(line.endswith("\t") and line.count("\t") == size for line in lines[3 : 3 + size])
    assert (
        lines[3 + size]
        == f"You have not reached the goal (row={env.goal[0]}, col={env.goal[1]}) yet. Please decide your next action."
    )
    assert len(lines) == 4 + size and "P" in first and " G \t" in first and " S " not in first
    assert env.system_prompt() == SYSTEM_PROMPT and "X is one of 1/2/3/4. \n" in SYSTEM_PROMPT
    # a move: step 2 carries the feedback between blank lines
    r, c = env.start
    board = pol.Board(list(env.grid), env.start, env.goal)
    direction = next(
        d for d in DELTAS if board.move(env.start, d) == env.start or board.tile(board.move(env.start, d)) == "F"
    )
    nr, nc = board.move(env.start, direction)
    inside = (nr, nc) != (r, c)
    k = action_for(env, direction)
    res = env.step(answer(k))
    assert not res.done and res.turns_used == 1 and not res.format_error
    if inside:
        want = (
            f"You executed action Direction {k}. Your position changed from (row={r}, col={c}) to (row={nr}, col={nc})."
        )
    else:
        want = (
            f"You executed action Direction {k}. Your position did not change (stayed at row={r}, col={c}). "
            "This may be because you tried to move beyond the edge of the map."
        )
    assert res.feedback == want
    assert res.observation.startswith(f"Step 2/8\n\n{want}\n\nCurrent map:\n")


def test_render_map_symbols():
    grid = ("SFH", "FHG")
    assert render_map(grid, (0, 0)) == " P \t _ \t O \t\n _ \t O \t G \t"
    assert render_map(grid, (1, 1)) == " _ \t _ \t O \t\n _ \t X \t G \t"
    assert render_map(grid, (1, 2)) == " _ \t _ \t O \t\n _ \t O \t √ \t"


def _find_row(predicate, setting="easy"):
    for row in make_rows(500, seed=21, setting=setting):
        env = make_env(row)
        if predicate(env):
            return env
    raise AssertionError("no row found")


def test_success_hole_and_out_of_steps_endings():
    env = make_env(ROW)
    grid, (r, c), goal = env.grid, env.start, env.goal
    # follow a true shortest path (privileged) to the goal
    board = pol.Board([line.replace("S", "F") for line in grid], (r, c), goal)
    turns = 0
    while True:
        dist = pol._distances_to(board, goal)
        direction = min(DELTAS, key=lambda d: dist.get(board.move(board.pos, d), 99))
        res = env.step(answer(action_for(env, direction)))
        turns += 1
        board.pos = board.move(board.pos, direction)
        if res.done:
            break
    assert res.reward == 1.0 and env.final_feedback() == SUCCESS_FEEDBACK and turns == res.turns_used <= 6

    def next_to_hole(e):
        return any(
            e.grid[x][y] == "H" for x, y in (pol.Board(list(e.grid), e.start, e.goal).move(e.start, d) for d in DELTAS)
        )

    env = _find_row(next_to_hole)
    board = pol.Board(list(env.grid), env.start, env.goal)
    direction = next(d for d in DELTAS if env.grid[board.move(env.start, d)[0]][board.move(env.start, d)[1]] == "H")
    res = env.step(answer(action_for(env, direction)))
    assert res.done and res.reward == 0.0 and not res.format_error and env.final_feedback() == HOLE_FEEDBACK

    def has_frozen_neighbour(e):
        board = pol.Board(list(e.grid), e.start, e.goal)
        return any(e.grid[board.move(e.start, d)[0]][board.move(e.start, d)[1]] == "F" for d in ("Up", "Down"))

    env = _find_row(has_frozen_neighbour)
    board = pol.Board(list(env.grid), env.start, env.goal)
    there = next(d for d in ("Up", "Down") if env.grid[board.move(env.start, d)[0]][board.move(env.start, d)[1]] == "F")
    back = {"Up": "Down", "Down": "Up"}[there]
    for t in range(8):
        res = env.step(answer(action_for(env, there if t % 2 == 0 else back)))
        assert res.done == (t == 7)
    assert res.reward == 0.0 and res.turns_used == 8
    assert (
        env.final_feedback() == "Failed: Ran out of steps (8/8) without reaching the goal. Try to find a shorter path."
    )
    again = env.step(answer(1))  # stepping past the end is harmless
    assert again.done and again.turns_used == 8


def test_hard_setting_budget():
    row = make_rows(1, seed=0, setting="hard")[0]
    env = make_env(row)
    assert env.max_turns == 10 and env.first_observation().startswith("Step 1/10\n")
    assert 6 <= len(env.grid) <= 7


# ---- malformed actions ---------------------------------------------------------------------------------------
MEGA = "x" * (1 << 20)
PARSE_ERROR = FORMAT_ERROR_FEEDBACK


def invalid(n):
    return f"Invalid format: Direction {n} is not a valid action. Expected: Direction 1, 2, 3, or 4. Game over."


@pytest.mark.parametrize(
    "text,feedback",
    [
        ("", PARSE_ERROR),
        ("Direction 1", PARSE_ERROR),
        ("<answer>Direction 1</answer><answer>Direction 2</answer>", PARSE_ERROR),
        ("<answer>Direction 1</answer> then <answer>", PARSE_ERROR),
        ("<answer>Direction 1", PARSE_ERROR),
        ("</answer>Direction 1<answer>", PARSE_ERROR),
        ("<answer>Up</answer>", PARSE_ERROR),
        ("<answer>Direction up</answer>", PARSE_ERROR),
        ("<answer>Direction1</answer>", PARSE_ERROR),
        ("<answer>Direction -1</answer>", PARSE_ERROR),
        ("<answer>I choose Direction 1</answer>", PARSE_ERROR),
        ("<answer>DIRECTION 1</answer>", PARSE_ERROR),
        ("<answer>__import__('os').system('x')</answer>", PARSE_ERROR),
        ("<answer>$(rm -rf /); `id` | cat && echo</answer>", PARSE_ERROR),
        (MEGA + "<answer>Direction 1</answer>", PARSE_ERROR),
        ("<answer>Direction 5</answer>", invalid(5)),
        ("<answer>Direction 0</answer>", invalid(0)),
        ("<answer>direction 05</answer>", invalid(5)),
        ("<answer>Direction 123456789012345</answer>", invalid("123456789012...")),
        ("<answer>Direction " + "9" * 10_000 + "</answer>", invalid("999999999999...")),
    ],
)
def test_malformed_actions_end_the_episode_with_zero_and_the_flag(text, feedback):
    env = make_env(ROW)
    res = env.step(text)
    assert (res.done, res.reward, res.format_error, res.turns_used) == (True, 0.0, True, 1)
    assert res.feedback == feedback and env.final_feedback() == feedback and res.observation == ""


@pytest.mark.parametrize(
    "text",
    [
        "<answer>Direction 2</answer>",
        "thinking <answer> direction 2 </answer>",
        "<answer>Direction 2 (up)</answer>",
        "<answer>Direction\t2</answer> and text after",
        "<answer>Direction 02</answer>",
        "<answer>Direction 2</answer>" + MEGA,
    ],
)
def test_accepted_action_spellings(text):
    env = make_env(ROW)
    res = env.step(text)
    assert not res.format_error and "You executed action Direction 2." in res.feedback


ADVERSARIAL = [
    "__import__('os').system('x')",
    "<answer>__import__('os').system('touch /tmp/pwned')</answer>",
    "; rm -rf / #",
    "$(reboot)",
    "`id`",
    "<answer>Direction 1; ls</answer>",
    "<answer>Direction 1\x00</answer>",
    "<answer>Direction ١</answer>",
    "<answer>Direction \u0661\u0662</answer>",
    "\udcff<answer>Direction 3</answer>",
    "<answer>" * 1000,
    "<answer>Direction " + "1" * 5000 + "</answer>",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hostile_texts(
        ADVERSARIAL,
        ["<answer>", "</answer>", "Direction", " ", "1", "4", "x"],
        st.builds(lambda n: f"<answer>Direction {n}</answer>", st.integers(-(10**30), 10**30)),
    )
)
def test_step_never_raises_on_any_text(text):
    steps_never_raise(make_env(ROW), text, seconds=0.5)


def test_megabyte_inputs_cost_bounded_time():
    texts = (MEGA, "<answer>" + MEGA + "</answer>", "<answer>Direction " + "7" * (1 << 20) + "</answer>")
    format_errors_within(lambda: make_env(ROW), texts, seconds=0.2)
    assert len("<answer>Direction 7</answer>") < MAX_ACTION_CHARS


# ---- policies and hint use -----------------------------------------------------------------------------------
def test_policy_delimiters_match_the_cod_core():
    policies_match_the_cod_core(POLICIES)


def test_oracle_hint_states_only_true_mapping_facts():
    learned = 0
    for i, lc in enumerate(lifecycles(ENV, make_rows(4 * 30, seed=8), pol.oracle, 30, length_limit=1000)):
        truth = action_mapping(i)
        assert lc.update_rewards == [0.0, 0.0, 0.0]
        solves = [e for e in lc.episodes if e.kind == "solve"]
        for solve, update in zip(solves, [e for e in lc.episodes if e.kind == "update"], strict=False):
            shown = update.prompt[-1]["content"]
            assert f"Environment feedback: {solve.feedback}" in shown and "Current map:" in shown
            assert "## Hints that might help" not in shown  # the trajectory's System block is stripped
        for hint in lc.hints[1:]:
            for action, allowed in pol.hint_constraints(hint):
                assert truth[action] in allowed
            learned += sum(len(allowed) == 1 for _, allowed in pol.hint_constraints(hint))
    assert learned > 30 * 3  # on average more than one action pinned down per hint


def _gaps(policy_factory, n_packs, size=4):
    return hint_use(
        ENV, make_rows(size * n_packs, seed=0, split="train", setting="easy"), policy_factory, n_packs, size
    )


def test_oracle_uses_the_hint_and_hint_blind_is_flat():
    """200 packs of 4 (easy): the oracle's gap (positions >= 1 minus position 0) is clearly positive; hint-blind's
    95% CI (normal approximation over packs) contains 0."""
    means = oracle_rises_and_hint_blind_is_flat(_gaps, pol.oracle, pol.hint_blind, 200, oracle_gap_above=0.1)
    random_means, _ = _gaps(pol.random_policy, 50)
    assert max(random_means) < min(means)
