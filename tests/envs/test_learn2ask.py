"""Learn2Ask (cod.md 9.4): rows and loader, synthetic dialogues, reward table, rule judge, judge errors, hint use."""

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cod_envs.base import PackState, TaskContext
from cod_envs.learn2ask import ENV, POLICIES, Learn2Ask, load_dialogues, make_rows, parse_verdict
from cod_envs.learn2ask import policies as pol
from cod_envs.learn2ask.conditions import COMPLAINTS, CONDITIONS, TOPICS, materialize, pack_condition
from cod_envs.learn2ask.data import main as data_main
from cod_envs.learn2ask.judge import JudgeError, RuleJudge, content_words, judge_messages
from tests.envs.hint_use import hint_use, lifecycles

ROWS = make_rows(64, seed=0)
REAL = {
    "cid": "7",
    "messages": [
        {"role": "user", "content": "Sore throat and a cough since yesterday."},
        {"role": "assistant", "content": "Do you have a fever, yes or no?"},
        {"role": "user", "content": "No."},
    ],
    "decision_truth": "continue",
    "info_truth": "cough with phlegm; chest tightness",
}


def make_env(row, pack_seed=3, env_cls=Learn2Ask):
    return env_cls(TaskContext(row=row, pack_seed=pack_seed, task_idx=0, pack_size=4), PackState())


def first(decision, pack_seed=3):
    return next(r for r in ROWS if materialize(r, pack_seed)["decision_truth"] == decision)


# ---- data ------------------------------------------------------------------------------------------------------
def test_rows_cli_and_loader(tmp_path):
    assert make_rows(20, 3) == make_rows(40, 3)[:20] and all(r["synthetic"] for r in ROWS)
    assert not {r["seed"] for r in make_rows(200, 1, "train")} & {r["seed"] for r in make_rows(200, 1, "test")}
    for out in ("a", "b"):
        data_main(["--train-size", "10", "--test-size", "5", "--seed", "2", "--out", str(tmp_path / out)])
    assert (tmp_path / "a/train.jsonl").read_bytes() == (tmp_path / "b/train.jsonl").read_bytes()
    path = tmp_path / "real.jsonl"
    path.write_text(json.dumps(REAL) + "\n\n" + json.dumps({**REAL, "decision_truth": "stop"}) + "\n")
    rows = load_dialogues(path)
    assert rows[0] == REAL and rows[1]["decision_truth"] == "stop"
    for bad in (
        {**REAL, "decision_truth": "maybe"},
        {**REAL, "messages": [{"role": "system", "content": "x"}]},
        {**REAL, "messages": []},
        [1, 2],
    ):
        path.write_text(json.dumps(REAL) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=r"real.jsonl:2: "):
            load_dialogues(path)
    with pytest.raises(ValueError):
        make_rows(1, split="dev")


def test_synthetic_dialogues_share_the_pack_condition():
    names = {pack_condition(s).name for s in range(200)}
    assert names == {c.name for c in CONDITIONS}
    cond = pack_condition(3)
    for row in ROWS[:20]:
        d = materialize(row, 3)
        assert d == materialize(row, 3) and d["messages"][0]["content"] == COMPLAINTS[cond.complaint]
        asked = [m["content"] for m in d["messages"][1::2]]
        assert all(q in [TOPICS[t].question for t in cond.topics] for q in asked)
        missing = [TOPICS[t].item for t in cond.topics if TOPICS[t].question not in asked]
        assert d["decision_truth"] == ("continue" if missing else "stop")
        assert (sorted(d["info_truth"].split("; ")) if missing else d["info_truth"]) == (sorted(missing) or "None")
    assert {materialize(r, 3)["decision_truth"] for r in ROWS} == {"continue", "stop"}


def test_topic_questions_match_only_their_own_item_within_a_complaint():
    for complaint in COMPLAINTS:
        topics = sorted({t for c in CONDITIONS if c.complaint == complaint for t in c.topics})
        for a in topics:
            hits = [b for b in topics if content_words(TOPICS[a].question) & content_words(TOPICS[b].item)]
            assert hits == [a], (complaint, a, hits)


