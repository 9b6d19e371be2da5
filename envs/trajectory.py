"""The generic update-prompt trajectory (cod.md 2.6): one implementation for the core and the domains.

The CoD core renders it (:func:`render_trajectory`: the blocks with the ICL-example filter) for every domain
without an ``update_trajectory`` override; Grid Navigation appends its final state and PDE Discovery renders
it over its compressed memory. It lives here because ``cod_envs`` imports nothing from the core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cod_envs.base import Message
from cod_envs.utf8 import valid_utf8

ICL_EXAMPLES_MARKER = "Here are some reference examples:"
"""An observation is shown up to this marker: the in-context examples after it stay out of the update prompt."""

SYSTEM_PROMPT_CUTS = ("\n\n## Hints", "\n\n## Response length limit")
"""The solve system prompt is cut at the first of these: the trajectory shows it without hint and length sections."""


def strip_solve_system_prompt(content: str) -> str:
    """The solve system prompt without the hint and length sections (the trajectory's ``System:`` block)."""
    for marker in SYSTEM_PROMPT_CUTS:
        idx = content.find(marker)
        content = content if idx == -1 else content[:idx]
    return content


def trajectory_blocks(messages: list[Message], observation: Callable[[str], str] = lambda text: text) -> list[str]:
    """``System:`` and the stripped solve system prompt (a leading system message only), then per user message
    ``Step k:`` / ``Observation:`` (through ``observation``) / ``Action:`` (the last assistant message before the
    next user message, or ``(no action)``); joined by a blank line they are the generic trajectory."""
    blocks: list[str] = []
    steps: list[tuple[str, str | None]] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system" and not blocks and not steps:
            blocks.append(f"System:\n{strip_solve_system_prompt(content)}")
        elif role == "user":
            steps.append((observation(content), None))
        elif role == "assistant" and steps:
            steps[-1] = (steps[-1][0], content)
    for k, (observation, action) in enumerate(steps, start=1):
        shown = valid_utf8(action) if action is not None else "(no action)"  # the model's text, as it wrote it
        blocks.append(f"Step {k}:\nObservation: {observation}\nAction: {shown}")
    return blocks


def strip_icl_examples(content: str) -> str:
    """An observation without its in-context examples (everything from :data:`ICL_EXAMPLES_MARKER` on)."""
    idx = content.find(ICL_EXAMPLES_MARKER)
    return content if idx == -1 else content[:idx].rstrip()


def render_trajectory(messages: Sequence[Message]) -> str:
    """The generic trajectory text of the update prompt (``_build_trajectory``, cod.md 2.6): the
    :func:`trajectory_blocks` with ICL examples stripped from each observation, joined by a blank line. The default
    ``UpdatePromptHooks.render_trajectory`` the rollout gives a domain without its own."""
    return "\n\n".join(trajectory_blocks(list(messages), observation=strip_icl_examples))
