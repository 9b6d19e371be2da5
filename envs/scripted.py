"""What the scripted reference policies of the delimited-hint domains share: the prompt landmarks they read.

The texts restate the CoD core's (``cod_megatron.cod.hints``) because ``cod_envs`` imports nothing from it;
``tests/envs/test_base.py`` checks that they stay equal.
"""

from __future__ import annotations

from cod_envs.base import Message

HINT_START = "--- Start of updated hints ---"
HINT_END = "--- End of updated hints ---"
HINT_SECTION = "## Hints that might help"
LENGTH_SECTION = "## Response length limit"
PREVIOUS_HINTS = "--- Previous hints ---"
TRAJECTORY = "--- A new task-solving trajectory ---"
NO_HINT = "none"


def hint_section(system_prompt: str) -> str:
    """The hint text of a solve system prompt: from the hint header to the length section (or the end)."""
    start = system_prompt.find(HINT_SECTION)
    if start == -1:
        return ""
    end = system_prompt.find(LENGTH_SECTION, start)
    return system_prompt[start : end if end != -1 else None]


def is_update_prompt(messages: list[Message]) -> bool:
    """Whether the last message is the generic update prompt (it shows previous hints and a trajectory)."""
    return bool(messages) and PREVIOUS_HINTS in messages[-1]["content"] and TRAJECTORY in messages[-1]["content"]


def constant_update() -> str:
    """The update response of policies that carry nothing across tasks: the constant hint ``none``."""
    return f"{HINT_START}\n{NO_HINT}\n{HINT_END}"
