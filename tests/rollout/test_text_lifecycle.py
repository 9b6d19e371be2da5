"""The text-level lifecycle runner with a test-local toy domain: hints carry facts, failures keep the hint."""

import random
import re

from cod_envs.base import Environment, StepResult, extract_answer
from cod_megatron.cod.hints import HINT_END, HINT_START, INITIAL_HINT
from cod_megatron.rollout.text_play import run_text_lifecycle


class GuessKey(Environment):
    """Guess the pack's key (one of 4 letters, drawn from the pack seed); one turn; feedback reveals it."""

    name = "guess_key"

    @property
    def max_turns(self) -> int:
        return 1

    def key(self) -> str:
        return "ABCD"[random.Random(self.ctx.pack_seed).randrange(4)]

    def system_prompt(self) -> str:
        return "Guess the key: one of A B C D. Reply <answer>X</answer>."

    def first_observation(self) -> str:
        self.state.data["visits"] = self.state.data.get("visits", 0) + 1
        return f"Task {self.ctx.task_idx}."

    def step(self, action_text: str) -> StepResult:
        self.turns += 1
        answer = extract_answer(action_text)
        if answer is None:
            return StepResult(
                observation="", reward=0.0, done=True, feedback="format error", turns_used=1, format_error=True
            )
        ok = answer == self.key()
        return StepResult(
            observation="",
            reward=float(ok),
            done=True,
            turns_used=1,
            feedback=f"{'correct' if ok else 'wrong'}; the key was {self.key()}",
        )


def oracle(messages):
    text = "\n".join(m["content"] for m in messages)
    if "the key was" in text and HINT_START in text:  # update episode: write the key from the feedback
        key = re.findall(r"the key was (\w)", text)[-1]
        return f"{HINT_START}\nkey={key}\n{HINT_END}"
    found = re.search(r"key=(\w)", messages[0]["content"])
    return f"<answer>{found.group(1) if found else 'A'}</answer>"


def test_oracle_rewards_rise_with_position_and_hints_carry_the_key():
    rows = [{"seed": i} for i in range(4)]
    totals = [0.0] * 4
    for seed in range(40):
        lc = run_text_lifecycle(GuessKey, rows, pack_seed=seed, policy=oracle)
        totals = [t + r for t, r in zip(totals, lc.solve_rewards, strict=True)]
        assert lc.hints[0] == INITIAL_HINT and len(lc.update_rewards) == 3
        assert all(r == 0.0 for r in lc.update_rewards)
    assert totals[1] == totals[2] == totals[3] == 40.0
    assert 0.0 < totals[0] < 40.0


def test_hint_invisible_control_stays_at_chance():
    rows = [{"seed": i} for i in range(4)]
    lc = run_text_lifecycle(GuessKey, rows, pack_seed=3, policy=oracle, hint_visible=False)
    assert len(set(lc.solve_rewards)) == 1  # always the same guess: no position effect


def test_unparseable_update_keeps_the_previous_hint_and_is_penalised():
    calls = iter(
        [
            "<answer>A</answer>",
            f"{HINT_START}\nkey=B\n{HINT_END}",
            "<answer>B</answer>",
            "no hint here",
            "<answer>B</answer>",
        ]
    )
    lc = run_text_lifecycle(GuessKey, [{}, {}, {}], pack_seed=1, policy=lambda m: next(calls))
    assert lc.update_rewards == [0.0, -0.1]
    assert lc.hints[1] == lc.hints[2] == "Hints: key=B"


def test_pack_state_belongs_to_one_lifecycle():
    seen = []

    class Counting(GuessKey):
        def first_observation(self) -> str:
            seen.append(self.state)
            return super().first_observation()

    run_text_lifecycle(Counting, [{}, {}], pack_seed=0, policy=oracle)
    run_text_lifecycle(Counting, [{}, {}], pack_seed=0, policy=oracle)
    assert seen[0] is seen[1] and seen[2] is seen[3] and seen[0] is not seen[2]


def test_a_judge_error_marks_and_ends_the_lifecycle_and_token_episodes_carry_it():
    from cod_envs import registry
    from cod_envs.learn2ask import ENV as Learn2Ask
    from cod_megatron.cod.episode import Pack, Task
    from cod_megatron.engines.interface import SamplingParams, TextPolicyEngine
    from cod_megatron.models.chat_templates import template_renderer
    from cod_megatron.models.tiny_tokenizer import build_tiny_tokenizer
    from cod_megatron.rollout.token_play import run_token_lifecycle

    class BrokenJudge:
        def __call__(self, messages) -> str:
            return "no verdict here"

    domain = registry.load("learn2ask")
    env_cls = Learn2Ask.with_judge(BrokenJudge())
    rows = domain.make_rows(3, 0, "test", "easy")
    text = run_text_lifecycle(env_cls, rows, pack_seed=1, policy=domain.policies["oracle"](0))
    assert text.has_judge_error and len(text.solve_rewards) == 1  # ended at the first verdict
    renderer = template_renderer(build_tiny_tokenizer("qwen3"), "qwen3")
    pack = Pack(pack_id=0, seed=1, tasks=tuple(Task(taskset_id="learn2ask", row=i, data=r) for i, r in enumerate(rows)))
    engine = TextPolicyEngine(domain.policies["oracle"](0), renderer.encode, renderer.end_of_turn_id)
    lc, _ = run_token_lifecycle(env_cls, pack, 0, engine=engine, renderer=renderer, params=SamplingParams(512))
    assert lc.has_judge_error and lc.episodes[-1].judge_error


def test_the_env_hooks_the_runner_reads_are_declared_on_the_base_class():
    assert Environment.update_prompt_suffix == "" and Environment.judge_error is False
    assert GuessKey(None, None).judge_error is False  # a domain without a judge needs to set nothing


def test_the_runner_appends_the_update_prompt_suffix_and_stops_at_a_judge_error():
    class Reminded(GuessKey):
        update_prompt_suffix = "REMEMBER: one letter."

    seen = []
    run_text_lifecycle(Reminded, [{}, {}], pack_seed=0, policy=lambda m: seen.append(m) or oracle(m))
    assert "REMEMBER: one letter." in seen[1][-1]["content"]

    class Judged(GuessKey):
        def step(self, action_text: str) -> StepResult:
            self.judge_error = True  # the verdict was unusable
            return super().step(action_text)

    lc = run_text_lifecycle(Judged, [{}, {}, {}], pack_seed=0, policy=oracle)
    assert len(lc.episodes) == 1 and lc.has_judge_error  # the lifecycle is dropped after the first solve
