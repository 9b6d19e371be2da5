"""CodeLock (issue 19): the rules on hand-built cases, data rows, the scripted curves' ordering and the warm start."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cod_envs import registry
from cod_envs.base import PackState, TaskContext
from cod_envs.code_lock import (
    POLICIES,
    VOCAB,
    WARM_START,
    CodeLock,
    draw_code,
    hint_blind,
    make_rows,
    oracle,
    random_policy,
    slot_words,
    vocab,
)
from cod_envs.code_lock.data import main as data_main
from cod_envs.code_lock.warm_start import warm_start_samples
from cod_megatron.rollout.text_play import run_text_lifecycle
from cod_recipes.debug import CODE_LOCK_VOCAB
from tests.envs.domain_checks import cli_output_is_reproducible, disjoint_splits, read_jsonl, rows_are_reproducible

PACK_SEED = 7
CODE = draw_code(PACK_SEED, 2, 4)


def make_env(task_idx: int, row: dict | None = None, pack_seed: int = PACK_SEED, **kw) -> CodeLock:
    ctx = TaskContext(row=row if row is not None else {"seed": 0}, pack_seed=pack_seed, task_idx=task_idx, pack_size=4)
    return CodeLock(ctx, PackState(), **kw)


def other_word(slot: int) -> str:
    """A word of ``slot`` that is not the code's."""
    return next(w for w in slot_words(slot, 4) if w != CODE[slot])


def ci(values: list[float], z: float = 2.5) -> tuple[float, float, float]:
    """Mean and mean ± z·sd/sqrt(n) (z = 2.5: several positions are checked at once)."""
    n, mean = len(values), sum(values) / len(values)
    half = z * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)
    return mean, mean - half, mean + half


# ---- vocabulary and code ----------------------------------------------------------------------------------------


def test_vocabulary_and_code():
    assert len(VOCAB) == 35 == CODE_LOCK_VOCAB and len(set(VOCAB)) == 35 and VOCAB == vocab(2, 4)
    assert VOCAB[:4] == ("<pad>", "<bos>", "<eos>", "<unk>") and VOCAB[-1] == "b3"
    assert vocab(3, 5)[-1] == "c4" and len(vocab(3, 5)) == 25 + 3 + 15
    assert [w[0] for w in CODE] == ["a", "b"] and all(CODE[s] in slot_words(s, 4) for s in range(2))
    assert draw_code(PACK_SEED, 2, 4) == CODE  # the pack seed alone fixes the code (the G rollouts share it)
    assert len({draw_code(s, 2, 4) for s in range(200)}) == 16


# ---- reveal tasks: several turns, the word revealed whatever happens ----------------------------------------------


def test_reveal_task_retries_after_a_wrong_guess_and_pays_for_the_right_one():
    env = make_env(1)
    assert env.raw_solve_prompt("a2") == "<bos> solve hint : a2 task : s1 answer :" and env.max_turns == 2
    first = env.step(other_word(1))
    assert not first.done and first.observation == "wrong answer :" and first.reward == 0 and first.turns_used == 1
    second = env.step(CODE[1])
    assert second.done and second.reward == 2.0 and second.turns_used == 2 and not second.format_error
    assert second.feedback == env.final_feedback() == f"correct the word was {CODE[1]}"
    assert env.step(other_word(1)) == second  # past the end: the same result


def test_reveal_task_reveals_the_word_after_the_last_wrong_guess():
    env = make_env(1)
    env.step(other_word(1))
    last = env.step(other_word(1))
    assert last.done and last.reward == 0 and last.feedback == f"wrong the word was {CODE[1]}"


def test_chance_reward_scales_only_the_reveal_tasks():
    assert make_env(0, chance_reward=2.5).step(CODE[0]).reward == 2.5
    assert make_env(0, row={"seed": 0, "chance_reward": 0.0}, chance_reward=2.5).step(CODE[0]).reward == 0.0
    assert make_env(2, chance_reward=2.5).step(" ".join(CODE)).reward == 2.0


