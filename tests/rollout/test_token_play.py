"""Token-level play: the plain-text conversation beside the chat one, and the one-mode token responder."""

import pytest

from cod_megatron.cod.tokenization import LengthBudget, TokenConversation, WordRenderer
from cod_megatron.engines.interface import Generation, SamplingParams
from cod_megatron.models.chat_templates import template_renderer
from cod_megatron.models.tiny_tokenizer import build_tiny_tokenizer
from cod_megatron.rollout.token_play import PlainTextConversation, TokenResponder, start_conversation

WORDS = WordRenderer(["<pad>", "<unk>", "<eos>", "a", "b", "c", "d", "e"])


def _ids(text):
    return WORDS.encode(text)


def test_a_plain_text_conversation_encodes_prompt_and_observations_as_they_are():
    conv = PlainTextConversation.from_text(WORDS, "a b")
    assert conv.prompt_ids == _ids("a b") and conv.turn_ids == [0, 0] and conv.generated == [False, False]
    conv.add_response(_ids("c"), "c")
    assert conv.add_observation("d e") == _ids("d e")  # no template tokens between the response and the observation
    conv.add_response(_ids("a"), "a")
    assert conv.token_ids == _ids("a b c d e a")
    assert conv.generated == [False, False, True, False, False, True]
    assert conv.turn_ids == [0, 0, 0, 1, 1, 1]  # an observation belongs to the turn whose response follows it
    assert [m["role"] for m in conv.messages] == ["user", "assistant", "user", "assistant"]
    assert conv.messages[2] == {"role": "user", "content": "d e"}


def test_a_plain_text_conversation_keeps_the_turn_order_of_a_chat_one():
    conv = PlainTextConversation.from_text(WORDS, "a")
    with pytest.raises(RuntimeError, match="has not answered"):
        conv.add_observation("b")
    conv.add_response(_ids("c"), "c")
    with pytest.raises(TypeError, match="as text"):  # no template to render chat messages with
        conv.add_observation([{"role": "user", "content": "b"}])


def test_a_chat_prompt_needs_a_chat_template():
    chat = template_renderer(build_tiny_tokenizer("qwen3"), "qwen3")
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert type(start_conversation(chat, messages)) is TokenConversation
    assert type(start_conversation(WORDS, "a b")) is PlainTextConversation
    with pytest.raises(TypeError, match="chat template"):
        start_conversation(WORDS, messages)


class ScriptedEngine:
    """Answers the given word lists in order, log-prob -0.5 per token; records the prompts."""

    def __init__(self, *answers):
        self.answers, self.prompts = list(answers), []

    def generate(self, prompt_ids, params, messages=None):
        self.prompts.append(list(prompt_ids))
        ids = _ids(self.answers.pop(0))
        return Generation(token_ids=ids, logprobs=[-0.5] * len(ids))


def test_the_token_responder_records_a_plain_text_episode_token_in_token_out():
    engine = ScriptedEngine("c", "a b")
    responder = TokenResponder(engine, WORDS, SamplingParams(max_new_tokens=4, seed=1), pack_id=7, rollout=2)
    assert responder.begin("solve", 0, "a b") == "c"
    assert responder.follow("d") == "a b"
    assert engine.prompts == [_ids("a b"), _ids("a b c d")]
    assert responder.response_tokens() == [1, 2]
    responder.end(1.0, "ok", False, outcome=1.0)
    (ep,) = responder.episodes
    assert ep.token_ids == _ids("a b c d a b") and ep.turn_ids == [0, 0, 0, 1, 1, 1]
    assert ep.generated == [False, False, True, False, True, True]
    assert ep.rollout_logprobs == [0.0, 0.0, -0.5, 0.0, -0.5, -0.5]
    assert (ep.pack_id, ep.rollout, ep.kind, ep.position, ep.reward, ep.outcome) == (7, 2, "solve", 0, 1.0, 1.0)


class CappedEngine:
    """Answers ``a`` repeated up to the call's ``max_new_tokens`` (finish "length"); records each call's cap."""

    def __init__(self):
        self.caps = []

    def generate(self, prompt_ids, params, messages=None):
        self.caps.append(params.max_new_tokens)
        ids = _ids("a") * params.max_new_tokens
        return Generation(token_ids=ids, logprobs=[-0.5] * len(ids), finish_reason="length")


def _budgeted(engine, budget, max_new_tokens=8):
    params = SamplingParams(max_new_tokens=max_new_tokens, seed=1)
    return TokenResponder(engine, WORDS, params, pack_id=0, rollout=0, budget=budget)


def test_the_length_budget_caps_each_call_at_what_the_prompt_leaves():
    engine = CappedEngine()
    responder = _budgeted(engine, LengthBudget(max_prompt_tokens=10, max_response_tokens=4, max_model_len=6))
    assert responder.begin("solve", 0, "a b c") == "a a a"  # 6 - 3 prompt tokens: 3 of the 8 asked for
    assert engine.caps == [3] and responder.response_tokens() == [3]
    responder.end(0.0, "", False)
    assert responder.episodes[-1].truncated  # the budget, not the sampling cap, ended the response
    responder.begin("solve", 1, "a", max_tokens=2)  # the domain's cap of 2 is tighter than the budget's 4
    responder.end(0.0, "", False)
    assert engine.caps == [3, 2] and not responder.episodes[-1].truncated


def test_a_prompt_over_the_budget_gets_an_empty_answer_and_a_truncated_episode():
    engine = CappedEngine()
    responder = _budgeted(engine, LengthBudget(max_prompt_tokens=4, max_response_tokens=2, max_model_len=6), 1)
    assert responder.begin("solve", 0, "a b c") == "a"
    assert responder.follow("d e") == ""  # the prompt is 6 tokens now, over max_prompt_tokens: no engine call
    assert engine.caps == [1] and responder.response_tokens() == [1, 0]
    responder.end(0.0, "format error", True)
    (ep,) = responder.episodes
    assert ep.truncated and ep.token_ids == _ids("a b c a d e") and ep.num_generated == 1
    assert len(ep.rollout_logprobs) == len(ep.token_ids)
