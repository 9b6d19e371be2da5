"""Hint extraction (cod.md 2.4, v2 rule), R1 keep-previous, and the prompt texts checked against the spec's strings."""

import pytest

from cod_envs.trajectory import render_trajectory
from cod_envs.utf8 import valid_utf8
from cod_megatron.cod.hints import (
    HINT_END,
    HINT_START,
    INITIAL_HINT,
    PDE_PROTOCOL_REMINDER,
    RESET_HINT,
    UpdateInput,
    UpdatePromptHooks,
    augment_system_prompt,
    build_update_prompt,
    encodable,
    extract_hint_text,
    update_hint,
    update_system_prompt,
    update_user_prompt,
)

S, E = HINT_START, HINT_END


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (f"{S}\n- go left\n{E}", "- go left"),
        (f"thinking first\n{S}\n  - a\n  - b  \n{E}\ntrailing text", "- a\n  - b"),
        (f"{S}x{E}", "x"),
        (f"{S}\n- a\n{E}\n{S}\n- b\n{E}", None),  # both delimiters twice
        (f"I will write {S} below.\n{S}\n- a\n{E}", None),  # start quoted while thinking
        (f"{S}\n- a\n{E} (that was {E})", None),  # end duplicated
        (f"{E}\n- a\n{S}", None),  # reversed order
        (f"{S}\n   \n{E}", None),  # whitespace-only block
        (f"{S}{E}", None),  # empty block
        (f"{S}\n- a\n- b is cut here by the length ca", None),  # truncated before the end delimiter
        ("- a\n- b", None),  # no delimiters
        (f"- a\n{E}", None),  # start missing
        ("--- Updated hints ---\n- a\n--- End of updated hints ---", None),  # shortened start delimiter
    ],
)
def test_extract_hint_text_truth_table(response, expected):
    assert extract_hint_text(response) == expected


def test_delimiters_and_initial_hint_are_the_spec_literals():
    assert (HINT_START, HINT_END) == ("--- Start of updated hints ---", "--- End of updated hints ---")
    assert INITIAL_HINT == "Hints: null"


def test_parsed_hint_is_prefixed_with_hints():
    assert update_hint(INITIAL_HINT, f"ok\n{S}\n- key is k2\n{E}") == update_hint("anything", f"{S} - key is k2 {E}")
    assert update_hint(INITIAL_HINT, f"{S}\n- key is k2\n{E}").hint == "Hints: - key is k2"
    assert update_hint(INITIAL_HINT, f"{S}\n- key is k2\n{E}").parsed


def test_parse_failure_keeps_previous_hint_and_is_flagged_r1():
    previous = "Hints: - the mapping is rotated"
    result = update_hint(previous, f"{S}\n- new hint but the response was cut")
    assert result.hint == previous
    assert not result.parsed


def test_parse_failure_reset_reproduces_the_reference():
    result = update_hint("Hints: - something", "no delimiters", on_failure="reset")
    assert result.hint == RESET_HINT == "Hints: no hint available."
    assert not result.parsed


def test_update_hint_rejects_unknown_failure_mode():
    with pytest.raises(ValueError):
        update_hint(INITIAL_HINT, "x", on_failure="drop")


# ---- solve prompt (2.5) ----
SPEC_AUGMENTED = """ENV PROMPT

## Hints that might help
Below are some hints that might be helpful, but there is no guarantee that they must be correct or applicable to the current task. You might leverage them as prior knowledge, while incorporating new information from your own experience in interacting with the environment.

Hints: null

## Response length limit
Please limit your response (including your thinking process) to 1000 tokens."""  # noqa: E501


def test_augment_system_prompt_matches_spec_text():
    assert augment_system_prompt("ENV PROMPT", INITIAL_HINT, 1000) == SPEC_AUGMENTED