@pytest.mark.parametrize("action", ["", "<eos>", "b0", "zzz", "<bos>", "none", "s0", "a9"])
def test_reveal_format_errors_end_the_task_and_still_reveal(action):
    env = make_env(0)
    result = env.step(action)
    assert result.done and result.format_error and result.reward == 0 and result.turns_used == 1
    assert result.feedback == f"format error the word was {CODE[0]}"


def test_a_reveal_answer_is_its_first_word():
    assert make_env(0).step(f"{CODE[0]} b0 zzz").reward == 2.0  # the response cap is one token


# ---- combination tasks: the whole code, one turn -----------------------------------------------------------------


def test_combination_pays_per_word_or_only_when_every_word_is_right():
    wrong0 = f"{other_word(0)} {CODE[1]}"
    env = make_env(2)
    assert env.raw_solve_prompt("none") == "<bos> solve hint : none task : code answer :" and env.max_turns == 1
    full = env.step(" ".join(CODE) + " <eos>")
    assert full.done and full.reward == 2.0 and full.feedback == "correct"  # one per right word
    part = make_env(3).step(wrong0)
    assert part.reward == 1.0 and part.feedback == "wrong" and not part.format_error
    assert make_env(3, scoring="all").step(wrong0).reward == 0.0
    assert make_env(3, scoring="all").step(" ".join(CODE)).reward == 2.0
    shuffled = make_env(5).step(f"{CODE[1]} {CODE[0]}")  # words in the wrong slots count as wrong
    assert shuffled.reward == 0.0 and not shuffled.format_error
    three = make_env(3, row={"seed": 0, "code_length": 3}).step(" ".join(draw_code(PACK_SEED, 3, 4)))
    assert three.reward == 3.0


@pytest.mark.parametrize("action", ["", "a0", "a0 <eos> b0", "a0 zzz", "a0 s1", "none none", "a0 c0"])
def test_combination_format_errors(action):
    result = make_env(2).step(action)
    assert result.done and result.format_error and result.reward == 0 and result.feedback == "format error"


# ---- update prompts and hints -------------------------------------------------------------------------------------


def test_update_prompt_and_bare_hint():
    env = make_env(1)
    env.step(CODE[1])
    prompt = env.raw_update_prompt("a1", CODE[1], 1.0, env.final_feedback())
    assert prompt == (
        f"<bos> update previous hint : a1 answer : {CODE[1]} reward : 1 feedback : correct the word was {CODE[1]} "
        "new hint :"
    )
    assert env.raw_update_prompt("none", "", 0.0, "wrong").split(" answer : ")[1].startswith("none reward : 0")
    assert env.parse_bare_hint("a1 b2 a0") == "a1 b2"  # at most F words
    assert env.parse_bare_hint("a1 <eos> b2") == "a1" and env.parse_bare_hint("<eos>") is None
    assert env.parse_bare_hint("<bos> a1") is None and env.parse_bare_hint("zzz") is None  # <unk> is special
    assert env.max_response_tokens("update") == 2 and env.max_response_tokens("solve") == 1
    assert make_env(2).max_response_tokens("solve") == 2


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.sampled_from([0, 1, 2, 3, 6]))
def test_step_and_parsing_never_raise(action, task_idx):
    env = make_env(task_idx)
    for _ in range(3):
        result = env.step(action)
        assert isinstance(result.reward, float) and isinstance(result.feedback, str)
    env.parse_bare_hint(action)
    env.raw_update_prompt(action, action, 0.0, action)


# ---- rows ---------------------------------------------------------------------------------------------------------


