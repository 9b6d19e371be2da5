"""HiddenKey in natural language (``hidden_key_chat``): the same game as HiddenKey, for a pre-trained chat model."""

import pytest

from cod_envs import registry
from cod_envs.base import PackState, TaskContext
from cod_envs.hidden_key import draw_key
from cod_envs.hidden_key.chat import COLORS, UPDATE_SYSTEM, HiddenKeyChat, hint_blind, named_colors, oracle
from cod_megatron.cod.hints import HINT_SECTION_HEADER
from cod_megatron.rollout.text_play import run_text_lifecycle
from tests.envs.hint_use import hint_use, oracle_rises_and_hint_blind_is_flat

DOMAIN = registry.load("hidden_key_chat")


def _env(row=None, pack_seed=5, task_idx=0):
    row = row or DOMAIN.make_rows(1, seed=0)[0]
    return HiddenKeyChat(TaskContext(row=row, pack_seed=pack_seed, task_idx=task_idx, pack_size=4), PackState())


def test_the_secret_is_hiddenkeys_key_as_a_color_shared_by_the_pack():
    rows = DOMAIN.make_rows(4, seed=1)
    keys = {_env(r, pack_seed=9, task_idx=i).key for i, r in enumerate(rows)}
    assert keys == {COLORS[int(draw_key(9, 4)[1:])]}


@pytest.mark.parametrize(
    ("response", "reward", "format_error", "verdict"),
    [
        ("{key}", 1.0, False, "correct"),
        ("The secret color is {KEY}.", 1.0, False, "correct"),
        ("{other}", 0.0, False, "wrong"),
        ("{key} or {other}", 0.0, True, "no single color named"),
        ("I do not know", 0.0, True, "no single color named"),
        ("", 0.0, True, "no single color named"),
        ("reddish {key}", 1.0, False, "correct"),  # whole words only: "reddish" names no color
    ],
)
def test_a_solve_is_scored_by_the_colors_it_names(response, reward, format_error, verdict):
    env = _env()
    other = next(c for c in env.colors if c != env.key)
    result = env.step(response.format(key=env.key, KEY=env.key.upper(), other=other))
    assert (result.reward, result.format_error, result.done) == (reward, format_error, True)
    assert env.final_feedback() == f"{verdict}: the secret color was {env.key}"


def test_right_wrong_mode_does_not_reveal_the_key():
    row = DOMAIN.make_rows(1, seed=0, reveal_key=False)[0]
    env = _env(row)
    env.step(next(c for c in env.colors if c != env.key))
    assert env.final_feedback() == "wrong"


def test_prompts_are_chat_messages_with_our_own_system_prompt():
    env = _env(task_idx=2)
    assert env.raw_solve_prompt("anything") is None  # the CoD core's solve prompt: hint section included
    assert "Round 3." in env.first_observation() and all(c in env.system_prompt() for c in env.colors)
    update = env.raw_update_prompt("none", "blue I think", 0.0, "wrong: the secret color was red")
    assert [m["role"] for m in update] == ["system", "user"] and update[0]["content"] == UPDATE_SYSTEM
    assert "Your answer: blue I think" in update[1]["content"] and "Result: wrong" in update[1]["content"]


def test_the_whole_update_response_is_the_next_hint():
    env = _env()
    assert env.parse_bare_hint("  The secret\n color is red. ") == "The secret color is red."
    assert env.parse_bare_hint(" \n ") is None
    assert len(env.parse_bare_hint("x" * 10_000)) == 200


def test_named_colors_are_whole_words_in_order_of_mention():
    assert named_colors("Blue, then RED and blue again; greenish", COLORS) == ["blue", "red"]


def test_the_hint_reaches_the_next_solve_prompt_in_the_lifecycle():
    seen = []

    def policy(messages):
        seen.append(messages)
        return "note: the key is purple" if messages[0]["content"] == UPDATE_SYSTEM else "red"

    trace = run_text_lifecycle(HiddenKeyChat, DOMAIN.make_rows(2, seed=0), pack_seed=1, policy=policy)
    assert trace.hints == ["none", "note: the key is purple"]
    solve2 = seen[2][0]["content"]
    assert HINT_SECTION_HEADER in solve2 and solve2.endswith("note: the key is purple")


def test_oracle_rises_and_hint_blind_is_flat():
    rows = DOMAIN.make_rows(4 * 60, seed=2, split="test")

    def gaps(factory, n):
        return hint_use(HiddenKeyChat, rows, factory, n)

    means = oracle_rises_and_hint_blind_is_flat(gaps, oracle, hint_blind, 60, oracle_gap_above=0.5)
    assert means[1:] == [1.0, 1.0, 1.0]
