"""What the scripted reference policies share: the names they are registered under, the dispatch between solve and
update prompts, and (for the delimited-hint domains) the prompt landmarks they read.

The landmark texts restate the CoD core's (``cod_megatron.cod.hints``) because ``cod_envs`` imports nothing from it;
``tests/envs/test_base.py`` checks that they stay equal.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from cod_envs.base import Message, TextPolicy

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


def previous_hints(update_prompt: str) -> str:
    """The previous-hints part of a generic update prompt: from its header up to the trajectory header."""
    return update_prompt[update_prompt.find(PREVIOUS_HINTS) : update_prompt.find(TRAJECTORY)]


def delimited_hint(body: str) -> str:
    """A new hint as an update response writes it: ``body`` between the start and end delimiters."""
    return f"{HINT_START}\n{body}\n{HINT_END}"


def constant_update() -> str:
    """The update response of policies that carry nothing across tasks: the constant hint ``none``."""
    return delimited_hint(NO_HINT)


def system_prompt_of(messages: list[Message]) -> str:
    """The solve system prompt: the first message's content when it is a system message, else ``""``."""
    return messages[0]["content"] if messages and messages[0]["role"] == "system" else ""


def scripted_policy(
    solve: Callable[[list[Message]], str], update: Callable[[list[Message]], str] | None = None
) -> TextPolicy:
    """A policy that answers the generic update prompt with ``update`` (None: the constant hint ``none``) and every
    other prompt with ``solve``; the factories of the delimited-hint domains build their policies with it."""

    def policy(messages: list[Message]) -> str:
        if is_update_prompt(messages):
            return update(messages) if update is not None else constant_update()
        return solve(messages)

    return policy


def policy_table(
    oracle: Callable[..., TextPolicy], hint_blind: Callable[..., TextPolicy], random: Callable[..., TextPolicy]
) -> dict[str, Callable[..., TextPolicy]]:
    """A domain's ``POLICIES``: its three scripted reference factories ``(seed) -> TextPolicy`` under the names the
    evaluation CLI takes (``--policy oracle|hint-blind|random``)."""
    return {"oracle": oracle, "hint-blind": hint_blind, "random": random}


def uniform_words(words: tuple[str, ...], seed: int, length: int) -> TextPolicy:
    """An untrained word model's stand-in: ``length`` words drawn uniformly from ``words``, specials included."""
    rng = random.Random(seed)

    def policy(messages: list[Message]) -> str:
        return " ".join(rng.choice(words) for _ in range(length))

    return policy