def test_augment_system_prompt_omits_unset_sections():
    assert augment_system_prompt("ENV", "", None) == "ENV"
    assert (
        augment_system_prompt("ENV", INITIAL_HINT, None)
        == SPEC_AUGMENTED.replace("ENV PROMPT", "ENV").split("\n\n## Response length limit")[0]
    )
    assert augment_system_prompt("ENV", None, 1500).endswith(
        "\n\n## Response length limit\nPlease limit your response (including your thinking process) to 1500 tokens."
    )


# ---- update prompt (2.6), copied from the spec / paper Table 3 ----
SPEC_V1_SYSTEM = (
    "You are a helpful assistant and a cross-task learning agent. Your responsibility is to solve **a sequence of "
    "different-but-related tasks** within the same environment, while **transferring informative hints across tasks** "
    "that can help achieve better task-solving performance.\n" + " " * 8 + "\n"
    """## Problem setting

**In the current session, your job is to update the hints.**

To be concrete, the user provides:
1. Previous hints that were used to guide task solving;
2. A new task-solving trajectory.

Based on this information, you need to generate updated hints that can assist in solving future tasks within the same environment more effectively, by
- Preserving useful guidance and information from the previous hints, while discarding incorrect ones;
- Incorporating new lessons and information that can be learned from the new trajectory.

## General principles

- You are in an environment that might be stationary or non-stationary, and relation between tasks in this environment is initially unknown. One general principle is thus to generate **informative** hints that can serve as useful priors when solving a new task. If you are uncertain about the correctness or usefulness of certain hints, feel free to include them in your response and briefly mention uncertainty.
- There are at least two major categories of useful hints: (1) revealed information / clues about the environment that were initially unknown; (2) task-solving techniques with validated efficacy. With that said, your updated hints can certainly go beyond these two categories.

## Response format

First think about what hints to return, then provide your final answer. Format your complete response as follows:
```
[THINKING]
--- Start of updated hints ---
[HINTS]
--- End of updated hints ---
```
where [THINKING] and [HINTS] should be replaced with your actual thinking process and updated hints, respectively.

Other requirements:
- Keep your thinking process concise. Avoid overthinking.
- Keep your updated hints concise if possible, containing the most critical and helpful information. Avoid generic and uninformative statements. Avoid repeating the system prompt within the task-solving trajectory.
- Make sure that your updated hints can be potentially helpful for other related tasks, rather than specific to the task in the provided trajectory.
- Use standard Markdown format for your updated hints. Simpler structures (e.g., bullet points) are preferred. If you do need to use sections, you should start from the third level "###", while avoiding "#" and "##".
"""  # noqa: E501
)

SPEC_V2_FORMAT = """## Response format

First provide a brief thinking process that evaluates the previous hints and the
new trajectory. After that reasoning, finish your response with exactly this
hint block:

--- Start of updated hints ---
- Your concise, transferable hints go here.
--- End of updated hints ---

The two delimiter lines are literal protocol tokens. Copy both exactly,
including capitalization, spaces, and hyphens.

Other requirements:
- Keep your thinking process concise. Avoid overthinking.
- Put the thinking process before the start delimiter, never inside the hint block.
- Do not place any text after the end delimiter.
"""


def test_update_system_prompt_v1_is_paper_table_3_verbatim():
    assert update_system_prompt("v1") == SPEC_V1_SYSTEM


def test_update_system_prompt_v1_has_eight_space_line_and_final_newline():
    lines = update_system_prompt("v1").split("\n")
    assert lines[1] == " " * 8
    assert update_system_prompt("v1").endswith('avoiding "#" and "##".\n')


def test_update_system_prompt_v2_replaces_only_the_format_block():
    v1_format_start = SPEC_V1_SYSTEM.index("## Response format")
    v1_first_bullet_end = SPEC_V1_SYSTEM.index("- Keep your updated hints concise")
    expected = SPEC_V1_SYSTEM[:v1_format_start] + SPEC_V2_FORMAT + SPEC_V1_SYSTEM[v1_first_bullet_end:]
    assert update_system_prompt("v2") == expected


