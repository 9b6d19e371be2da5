"""The engine-backed Learn2Ask judge: prompt -> engine -> verdict, retries, and judge errors that drop lifecycles."""

import pytest

from cod_envs.base import PackState, TaskContext
from cod_envs.learn2ask import Learn2Ask, RuleJudge, make_rows
from cod_envs.learn2ask.conditions import TOPICS
from cod_megatron.engines.interface import Generation, SamplingParams
from cod_megatron.engines.judge import ChatJudge, EngineJudge
from cod_megatron.models.chat_templates import template_renderer
from cod_megatron.models.tiny_tokenizer import build_tiny_tokenizer


class FakeEngine:
    """Answers with the rule judge's verdict (or a fixed text), as token ids of the renderer's tokenizer."""

    def __init__(self, renderer, reply=None, with_text=False, failures=0):
        self.renderer, self.reply, self.with_text, self.failures = renderer, reply, with_text, failures
        self.seen = []

    def generate(self, prompt_ids, params, messages=None):
        self.seen.append((list(prompt_ids), params, messages))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("engine restarting")
        text = self.reply if self.reply is not None else RuleJudge()(messages)
        ids = self.renderer.tokenizer.encode(text, add_special_tokens=False)
        return Generation(token_ids=ids, logprobs=[0.0] * len(ids), text=text if self.with_text else None)


@pytest.fixture(scope="module")
def renderer():
    return template_renderer(build_tiny_tokenizer("qwen3"), "qwen3")


def continue_env(judge):
    row = next(
        r
        for r in make_rows(40, 1)
        if Learn2Ask(TaskContext(row=r, pack_seed=5, task_idx=0, pack_size=4), PackState()).decision_truth == "continue"
    )
    return Learn2Ask.with_judge(judge)(TaskContext(row=row, pack_seed=5, task_idx=0, pack_size=4), PackState())


def test_engine_judge_renders_the_prompt_and_decodes_the_verdict(renderer):
    for with_text in (False, True):
        engine = FakeEngine(renderer, with_text=with_text)
        env = continue_env(EngineJudge(engine, renderer, backoff_s=0))
        missing = env.info_truth.split("; ")[0]
        question = next(t.question for t in TOPICS.values() if t.item == missing)
        res = env.step(question)
        assert res.reward == 4.0 and not env.judge_error and "<content_score>1.0</content_score>" in env.verdict
        ids, params, messages = engine.seen[0]
        assert ids == renderer.encode_prompt(messages) and params == SamplingParams(max_new_tokens=512, temperature=0.0)
        assert messages[0]["role"] == "system" and messages[1]["content"].endswith(f"doctor: {question}\n")


def test_retries_then_errors_become_judge_errors(renderer):
    engine = FakeEngine(renderer, failures=2)
    judge = EngineJudge(engine, renderer, retries=2, backoff_s=0)
    env = continue_env(judge)
    assert env.step("Is it itching, yes or no?").feedback.startswith("Correct decision") and len(engine.seen) == 3
    env = continue_env(EngineJudge(FakeEngine(renderer, failures=5), renderer, retries=1, backoff_s=0))
    res = env.step("Is it itching, yes or no?")
    assert env.judge_error and res.reward == 0.0 and res.feedback.startswith("Judge error: ConnectionError")
    env = continue_env(EngineJudge(FakeEngine(renderer, reply="The question is fine. Score: 9/10"), renderer))
    res = env.step("Is it itching, yes or no?")
    assert env.judge_error and res.done and res.feedback.startswith("Judge error: expected exactly one <format_score>")


def test_chat_judge_wraps_an_openai_compatible_function():
    calls = []

    def chat(messages):
        calls.append(messages)
        return "<format_score>0.5</format_score><content_score>0.0</content_score>"

    env = continue_env(ChatJudge(chat, backoff_s=0))
    assert env.step("Is it itching? Or dry?").reward == 1.5 and len(calls) == 1
