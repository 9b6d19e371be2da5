"""The CoD hint: extraction, the keep-on-failure rule, and the solve/update prompt texts (docs/cod.md 2.4-2.6, R1).

All prompt texts live in this module, verbatim from the spec (the reference's ``CoDPrompts`` and
``_augment_system_prompt``), so a wording change is one diff here and the tests compare against the spec's strings.
Domains change how their trajectory and feedback read in the update prompt through ``UpdatePromptHooks``; a domain
with its own update prompt altogether (HiddenKey, 9.8) supplies ``UpdatePromptHooks.build``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

PromptVariant = Literal["v1", "v2"]
"""v1: paper text (8B runs); v2: research/cod_v2 text (27B runs). cod.md 2.6 asks for both, selectable."""
OnHintParseFailure = Literal["keep", "reset"]
Message = Mapping[str, str]

HINT_START = "--- Start of updated hints ---"
HINT_END = "--- End of updated hints ---"
HINT_PREFIX = "Hints: "
INITIAL_HINT = "Hints: null"
RESET_HINT = "Hints: no hint available."
"""The reference's hint after a parse failure; only used with ``on_hint_parse_failure='reset'`` (R1 ablation)."""

# ---- solve-episode sections (2.5) ----
HINT_SECTION_HEADER = "## Hints that might help"
HINT_SECTION_DISCLAIMER = (
    "Below are some hints that might be helpful, but there is no guarantee that they must be correct or applicable "
    "to the current task. You might leverage them as prior knowledge, while incorporating new information from your "
    "own experience in interacting with the environment."
)
LENGTH_SECTION_HEADER = "## Response length limit"
LENGTH_SECTION_TEMPLATE = "Please limit your response (including your thinking process) to {n} tokens."

