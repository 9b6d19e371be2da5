"""Scripted Learn2Ask policies (cod.md 9.0) that read only the text a model would see.

They know the synthetic condition table (as a clinician knows medicine), never the pack's hidden condition. Solves
read the complaint and the questions already asked from the dialogue; the conditions of that complaint whose key
topics include everything asked remain possible. The hint-blind policy guesses one of them (seeded) and asks a
missing topic of its guess or stops when its guess is fully covered. The oracle's updates recover the condition's
key topics from the feedback (the missing items it names, or "already collected" meaning the asked topics were all)
and write them into the hint; its solves then ask a missing key topic or stop exactly when all are covered.
"""

from __future__ import annotations

import random
import re
from functools import partial

from cod_envs import scripted
from cod_envs.base import Message, TextPolicy
from cod_envs.learn2ask.conditions import COMPLAINTS, CONDITIONS, ITEM_SEPARATOR, TOPICS, Condition
from cod_envs.learn2ask.env import STOP

_BY_QUESTION = {t.question: name for name, t in TOPICS.items()}
_BY_ITEM = {t.item: name for name, t in TOPICS.items()}
_BY_COMPLAINT = {text: name for name, text in COMPLAINTS.items()}
_HINT_RE = re.compile(r"Key information to collect: (.+?) \(condition: ([^)]+)\)")
_MISSING_RE = re.compile(r"(?:should have targeted|key information was still missing): (.+?)\.(?:\n|$)")
_COVERED = ("Correct decision: stop", "the key information had already been collected")


def read_dialogue(text: str) -> tuple[str | None, list[str]]:
    """(complaint, asked topics) from ``patient:`` / ``doctor:`` lines."""
    complaint, asked = None, []
    for line in text.splitlines():
        if line.startswith("patient: ") and complaint is None:
            complaint = _BY_COMPLAINT.get(line[len("patient: ") :])
        elif line.startswith("doctor: ") and line[len("doctor: ") :] in _BY_QUESTION:
            asked.append(_BY_QUESTION[line[len("doctor: ") :]])
    return complaint, asked


def candidates(complaint: str | None, asked: list[str]) -> list[Condition]:
    """Conditions of the complaint whose key topics include every asked topic."""
    return [c for c in CONDITIONS if c.complaint == complaint and set(asked) <= set(c.topics)]


def parse_hint(text: str) -> tuple[list[str], str] | None:
    """(key topics, condition name) from a hint written by :func:`_update`."""
    m = _HINT_RE.search(text)
    if m is None:
        return None
    topics = [_BY_ITEM[item] for item in m.group(1).split(ITEM_SEPARATOR) if item in _BY_ITEM]
    return topics, m.group(2)


def _act(topics: list[str] | tuple[str, ...], asked: list[str]) -> str:
    missing = [t for t in topics if t not in asked]
    return TOPICS[missing[0]].question if missing else STOP


def _solve(messages: list[Message], rng: random.Random, hint: tuple[list[str], str] | None) -> str:
    user = next((m["content"] for m in messages if m["role"] == "user"), "")
    complaint, asked = read_dialogue(user)
    if hint is not None and set(asked) <= set(hint[0]):
        return _act(hint[0], asked)
    pool = candidates(complaint, asked)
    if not pool:
        return STOP if asked else TOPICS["duration"].question
    return _act(rng.choice(pool).topics, asked)


def _update(messages: list[Message]) -> str:
    """Key topics = asked + missing items named by the feedback (or just asked, when they were already complete)."""
    prompt = messages[-1]["content"]
    previous = parse_hint(scripted.previous_hints(prompt))
    trajectory = prompt[prompt.find(scripted.TRAJECTORY) :]
    complaint, asked = read_dialogue(trajectory)
    feedback = trajectory[trajectory.rfind("Environment feedback:") :]
    topics: set[str] | None = None
    m = _MISSING_RE.search(feedback)
    if m is not None:
        topics = set(asked) | {_BY_ITEM[i] for i in m.group(1).split(ITEM_SEPARATOR) if i in _BY_ITEM}
    elif any(s in feedback for s in _COVERED):
        topics = set(asked)
    match = next((c for c in candidates(complaint, asked) if topics is not None and set(c.topics) == topics), None)
    if match is not None:
        items = ITEM_SEPARATOR.join(TOPICS[t].item for t in match.topics)
        body = f"- Key information to collect: {items} (condition: {match.name})"
    elif previous is not None:
        items = ITEM_SEPARATOR.join(TOPICS[t].item for t in previous[0])
        body = f"- Key information to collect: {items} (condition: {previous[1]})"
    else:
        body = "- Key information not identified yet."
    body += "\n- Ask about one missing key item per turn; answer exactly <stop /> once all of it is in the dialogue."
    return f"Recording the key information for this patient group.\n{scripted.delimited_hint(body)}"


def oracle(seed: int = 0) -> TextPolicy:
    """Acts on the key topics its hint names; updates recover them from the feedback."""
    rng = random.Random(f"learn2ask.guess.{seed}")
    return scripted.scripted_policy(
        lambda messages: _solve(messages, rng, parse_hint(scripted.hint_section(scripted.system_prompt_of(messages)))),
        _update,
    )


def hint_blind(seed: int = 0) -> TextPolicy:
    """Guesses among the conditions the dialogue allows; updates write ``none``."""
    return scripted.scripted_policy(partial(_solve, rng=random.Random(f"learn2ask.guess.{seed}"), hint=None))


def random_policy(seed: int = 0) -> TextPolicy:
    """``<stop />``, a random topic's question, two questions at once, or stray text; updates write ``none``."""
    rng = random.Random(f"learn2ask.random_policy.{seed}")
    questions = [t.question for t in TOPICS.values()]

    def solve(messages: list[Message]) -> str:
        roll = rng.random()
        if roll < 0.3:
            return STOP
        if roll < 0.8:
            return rng.choice(questions)
        if roll < 0.9:
            return " ".join(rng.sample(questions, 2))
        return "Please tell me more."

    return scripted.scripted_policy(solve)


POLICIES = scripted.policy_table(oracle, hint_blind, random_policy)
