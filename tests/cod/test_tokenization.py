"""Token-in/token-out rendering: the incremental episode equals the full template render, for Qwen3 and Llama 3."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cod_megatron.cod.tokenization import LengthBudget, TokenConversation
from cod_megatron.models.chat_templates import template_renderer
from cod_megatron.models.tiny_tokenizer import build_tiny_tokenizer, load_tokenizer, save_tiny_tokenizer

FAMILIES = ("qwen3", "llama3")


@pytest.fixture(scope="module", params=FAMILIES)
def renderer(request):
    return template_renderer(build_tiny_tokenizer(request.param), request.param)


def _response_ids(renderer, text, *, stopped=True):
    """A model response as the engine returns it: the text's ids, plus the stop token unless cut at the cap."""
    ids = renderer.encode(text)
    return ids + [renderer.end_of_turn_id] if stopped else ids


def _run(renderer, system, users, responses, stopped):
    conv = TokenConversation.start(
        renderer, [{"role": "system", "content": system}, {"role": "user", "content": users[0]}]
    )
    for k, (text, stop) in enumerate(zip(responses, stopped, strict=True)):
        conv.add_response(_response_ids(renderer, text, stopped=stop), text)
        if k + 1 < len(users):
            conv.add_observation(users[k + 1])
    return conv


def _full_render_ids(renderer, system, users, responses):
    messages = [{"role": "system", "content": system}]
    for user, response in zip(users, responses, strict=False):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
    messages += [{"role": "user", "content": u} for u in users[len(responses) :]]
    return renderer.encode(renderer.render_text(messages, add_generation_prompt=len(users) > len(responses)))


USERS = ["Step 1. You are at (0, 0).", "Step 2. Moved down.", "Step 3. Moved left.", "Step 4. Goal reached?"]
RESPONSES = ["I go <answer>down</answer>", "Now <answer>left</answer>", "Then <answer>up</answer>"]


def test_incremental_ids_equal_full_render_over_three_turns(renderer):
    conv = _run(renderer, "You play a game.", USERS, RESPONSES, [True] * 3)
    assert conv.token_ids == _full_render_ids(renderer, "You play a game.", USERS, RESPONSES)
    assert conv.prompt_ids == conv.token_ids


def test_truncated_response_gets_its_end_of_turn_from_the_delta(renderer):
    conv = _run(renderer, "sys", USERS[:3], RESPONSES[:2], [False, True])
    assert conv.token_ids == _full_render_ids(renderer, "sys", USERS[:3], RESPONSES[:2])


def test_mask_covers_exactly_the_response_tokens(renderer):
    conv = _run(renderer, "sys", USERS[:3], RESPONSES, [True] * 3)
    generated = [t for t, g in zip(conv.token_ids, conv.generated, strict=True) if g]
    assert generated == [i for r in RESPONSES for i in _response_ids(renderer, r)]
    assert sum(conv.generated) == len(generated)
    # each turn's tokens are contiguous and turn k's response closes turn k
    assert conv.turn_ids == sorted(conv.turn_ids)
    assert [sum(g for g, t in zip(conv.generated, conv.turn_ids, strict=True) if t == k) for k in range(3)] == [
        len(_response_ids(renderer, r)) for r in RESPONSES
    ]


def test_response_ids_are_kept_even_when_they_do_not_round_trip(renderer):
    conv = _run(renderer, "sys", USERS[:2], [], [])
    odd = renderer.encode("ab")[::-1] + renderer.encode("<|im_start|>x")  # not what the tokenizer would produce
    conv.add_response(odd + [renderer.end_of_turn_id])
    conv.add_observation(USERS[1])
    start = conv.generated.index(True)
    assert conv.token_ids[start : start + len(odd) + 1] == odd + [renderer.end_of_turn_id]


