"""HiddenKey (cod.md 9.8): vocabulary, prompts, parsing, rewards, data rows, scripted policies and the hint-use
curves."""

import json
import math
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cod_envs.base import MAX_ACTION_CHARS, PackState, TaskContext
from cod_envs.hidden_key import (
    BASE_VOCAB,
    ENV,
    POLICIES,
    VOCAB,
    HiddenKey,
    decode,
    draw_distractors,
    draw_key,
    encode,
    hint_blind,
    make_rows,
    oracle,
    random_policy,
    vocab,
)
from cod_megatron.rollout.text_play import run_text_lifecycle

PACKS = 200
Z95 = 1.96
Z_FAMILY = 2.50
"""Per-position checks test 4 positions at once: Bonferroni z for a 95% family-wise level (two-sided, 4 tests)."""


def make_env(row: dict | None = None, pack_seed: int = 0, task_idx: int = 0, **kw) -> HiddenKey:
    ctx = TaskContext(row=row if row is not None else {"seed": 0}, pack_seed=pack_seed, task_idx=task_idx, pack_size=4)
    return HiddenKey(ctx, PackState(), **kw)


def ci(values: list[float], z: float = Z95) -> tuple[float, float, float]:
    """Mean and the normal-approximation interval mean ± z·sd/sqrt(n) over packs."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def run_packs(policy, setting: str, *, packs: int = PACKS, hint_visible: bool = True) -> list[list[float]]:
    """Solve rewards by position for ``packs`` packs of 4 test rows (pack seeds 0..packs-1)."""
    rows = make_rows(4 * packs, 0, "test", setting)
    return [
        run_text_lifecycle(
            HiddenKey, rows[4 * p : 4 * p + 4], pack_seed=p, policy=policy, hint_visible=hint_visible
        ).solve_rewards
        for p in range(packs)
    ]


def gaps(curves: list[list[float]]) -> list[float]:
    """Per pack: mean over positions >= 1 minus position 0."""
    return [sum(c[1:]) / (len(c) - 1) - c[0] for c in curves]


# ---- vocabulary -----------------------------------------------------------------------------------------------


def test_vocabulary_order_and_size():
    assert BASE_VOCAB[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert BASE_VOCAB[4:6] == ("solve", "update")
    assert len(BASE_VOCAB) == 24 and len(set(BASE_VOCAB)) == 24
    assert len(VOCAB) == 44 and VOCAB == vocab(4, 16)
    v = vocab(6, 10)
    assert len(v) == 24 + 6 + 10 and v[24:30] == tuple(f"k{i}" for i in range(6)) and v[-1] == "d9"
    assert encode("<bos> solve k3 zzz", VOCAB) == [1, 4, 27, 3]
    assert decode(encode("solve hint : k0", VOCAB), VOCAB) == "solve hint : k0"


# ---- seeds and determinism ------------------------------------------------------------------------------------


def test_same_inputs_same_prompts_and_rewards():
    row = make_rows(1, 3, "train")[0]
    a, b = make_env(row, pack_seed=11), make_env(row, pack_seed=11)
    assert a.raw_solve_prompt("k1") == b.raw_solve_prompt("k1")
    for action in ("k0", "k1", "k2", "k3", "", "x y"):
        ra, rb = a.step(action), b.step(action)
        assert ra == rb
        assert a.raw_update_prompt("none", action, ra.reward, ra.feedback) == b.raw_update_prompt(
            "none", action, rb.reward, rb.feedback
        )


def test_rollouts_of_a_pack_share_the_key_and_tasks_differ_in_distractors():
    rows = make_rows(64, 0, "train")
    for pack_seed in range(20):
        envs = [make_env(r, pack_seed=pack_seed, task_idx=i) for i, r in enumerate(rows)]
        assert len({e.key for e in envs}) == 1
        assert {e.key for e in envs} == {draw_key(pack_seed, 4)}
        # the key is readable only through the feedback, and it is the same for every task of the pack
        assert len({e.step("k0").feedback.split()[-1] for e in envs}) == 1
    prompts = {make_env(r, pack_seed=5).raw_solve_prompt("none") for r in rows}
    assert len(prompts) == 16  # one distractor from 16 words: the tasks differ only there
    assert {draw_key(s, 4) for s in range(200)} == {"k0", "k1", "k2", "k3"}


def test_key_and_distractors_are_stable_across_processes():
    code = (
        "from cod_envs.hidden_key import draw_key, draw_distractors;"
        "print(([draw_key(s, 4) for s in range(20)], [draw_distractors(s, 3, 16) for s in range(5)]))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == str(([draw_key(s, 4) for s in range(20)], [draw_distractors(s, 3, 16) for s in range(5)]))


# ---- the spec's example ---------------------------------------------------------------------------------------


def _seed_with(predicate, limit: int = 10_000) -> int:
    return next(s for s in range(limit) if predicate(s))


def test_spec_example_transcript():
    pack_seed = _seed_with(lambda s: draw_key(s, 4) == "k2")
    rows = [{"seed": _seed_with(lambda s, d=d: draw_distractors(s, 1, 16) == (d,))} for d in ("d7", "d3")]
    replies = iter(["k0", "k2 <eos>", "k2"])
    seen: list[str] = []

    def scripted(messages):
        seen.append(messages[-1]["content"])
        return next(replies)

    lc = run_text_lifecycle(HiddenKey, rows, pack_seed=pack_seed, policy=scripted)
    assert seen == [
        "<bos> solve hint : none distractor : d7 answer :",
        "<bos> update previous hint : none answer : k0 reward : 0 feedback : wrong the key was k2 new hint :",
        "<bos> solve hint : k2 distractor : d3 answer :",
    ]
    assert lc.solve_rewards == [0.0, 1.0] and lc.update_rewards == [0.0]
    assert lc.hints == ["none", "k2"]
    assert lc.episodes[0].feedback == "wrong the key was k2"
    assert lc.episodes[2].feedback == "correct the key was k2"


def test_feedback_texts_in_both_modes():
    k = draw_key(0, 4)
    other = next(w for w in ("k0", "k1") if w != k)
    reveal, rw = make_env(pack_seed=0), make_env({"seed": 0, "reveal_key": False}, pack_seed=0)
    assert [reveal.step(a).feedback for a in (k, other, "zz")] == [
        f"correct the key was {k}",
        f"wrong the key was {k}",
        f"format error the key was {k}",
    ]
    assert [rw.step(a).feedback for a in (k, other, "zz")] == ["correct", "wrong", "format error"]
    assert reveal.final_feedback() == f"format error the key was {k}"
    assert reveal.options.hint_cap == 2 and rw.options.hint_cap == 3


# ---- parsing ----------------------------------------------------------------------------------------------------

KEY = draw_key(0, 4)
WRONG = next(w for w in ("k0", "k1") if w != KEY)


@pytest.mark.parametrize(
    "action,cap,reward,format_error",
    [
        ("", 1, 0.0, True),  # empty
        ("   \n\t ", 1, 0.0, True),
        ("<eos>", 1, 0.0, True),  # empty answer before <eos>
        ("d3", 1, 0.0, True),  # non-key word
        ("solve", 1, 0.0, True),
        ("k9", 1, 0.0, True),  # outside the vocabulary (K = 4) -> <unk>
        ("K1", 1, 0.0, True),
        ("<pad>", 1, 0.0, True),  # special tokens
        ("<unk>", 1, 0.0, True),
        ("<bos>", 1, 0.0, True),
        (KEY, 1, 1.0, False),
        (WRONG, 1, 0.0, False),
        (f"{KEY} <eos>", 1, 1.0, False),  # trailing <eos>
        (f"{KEY} <eos>", 2, 1.0, False),
        (f"  {KEY}\n", 1, 1.0, False),
        (f"{KEY} {KEY}", 2, 0.0, True),  # two tokens
        (f"{KEY} {WRONG}", 2, 0.0, True),
        (f"{KEY} {WRONG}", 1, 1.0, False),  # cut at the cap: the first word is the answer
        (f"{KEY} <pad>", 2, 0.0, True),
        (f"{KEY} <eos> junk <pad>", 2, 1.0, False),  # everything after the first <eos> is dropped
        (f"<eos> {KEY}", 2, 0.0, True),
    ],
)
def test_answer_truth_table(action, cap, reward, format_error):
    env = make_env({"seed": 1, "answer_max_tokens": cap}, pack_seed=0)
    r = env.step(action)
    assert (r.reward, r.format_error, r.done, r.turns_used) == (reward, format_error, True, 1)


@pytest.mark.parametrize(
    "response,cap,want",
    [
        ("", 2, None),
        ("<eos>", 2, None),
        ("<pad> k1", 2, None),
        ("k1 <unk>", 2, None),
        ("k1 zzz", 2, None),  # OOV maps to <unk>, a special token
        ("k1 <eos>", 2, "k1"),
        ("k1 k2 k3", 2, "k1 k2"),  # cut at the cap
        ("k1 k2 <pad>", 2, "k1 k2"),  # the special token lies beyond the cap
        ("none <eos>", 2, "none"),
        ("the key", 2, "the key"),
        ("k0 k1 k3 <eos>", 3, "k0 k1 k3"),
    ],
)
def test_bare_hint_truth_table(response, cap, want):
    assert make_env({"seed": 1, "hint_max_tokens": cap}).parse_bare_hint(response) == want


def test_update_prompt_renders_raw_answer_words_or_none():
    env = make_env({"seed": 1, "answer_max_tokens": 2}, pack_seed=0)
    assert " answer : none reward : 0 " in env.raw_update_prompt("none", "", 0.0, "format error")
    assert " answer : d3 <pad> reward : 0 " in env.raw_update_prompt("none", "d3 <pad> k1", 0.0, "format error")
    assert " answer : <unk> <unk> reward : 0 " in env.raw_update_prompt("none", "rm -rf /", 0.0, "format error")
    assert "previous hint : k1 k2 answer" in env.raw_update_prompt("k1 k2", "k0", 1.0, "correct")


def test_row_options_win_over_constructor_defaults():
    env = make_env({"seed": 1, "num_keys": 6}, num_keys=8, distractor_vocab=4, num_distractors=3)
    assert env.options.num_keys == 6 and len(env.distractors) == 3
    assert all(d in ("d0", "d1", "d2", "d3") for d in env.distractors)
    with pytest.raises(ValueError):
        make_env({"seed": 1, "num_keys": 1})


# ---- adversarial input ----------------------------------------------------------------------------------------

ADVERSARIAL = [
    "__import__('os').system('x')",
    "$(rm -rf /)",
    "`id`; ls | cat > /tmp/x && echo $HOME",
    "\x00\x1b[31m",
    "k1\u2028k2",
    "<eos><eos>",
    "'; DROP TABLE rows; --",
]
WORDS = st.sampled_from(list(VOCAB) + ADVERSARIAL + ["k4", "d16", " ", "\n"])
ACTIONS = st.one_of(st.text(max_size=400), st.lists(WORDS, max_size=12).map(" ".join), st.sampled_from(ADVERSARIAL))


@settings(max_examples=150, deadline=None)
@given(action=ACTIONS, reveal=st.booleans(), cap=st.integers(1, 3))
def test_fuzz_step_and_hint_parsing_never_raise(action, reveal, cap):
    env = make_env({"seed": 2, "reveal_key": reveal, "answer_max_tokens": cap, "hint_max_tokens": cap}, pack_seed=3)
    r = env.step(action)
    assert r.reward in (0.0, 1.0) and r.done and (r.reward == 0.0 or not r.format_error)
    hint = env.parse_bare_hint(action)
    assert hint is None or (hint and len(hint.split()) <= cap and set(hint.split()) <= set(env.words))
    prompt = env.raw_update_prompt(hint or "none", action, r.reward, r.feedback)
    assert set(prompt.split()) <= set(env.words)  # prompts stay in the vocabulary whatever the model wrote


def test_megabyte_inputs_are_bounded():
    env = make_env(pack_seed=0)
    big = [" " * (2 * MAX_ACTION_CHARS) + KEY, KEY + " " + "x" * 2**20, "k1 " * 2**19, "\n" * 2**20]
    start = time.perf_counter()
    results = [env.step(b) for b in big] + [env.parse_bare_hint(b) for b in big]
    prompts = [env.raw_update_prompt(b, b, 0.0, b) for b in big]
    assert time.perf_counter() - start < 1.0
    assert results[0].format_error  # the key lies beyond the character cap
    assert results[1].reward == 1.0 and not results[1].format_error
    assert all(len(p.split()) < 32 for p in prompts)  # hints and feedback are rendered with bounded length


# ---- data rows and the CLI ------------------------------------------------------------------------------------


def test_make_rows_deterministic_disjoint_and_carry_options():
    train, test = make_rows(500, 7, "train"), make_rows(200, 7, "test")
    assert train == make_rows(500, 7, "train") and train[:10] == make_rows(10, 7, "train")
    assert not {r["seed"] for r in train} & {r["seed"] for r in test}
    assert len({r["seed"] for r in train}) == 500
    assert train[0] != make_rows(1, 8, "train")[0]
    assert all(0 <= r["seed"] < 2**63 for r in train + test)
    assert train[0] | {"seed": 0} == {
        "seed": 0,
        "num_keys": 4,
        "num_distractors": 1,
        "distractor_vocab": 16,
        "reveal_key": True,
        "answer_max_tokens": 1,
        "hint_max_tokens": 2,
    }
    hard = make_rows(1, 7, "test", "hard")[0]
    assert hard["reveal_key"] is False and hard["hint_max_tokens"] == 3
    assert make_rows(1, 7, "test", num_keys=6, reveal_key=False)[0]["hint_max_tokens"] == 5
    with pytest.raises(ValueError):
        make_rows(1, 0, "valid")


def test_cli_writes_the_same_rows_as_make_rows(tmp_path):
    cmd = [sys.executable, "-m", "cod_envs.hidden_key.data", "--train-size", "30", "--test-size", "10", "--seed", "4"]
    subprocess.run([*cmd, "--out", str(tmp_path / "a")], check=True, capture_output=True)
    subprocess.run([*cmd, "--out", str(tmp_path / "b"), "--no-reveal-key"], check=True, capture_output=True)
    for split, n in (("train", 30), ("test", 10)):
        rows = [json.loads(line) for line in (tmp_path / "a" / f"{split}.jsonl").read_text().splitlines()]
        assert rows == make_rows(n, 4, split)
        hard = [json.loads(line) for line in (tmp_path / "b" / f"{split}.jsonl").read_text().splitlines()]
        assert hard == make_rows(n, 4, split, reveal_key=False)


def test_registry_exports():
    from cod_envs import registry

    domain = registry.load("hidden_key")
    assert domain.env is ENV is HiddenKey and domain.env.name == "hidden_key" and domain.env.hint_format == "bare"
    assert set(POLICIES) == {"oracle", "hint-blind", "random"}
    assert HiddenKey.initial_hint() == "none"


# ---- scripted policies and the hint-use curves -----------------------------------------------------------------


def test_oracle_reveal_mode_uses_the_hint():
    curves = run_packs(oracle(0), "easy")
    for j, want in enumerate([0.25, 1.0, 1.0, 1.0]):
        _, lo, hi = ci([c[j] for c in curves], Z_FAMILY)
        assert lo - 1e-9 <= want <= hi + 1e-9, (j, lo, hi)
    assert all(c[1:] == [1.0, 1.0, 1.0] for c in curves)
    _, lo, _ = ci(gaps(curves))
    assert lo > 0.1


def test_hint_blind_and_invisible_hints_show_no_gap():
    for curves in (
        run_packs(hint_blind(0), "easy"),
        run_packs(oracle(0), "easy", hint_visible=False),  # the hint-blind control for trained models
    ):
        _, lo, hi = ci(gaps(curves))
        assert lo <= 0.0 <= hi
        for j in range(4):
            _, lo, hi = ci([c[j] for c in curves], Z_FAMILY)
            assert lo <= 0.25 <= hi


@pytest.mark.parametrize("reveal_key", [False, None])  # explicit mode, and inferred from the feedback
def test_oracle_right_wrong_mode_follows_eliminations(reveal_key):
    curves = run_packs(oracle(1, reveal_key=reveal_key), "hard")
    for j in range(4):
        _, lo, hi = ci([c[j] for c in curves], Z_FAMILY)
        assert lo - 1e-9 <= min(1.0, (j + 1) / 4) <= hi + 1e-9, (j, lo, hi)
    assert all(c[3] == 1.0 for c in curves)  # after three eliminations or a hit, the key is certain
    assert all(c[j] <= c[j + 1] for c in curves for j in range(3))  # once right, always right


def test_oracle_right_wrong_hints_list_eliminated_keys():
    rows = make_rows(4, 0, "test", "hard")
    lc = run_text_lifecycle(HiddenKey, rows, pack_seed=_seed_with(lambda s: draw_key(s, 4) == "k3"), policy=oracle(0))
    for j, (hint, reward) in enumerate(zip(lc.hints, lc.solve_rewards, strict=True)):
        if j and reward == 0.0:
            assert "k3" not in hint.split() and len(hint.split()) == j
    assert lc.update_rewards == [0.0, 0.0, 0.0]


def test_random_policy_is_flat_and_never_breaks_the_runner():
    curves = run_packs(random_policy(0), "easy", packs=100)
    assert all(r in (0.0, 1.0) for c in curves for r in c)
    means = [sum(c[j] for c in curves) / len(curves) for j in range(4)]
    assert max(means) < 0.1 and abs(sum(gaps(curves)) / len(curves)) < 0.05  # about 1/44 everywhere
    lc = run_text_lifecycle(HiddenKey, make_rows(8, 0, "test"), pack_seed=0, policy=random_policy(3, length=6))
    assert all(r in (0.0, -0.1) for r in lc.update_rewards)
    assert all(set(h.split()) <= set(VOCAB) for h in lc.hints)
