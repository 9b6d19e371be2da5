"""The shared answer-extraction rule: exactly one <answer> and one </answer>, in order; bounded input."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cod_envs.base import MAX_ACTION_CHARS, extract_answer


@pytest.mark.parametrize(
    "text,want",
    [
        ("<answer>up</answer>", "up"),
        ("think... <answer> left </answer> done", "left"),
        ("no tags", None),
        ("<answer>a</answer><answer>b</answer>", None),
        ("</answer>x<answer>", None),
        ("<answer>open", None),
        ("<answer></answer>", ""),
    ],
)
def test_extract_answer_truth_table(text, want):
    assert extract_answer(text) == want


@given(st.text(max_size=2000))
def test_extract_answer_never_raises(text):
    extract_answer(text)


def test_megabyte_input_is_capped():
    text = "<answer>x</answer>" + "a" * (4 * MAX_ACTION_CHARS)
    assert extract_answer(text) == "x"
    assert extract_answer("a" * (4 * MAX_ACTION_CHARS) + "<answer>x</answer>") is None


def test_every_registered_domain_offers_the_three_scripted_policies():
    from cod_envs import registry

    for name in registry.DOMAINS:
        assert set(registry.load(name).policies) >= {"oracle", "hint-blind", "random"}, name


def test_scripted_landmarks_restate_the_core_texts():
    from cod_envs import scripted
    from cod_megatron.cod import hints

    assert (scripted.HINT_START, scripted.HINT_END) == (hints.HINT_START, hints.HINT_END)
    assert (scripted.PREVIOUS_HINTS, scripted.TRAJECTORY) == (hints.PREVIOUS_HINTS_HEADER, hints.TRAJECTORY_HEADER)
    assert (scripted.HINT_SECTION, scripted.LENGTH_SECTION) == (hints.HINT_SECTION_HEADER, hints.LENGTH_SECTION_HEADER)


def test_the_restated_trajectory_matches_the_cod_core_without_icl_examples():
    from cod_envs.trajectory import render_trajectory, trajectory_blocks

    messages = [
        {"role": "system", "content": "Solve it.\n\n## Hints that might help\nnone\n\n## Response length limit\n9"},
        {"role": "user", "content": "Round 1/2"},
        {"role": "assistant", "content": "<answer>1,2</answer>"},
        {"role": "user", "content": "Round 2/2"},
    ]
    for case in (messages, messages[1:], messages[:1], []):
        assert "\n\n".join(trajectory_blocks(case)) == render_trajectory(case)


def test_domain_hooks_reach_the_registry_only_where_a_domain_offers_them():
    from cod_envs import registry
    from cod_envs.code_lock import VOCAB as CODE_LOCK_VOCAB
    from cod_envs.code_lock import WARM_START as CODE_LOCK_WARM_START
    from cod_envs.code_lock import CodeLockOptions
    from cod_envs.hidden_key import VOCAB, HiddenKeyOptions
    from cod_envs.hidden_key.warm_start import warm_start_samples

    for name in registry.DOMAINS:
        domain = registry.load(name)
        if name == "hidden_key":
            assert domain.word_vocabulary == VOCAB
            assert domain.warm_start.samples(6, 11) == warm_start_samples(6, seed=11)
            assert domain.warm_start.cache_key == vars(HiddenKeyOptions())
        elif name == "code_lock":  # the other word-level toy: its own vocabulary and hint-following warm start
            assert domain.word_vocabulary == CODE_LOCK_VOCAB
            assert domain.warm_start.samples(6, 11) == CODE_LOCK_WARM_START.samples(6, 11)
            assert domain.warm_start.cache_key == vars(CodeLockOptions())
        else:
            assert domain.word_vocabulary is None and domain.warm_start is None, name