def test_qwen3_no_thinking_generation_prompt_has_the_empty_think_block():
    renderer = template_renderer(build_tiny_tokenizer("qwen3"), "qwen3")
    text = renderer.render_text([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    conv = TokenConversation.start(renderer, [{"role": "user", "content": "hi"}])
    conv.add_response(_response_ids(renderer, "ok"))
    delta = conv.add_observation("again")
    assert (
        renderer.tokenizer.decode(delta)
        == "\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_llama3_delta_is_header_message_and_generation_prompt():
    renderer = template_renderer(build_tiny_tokenizer("llama3"), "llama3")
    conv = TokenConversation.start(renderer, [{"role": "user", "content": "hi"}])
    assert conv.token_ids[0] == renderer.tokenizer.bos_token_id
    conv.add_response(_response_ids(renderer, "ok"))
    delta = conv.add_observation("again")
    expected = (
        "<|start_header_id|>user<|end_header_id|>\n\nagain<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert renderer.tokenizer.decode(delta) == expected


REAL_QWEN3_HISTORY_RULE = (
    "{%- for message in messages -%}"
    "{%- if message.role == 'assistant' -%}"
    "{%- set content = message.content.split('</think>')[-1].lstrip('\\n') -%}"
    "{{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' -}}"
    "{%- else -%}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
)


def test_delta_ignores_a_template_that_rewrites_earlier_turns():
    """The real Qwen3 template drops think blocks of earlier turns; the delta still holds only the new tokens."""
    tok = build_tiny_tokenizer("qwen3")
    tok.chat_template = REAL_QWEN3_HISTORY_RULE
    renderer = template_renderer(tok, "qwen3")
    conv = _run(renderer, "sys", USERS[:2], RESPONSES[:2], [True, True])
    delta = conv.add_observation(USERS[2])
    assert (
        tok.decode(delta) == f"\n<|im_start|>user\n{USERS[2]}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_with_the_real_qwen3_rule_the_conversation_differs_from_a_rerender_only_by_earlier_empty_think_blocks():
    """The documented difference (module docstring): the engine saw the empty think block of every earlier turn, a
    re-render drops them; removing exactly those blocks from the conversation gives the re-render, token for token."""
    tok = build_tiny_tokenizer("qwen3")
    tok.chat_template = REAL_QWEN3_HISTORY_RULE
    renderer = template_renderer(tok, "qwen3")
    conv = _run(renderer, "sys", USERS, RESPONSES, [True] * 3)
    full = _full_render_ids(renderer, "sys", USERS, RESPONSES)
    assert conv.token_ids != full
    block = renderer.encode("<think>\n\n</think>\n\n")
    ids, dropped, i = [], 0, 0
    last_prompt = len(conv.token_ids) - len(block)  # the generation prompt's block stays (the turn to come)
    while i < len(conv.token_ids):
        if i < last_prompt and conv.token_ids[i : i + len(block)] == block:
            i, dropped = i + len(block), dropped + 1
        else:
            ids, i = [*ids, conv.token_ids[i]], i + 1
    assert ids == full and dropped == len(RESPONSES)


def test_observation_before_a_response_is_rejected(renderer):
    conv = TokenConversation.start(renderer, [{"role": "user", "content": "hi"}])
    with pytest.raises(RuntimeError):
        conv.add_observation("too early")


_RENDERERS = {f: template_renderer(build_tiny_tokenizer(f), f) for f in FAMILIES}


_WORDS = st.sampled_from(
    ["move", "left", "right", "up", "down", "<answer>", "</answer>", "key", "k2", "3", "(0,", "1)."]
)
_TEXT = st.lists(_WORDS, min_size=1, max_size=8).map(" ".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    family=st.sampled_from(FAMILIES),
    system=_TEXT,
    turns=st.lists(st.tuples(_TEXT, _TEXT, st.booleans()), min_size=1, max_size=5),
    ends_awaiting=st.booleans(),
)
def test_random_conversations_keep_the_full_render_invariant(family, system, turns, ends_awaiting):
    renderer = _RENDERERS[family]
    users = [u for u, _, _ in turns]
    responses = [r for _, r, _ in turns]
    stopped = [s for _, _, s in turns]
    if ends_awaiting:
        users.append("final observation")
    conv = _run(renderer, system, users, responses, stopped)
    if ends_awaiting:
        assert conv.token_ids == _full_render_ids(renderer, system, users, responses)
    else:  # a finished episode ends at its last response: a prefix of the render with one more observation
        full = _full_render_ids(renderer, system, [*users, "next"], responses)
        assert conv.token_ids == full[: len(conv.token_ids)]
    assert [t for t, g in zip(conv.token_ids, conv.generated, strict=True) if g] == [
        i for r, s in zip(responses, stopped, strict=True) for i in _response_ids(renderer, r, stopped=s)
    ]
    assert len(conv.turn_ids) == len(conv.token_ids) == len(conv.generated)


def test_tiny_tokenizer_builds_offline_deterministically_and_round_trips(tmp_path):
    tok = build_tiny_tokenizer("qwen3")
    assert tok.get_vocab() == build_tiny_tokenizer("qwen3").get_vocab()
    text = "Hints: null\n## Response\tlimit é 中 <answer>k2</answer>  "
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    for special in ("<|im_start|>", "<|im_end|>", "<|eot_id|>", "<think>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1
    loaded = load_tokenizer(save_tiny_tokenizer(tmp_path / "tok", "llama3"))
    messages = [{"role": "user", "content": "hi"}]
    assert loaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == build_tiny_tokenizer(
        "llama3"
    ).apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_length_budget_reports_overflow_instead_of_raising(renderer):
    conv = _run(renderer, "sys", USERS[:2], RESPONSES[:1], [True])
    n = len(conv.token_ids)
    assert not conv.check_budget(LengthBudget(n, 100, n + 100)).exceeded
    report = conv.check_budget(LengthBudget(n - 3, 100, n - 5))
    assert (report.prompt_over, report.response_over, report.total_over) == (3, 0, 5)
    assert report.exceeded
    budget = LengthBudget(max_prompt_tokens=10_000, max_response_tokens=2_000, max_model_len=12_000)
    assert budget.max_new_tokens(9_000) == 2_000
    assert budget.max_new_tokens(10_000) == 2_000
    assert budget.max_new_tokens(10_001) == 0
    assert LengthBudget(10_000, 2_000, 11_000).max_new_tokens(9_500) == 1_500
    assert budget.check(9_000, 3_500).response_over == 1_500
    assert budget.check(9_000, 3_500).total_over == 500


def test_finished_episode_budget_counts_last_prompt_and_longest_response(renderer):
    conv = _run(renderer, "sys", USERS[:2], RESPONSES[:2], [True, True])
    last_prompt = 1 + max(
        i for i, (g, t) in enumerate(zip(conv.generated, conv.turn_ids, strict=True)) if t == 1 and not g
    )
    longest = max(len(_response_ids(renderer, r)) for r in RESPONSES[:2])
    report = conv.check_budget(LengthBudget(last_prompt - 1, longest - 2, len(conv.token_ids) - 4))
    assert (report.prompt_over, report.response_over, report.total_over) == (1, 2, 4)