# ---- update-episode system prompt (2.6, paper Table 3) ----
_UPDATE_INTRO = (
    "You are a helpful assistant and a cross-task learning agent. Your responsibility is to solve **a sequence of "
    "different-but-related tasks** within the same environment, while **transferring informative hints across tasks** "
    "that can help achieve better task-solving performance."
)
_UPDATE_BODY = """## Problem setting

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

"""  # noqa: E501
_UPDATE_FORMAT_V1 = """## Response format

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
"""
_UPDATE_FORMAT_V2 = """## Response format

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
_UPDATE_TAIL = """- Keep your updated hints concise if possible, containing the most critical and helpful information. Avoid generic and uninformative statements. Avoid repeating the system prompt within the task-solving trajectory.
- Make sure that your updated hints can be potentially helpful for other related tasks, rather than specific to the task in the provided trajectory.
- Use standard Markdown format for your updated hints. Simpler structures (e.g., bullet points) are preferred. If you do need to use sections, you should start from the third level "###", while avoiding "#" and "##".
"""  # noqa: E501
# In the source the line after the first paragraph is eight spaces, not empty (cod.md 2.6); spelled out so that no
# editor or whitespace hook can strip it.
_UPDATE_HEAD = _UPDATE_INTRO + "\n" + " " * 8 + "\n"
UPDATE_SYSTEM_PROMPTS: dict[str, str] = {
    "v1": _UPDATE_HEAD + _UPDATE_BODY + _UPDATE_FORMAT_V1 + _UPDATE_TAIL,
    "v2": _UPDATE_HEAD + _UPDATE_BODY + _UPDATE_FORMAT_V2 + _UPDATE_TAIL,
}
UPDATE_LENGTH_TEMPLATE = "\n\nPlease limit your response to {n} tokens."
"""Appended directly to the update system prompt (not the solve prompts' ``## Response length limit`` section)."""

# ---- update-episode user prompt (2.6) ----
PREVIOUS_HINTS_HEADER = "--- Previous hints ---"
TRAJECTORY_HEADER = "--- A new task-solving trajectory ---"
YOUR_JOB_HEADER = "--- Your job ---"
YOUR_JOB_TEXT = (
    "Now, please think through it and return your updated hints based on the above information, following the "
    "requirements in the system prompt."
)
NO_PREVIOUS_HINT = "(No previous hint available)"
PDE_PROTOCOL_REMINDER = (
    "Protocol reminder: after your brief reasoning, end with exactly this block:\n"
    f"{HINT_START}\n- Your concise, transferable hints go here.\n{HINT_END}\n"
    'Do not shorten the opening delimiter to "--- Updated hints ---", omit either delimiter, or write anything after '
    "the end delimiter."
)
"""PDE's suffix to the update user prompt (its hooks also drop the ``Reward:`` line, 2.6)."""

# ---- trajectory text (2.6, ``_build_trajectory``) ----


def encodable(text: str) -> str:
    """``text`` unchanged when it encodes as UTF-8; else surrogate pairs joined and lone surrogates replaced by U+FFFD
    (the domains' ``cod_envs.utf8.valid_utf8`` repair, restated: the core imports no domain package; a test keeps
    the two equal)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def extract_hint_text(response: str) -> str | None:
    """The stripped text between the delimiters, or None on a parse failure (cod.md 2.4, v2 rule).

    Each delimiter must occur exactly once with the start first; an empty or whitespace-only block fails too. A
    response cut before the end delimiter therefore fails, and so does one that quotes a delimiter while reasoning.
    Lone surrogates in the text become U+FFFD (:func:`encodable`).
    """
    if response.count(HINT_START) != 1 or response.count(HINT_END) != 1:
        return None
    start, end = response.index(HINT_START), response.index(HINT_END)
    if start > end:
        return None
    text = response[start + len(HINT_START) : end].strip()
    return encodable(text) or None  # the hint becomes the next solve prompt: lone surrogates could not encode


@dataclass(frozen=True)
class HintUpdate:
    """The hint after an update episode and whether the response parsed (False -> format penalty r_z, cod.md 3.3)."""

    hint: str
    parsed: bool


def update_hint(previous_hint: str, response: str, on_failure: OnHintParseFailure = "keep") -> HintUpdate:
    """Next hint z_{j+1}: ``"Hints: " + text`` if the response parses, else the previous hint (R1) or the reset hint.

    Keeping the previous hint is this project's default (R1); ``reset`` reproduces the reference, which loses the
    accumulated context. Either way ``parsed`` is False so the caller gives the format penalty.
    """
    text = extract_hint_text(response)
    if text is not None:
        return HintUpdate(hint=HINT_PREFIX + text, parsed=True)
    if on_failure == "keep":
        return HintUpdate(hint=previous_hint, parsed=False)
    if on_failure == "reset":
        return HintUpdate(hint=RESET_HINT, parsed=False)
    raise ValueError(f"on_failure must be 'keep' or 'reset', got {on_failure!r}")


def augment_system_prompt(env_system_prompt: str, hint: str | None, length_limit: int | None) -> str:
    """Solve system prompt: the environment's own prompt plus the hint and length sections, each after a blank line.

    The hint section is added whenever the hint is non-empty (so ``Hints: null`` shows on the first task), the length
    section whenever N = ``max_response_tokens_restraint`` is set (truthy, as in the reference).
    """
    prompt = env_system_prompt
    if hint:
        prompt += f"\n\n{HINT_SECTION_HEADER}\n{HINT_SECTION_DISCLAIMER}\n\n{hint}"
    if length_limit:
        prompt += f"\n\n{LENGTH_SECTION_HEADER}\n{LENGTH_SECTION_TEMPLATE.format(n=length_limit)}"
    return prompt


def update_system_prompt(variant: PromptVariant = "v1", length_limit: int | None = None) -> str:
    """Update-episode system prompt of the variant, with ``Please limit your response to N tokens.`` if N is set."""
    if variant not in UPDATE_SYSTEM_PROMPTS:
        raise ValueError(f"unknown update prompt variant {variant!r}; expected 'v1' or 'v2'")
    prompt = UPDATE_SYSTEM_PROMPTS[variant]
    if length_limit:
        prompt += UPDATE_LENGTH_TEMPLATE.format(n=length_limit)
    return prompt


def format_reward(reward: float, variant: PromptVariant = "v1") -> str:
    """v1 prints the Python float as is (``0.9625``), v2 three decimals (``0.963``), cod.md 2.6."""
    return f"{reward:.3f}" if variant == "v2" else str(float(reward))


def default_feedback(feedback: str | None, reward: float, variant: PromptVariant = "v1") -> str:
    """The solve episode's final feedback, or ``Reward: <r> (max: 1.0)`` for a workflow without one (cod.md 2.6)."""
    if feedback is None:
        return f"Reward: {format_reward(reward, variant)} (max: 1.0)"
    return feedback


def update_user_prompt(
    previous_hint: str,
    trajectory: str,
    reward: float,
    feedback: str,
    *,
    variant: PromptVariant = "v1",
    include_reward: bool = True,
    suffix: str = "",
) -> str:
    """Update-episode user prompt (cod.md 2.6): previous hint, two blank lines, trajectory, reward, feedback, the job.

    ``include_reward=False`` and ``suffix`` serve PDE (no ``Reward:`` line; protocol reminder after a blank line).
    """
    parts = [f"{PREVIOUS_HINTS_HEADER}\n\n{previous_hint or NO_PREVIOUS_HINT}\n\n", f"\n{TRAJECTORY_HEADER}\n\n"]
    parts.append(f"{trajectory}\n\n")
    if include_reward:
        parts.append(f"Reward: {format_reward(reward, variant)}\n\n")
    parts.append(f"Environment feedback: {feedback}\n\n{YOUR_JOB_HEADER}\n\n{YOUR_JOB_TEXT}\n")
    if suffix:
        parts.append(f"\n{suffix}")
    return "".join(parts)


@dataclass(frozen=True)
class UpdateInput:
    """What an update episode sees of the solve episode before it (cod.md 2.3: z_j, trajectory_j, r_x, feedback_j)."""

    previous_hint: str
    solve_messages: Sequence[Message]
    reward: float
    feedback: str | None = None


@dataclass(frozen=True)
class UpdatePromptHooks:
    """A domain's overrides of the generic update prompt; the defaults are the reference's generic workflow.

    ``build`` replaces the whole prompt: it returns chat messages, or a plain string for a domain that bypasses the
    chat template (HiddenKey's word-level prompt, 9.8). ``render_trajectory`` has no default here (the core imports
    no domain package): the rollout passes the generic ``cod_envs.trajectory.render_trajectory`` or the domain's
    override (Grid and Optimal Control, 2.6); PDE sets ``include_reward=False`` and ``suffix=PDE_PROTOCOL_REMINDER``.
    """

    render_trajectory: Callable[[Sequence[Message]], str]
    render_feedback: Callable[[str | None, float, PromptVariant], str] = default_feedback
    include_reward: bool = True
    suffix: str = ""
    build: Callable[[UpdateInput], list[dict[str, str]] | str] | None = None


def build_update_prompt(
    update: UpdateInput,
    *,
    variant: PromptVariant = "v1",
    length_limit: int | None = None,
    hooks: UpdatePromptHooks,
) -> list[dict[str, str]] | str:
    """System + user messages of the update episode after a solve episode, or the domain's own prompt (``hooks.build``).

    ``length_limit`` is ``max_response_tokens_restraint`` (cod.md 2.7).
    """
    if hooks.build is not None:
        return hooks.build(update)
    user = update_user_prompt(
        update.previous_hint,
        hooks.render_trajectory(update.solve_messages),
        update.reward,
        hooks.render_feedback(update.feedback, update.reward, variant),
        variant=variant,
        include_reward=hooks.include_reward,
        suffix=hooks.suffix,
    )
    return [
        {"role": "system", "content": update_system_prompt(variant, length_limit)},
        {"role": "user", "content": user},
    ]