# ---- reward ----------------------------------------------------------------------------------------------------
def test_reward_table():
    env = make_env(first("continue"))
    missing = env.info_truth.split("; ")
    right = next(t.question for t in TOPICS.values() if t.item == missing[0])
    assert env.first_observation().startswith("Conversation so far:\npatient: ")
    res = env.step(right)
    assert res.reward == 4.0 and res.done and res.turns_used == 1 and env.step("again") == res
    assert res.feedback.startswith("Correct decision: continue asking. Judge scores: format 1.0, content 1.0.")
    off = next(t.question for name, t in TOPICS.items() if t.item not in missing and name == "welts")
    assert make_env(first("continue")).step(off).reward == 2.0  # right action, irrelevant content
    assert make_env(first("continue")).step(f"{right} Also, anything else?").reward == 3.5  # two questions
    assert make_env(first("continue")).step(right.replace("?", ".")).reward == 3.0  # no question mark
    res = make_env(first("continue")).step("<stop />")
    assert res.reward == 0.0 and res.feedback.startswith("Wrong decision: you stopped, but key information")
    assert make_env(first("stop")).step("<stop />").reward == 4.0
    assert make_env(first("stop")).step("I think we can stop. <stop />").reward == 3.0
    res = make_env(first("stop")).step(right)
    assert res.reward == 0.0 and "the right move was <stop />" in res.feedback
    real = make_env(REAL)
    assert real.decision_truth == "continue" and real.step("Do you cough up phlegm, yes or no?").reward == 4.0


def test_rule_judge_and_verdict_parser():
    msgs = judge_messages("fever; chest tightness", REAL["messages"], "Is your chest tight, yes or no?")
    assert msgs[1]["content"].endswith("patient: No.\ndoctor: Is your chest tight, yes or no?\n")
    verdict = parse_verdict(RuleJudge()(msgs))
    assert (verdict.format_score, verdict.content_score) == (1.0, 1.0)
    assert parse_verdict("<think>x</think><format_score> 0.5 </format_score><content_score>0</content_score>") == (
        parse_verdict("<content_score>0.0</content_score><format_score>0.5</format_score>")
    )
    for bad in (
        "",
        "score 1",
        "<format_score>1</format_score>",
        "<format_score>x</format_score><content_score>1</content_score>",
        "<format_score>2</format_score><content_score>1</content_score>",
        "<format_score>1</format_score><format_score>1</format_score><content_score>1</content_score>",
        None,
    ):
        with pytest.raises(JudgeError):
            parse_verdict(bad)


@pytest.mark.parametrize("judge_reply", ["no tags here", "<format_score>1</format_score>", RuntimeError("down")])
def test_judge_errors_flag_the_episode(judge_reply):
    def judge(messages):
        if isinstance(judge_reply, Exception):
            raise judge_reply
        return judge_reply

    cls = Learn2Ask.with_judge(judge)
    assert cls.judge is judge and Learn2Ask.judge is not judge and issubclass(cls, Learn2Ask)
    env = make_env(first("continue"), env_cls=cls)
    res = env.step("Is it itching, yes or no?")
    assert env.judge_error and res.done and res.reward == 0.0 and res.feedback.startswith("Judge error: ")
    stop_env = make_env(first("stop"), env_cls=cls)  # the judge is consulted only for a right "continue"
    assert stop_env.step("<stop />").reward == 4.0 and not stop_env.judge_error


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    "<stop />",
                    "<stop/>",
                    "?",
                    "itching",
                    "fever",
                    "<format_score>",
                    "</content_score>",
                    " ",
                    "\n",
                    "doctor: ",
                ]
            ),
            max_size=30,
        ).map("".join),
    )
)
def test_step_never_raises(text):
    for decision in ("continue", "stop"):
        env = make_env(first(decision))
        t0 = time.perf_counter()
        res = env.step(text)
        assert time.perf_counter() - t0 < 0.5 and res.done and 0.0 <= res.reward <= 4.0 and not env.judge_error
    assert make_env(first("continue")).step("x" * (1 << 20)).reward == 1.0  # capped, no question: format 0


# ---- hint use --------------------------------------------------------------------------------------------------
def test_oracle_recovers_the_condition_and_uses_the_hint():
    for i, lc in enumerate(lifecycles(ENV, make_rows(8 * 30, seed=0), pol.oracle, 10, size=8)):
        hint = pol.parse_hint(lc.hints[-1])
        assert hint is not None and hint[1] == pack_condition(i).name  # privileged check: test only
        assert lc.update_rewards == [0.0] * 7 and lc.solve_rewards[1:] == [4.0] * 7


def test_oracle_beats_hint_blind_at_later_positions():
    """150 packs of 4: the oracle's gap CI lower bound is above 0.1, hint-blind's contains 0, random is far below."""
    rows = make_rows(4 * 150, seed=1)
    means, (lo, _) = hint_use(ENV, rows, pol.oracle, 150)
    blind, (blo, bhi) = hint_use(ENV, rows, pol.hint_blind, 150)
    assert lo > 0.1 and blo <= 0.0 <= bhi, (means, blind)
    assert means[0] == blind[0] and min(means[1:]) > max(blind[1:])
    rand, _ = hint_use(ENV, rows, POLICIES["random"], 50)
    assert max(rand) < min(blind)