def test_update_system_prompt_appends_length_limit_directly():
    assert update_system_prompt("v1", 1000) == SPEC_V1_SYSTEM + "\n\nPlease limit your response to 1000 tokens."


SPEC_USER = """--- Previous hints ---

Hints: null


--- A new task-solving trajectory ---

TRAJ

Reward: 0.9625

Environment feedback: FEEDBACK

--- Your job ---

Now, please think through it and return your updated hints based on the above information, following the requirements in the system prompt.
"""  # noqa: E501


def test_update_user_prompt_matches_spec_layout_v1():
    assert update_user_prompt(INITIAL_HINT, "TRAJ", 0.9625, "FEEDBACK") == SPEC_USER


def test_update_user_prompt_v2_prints_three_decimals():
    assert "\nReward: 0.963\n" in update_user_prompt(INITIAL_HINT, "TRAJ", 0.9625, "FEEDBACK", variant="v2")
    assert "\nReward: 1.0\n" in update_user_prompt(INITIAL_HINT, "TRAJ", 1, "FEEDBACK", variant="v1")


SOLVE_MESSAGES = [
    {"role": "system", "content": augment_system_prompt("You play a game.", INITIAL_HINT, 1000)},
    {"role": "user", "content": "Step 1. You are at (0, 0).\n\nHere are some reference examples:\n\nEX"},
    {"role": "assistant", "content": "<answer>down</answer>"},
    {"role": "user", "content": "Step 2. You are at (1, 0)."},
]


def test_render_trajectory_strips_hint_sections_and_icl_examples():
    assert render_trajectory(SOLVE_MESSAGES) == (
        "System:\nYou play a game.\n\n"
        "Step 1:\nObservation: Step 1. You are at (0, 0).\nAction: <answer>down</answer>\n\n"
        "Step 2:\nObservation: Step 2. You are at (1, 0).\nAction: (no action)"
    )


def test_build_update_prompt_generic_and_feedback_fallback():
    hooks = UpdatePromptHooks(render_trajectory=render_trajectory)  # the rollout's default
    messages = build_update_prompt(UpdateInput(INITIAL_HINT, SOLVE_MESSAGES, 0.0), length_limit=1000, hooks=hooks)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == update_system_prompt("v1", 1000)
    assert messages[1]["content"] == update_user_prompt(
        INITIAL_HINT, render_trajectory(SOLVE_MESSAGES), 0.0, "Reward: 0.0 (max: 1.0)"
    )


def test_domain_hooks_override_trajectory_feedback_and_reward_line():
    hooks = UpdatePromptHooks(
        render_trajectory=lambda msgs: f"{len(msgs)} messages",
        render_feedback=lambda fb, r, v: f"table: {fb}",
        include_reward=False,
        suffix=PDE_PROTOCOL_REMINDER,
    )
    user = build_update_prompt(UpdateInput("Hints: x", SOLVE_MESSAGES, 0.5, "ok"), hooks=hooks)[1]["content"]
    assert "\n\n4 messages\n\nEnvironment feedback: table: ok\n\n" in user
    assert "Reward:" not in user
    assert user.endswith("following the requirements in the system prompt.\n\n" + PDE_PROTOCOL_REMINDER)


def test_domain_can_replace_the_whole_update_prompt():
    hooks = UpdatePromptHooks(
        render_trajectory=render_trajectory,
        build=lambda u: f"<bos> update previous hint : {u.previous_hint} new hint :",
    )
    assert (
        build_update_prompt(UpdateInput("none", [], 1.0), hooks=hooks) == "<bos> update previous hint : none new hint :"
    )


@pytest.mark.parametrize("text", ["plain", "a\ud800b", "\udfff", "\ud83d\ude00", "x\ud83d", "\ude00\ud83d", ""])
def test_the_cores_utf8_repair_is_the_domains(text):
    assert encodable(text) == valid_utf8(text)