def test_rows_are_reproducible_disjoint_and_carry_options(tmp_path):
    rows_are_reproducible(make_rows, 20, 5)
    train, _ = disjoint_splits(make_rows, "easy")
    assert train[0]["chance_reward"] == 2.0 and train[0]["scoring"] == "per_word" and train[0]["guesses"] == 2
    assert train[0]["code_length"] == 2 and make_rows(2, 0, "train", "hard")[0]["chance_reward"] == 4.0
    assert make_rows(1, 0, "train", "easy", scoring="all")[0]["scoring"] == "all"
    with pytest.raises(ValueError, match="chance_reward"):
        make_rows(1, 0, "train", "easy", chance_reward=-1.0)
    out = cli_output_is_reproducible(data_main, ["--train-size", "5", "--test-size", "3"], tmp_path)
    assert len(read_jsonl(out / "train.jsonl")) == 5


def test_registry_entry():
    domain = registry.load("code_lock")
    assert domain.env is CodeLock and domain.word_vocabulary == VOCAB and domain.warm_start is WARM_START
    assert set(domain.policies) == set(POLICIES) == {"oracle", "hint-blind", "random"}
    assert domain.step_penalty_coef == 0.0


# ---- scripted policies: the curves' ordering ----------------------------------------------------------------------


def run_packs(policy, *, packs: int = 200, size: int = 6, hint_visible: bool = True) -> list[list[float]]:
    rows = make_rows(size * packs, 0, "test", "easy")
    return [
        run_text_lifecycle(
            CodeLock, rows[size * p : size * p + size], pack_seed=p, policy=policy, hint_visible=hint_visible
        ).solve_rewards
        for p in range(packs)
    ]


def test_oracle_beats_hint_blind_and_random_where_the_code_is_needed():
    curves = {
        "oracle": run_packs(oracle(1)),
        "hint-blind": run_packs(hint_blind(1)),
        "random": run_packs(random_policy(1)),
        "oracle, hints hidden": run_packs(oracle(1), hint_visible=False),
    }
    late = {name: ci([sum(c[2:]) / 4 for c in cs]) for name, cs in curves.items()}  # positions 2..5
    assert late["oracle"][0] == 2.0  # it wrote every revealed word and read them back
    for name in ("hint-blind", "oracle, hints hidden"):  # chance: 1/4 of the 2 words right
        assert late[name][1] < 0.5 < late[name][2] and late[name][2] < 0.7
    assert late["random"][2] < 0.1
    for j in range(2):  # reveal tasks: pure chance for both (two guesses out of four words: 1/2 of 2)
        for name in ("oracle", "hint-blind"):
            mean, lo, hi = ci([c[j] for c in curves[name]])
            assert lo < 1.0 < hi


def test_oracle_keeps_earlier_words_when_it_adds_one():
    policy = oracle(0, code_length=3)
    words = policy(
        [
            {
                "role": "user",
                "content": "<bos> update previous hint : c1 a2 answer : b0 reward : 0 "
                "feedback : wrong the word was b3 new hint :",
            }
        ]
    )
    assert words == "a2 b3 c1 <eos>"
    assert (
        oracle(0, code_length=2)(
            [
                {
                    "role": "user",
                    "content": "<bos> update previous hint : b1 answer : a0 "
                    "reward : 1 feedback : correct the word was a0 new hint :",
                }
            ]
        )
        == "a0 b1 <eos>"
    )


# ---- warm start: hint following only --------------------------------------------------------------------------------


def test_warm_start_teaches_reading_only():
    samples = warm_start_samples(400, 3)
    assert samples == warm_start_samples(400, 3) and samples != warm_start_samples(400, 4)
    assert all(p.split()[1] == "solve" for p, _ in samples)  # never an update prompt: writing must come from RL
    combination = [(p, a) for p, a in samples if "task : code" in p]
    reveal = [(p, a) for p, a in samples if "task : code" not in p]
    assert 150 < len(combination) < 250 and any("wrong answer :" in p for p, _ in reveal)
    for prompt, answer in combination:
        hint = prompt.split("hint : ")[1].split(" task")[0].split()
        assert len(answer.split()) == 2 and all(w in answer.split() for w in hint if w != "none")
    for prompt, answer in reveal:
        slot = int(prompt.split("task : s")[1][0])
        assert answer in slot_words(slot, 4) and f" {answer} wrong" not in prompt
