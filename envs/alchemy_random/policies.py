"""Scripted Alchemy-Random policies (cod.md 9.0, 9.2) that read only the text a model would see.

The solver parses the target, the tier listing and the inventory from the prompt, collects recipes and failed pairs
from this episode's feedback lines, executes a known derivation of the target when one exists, and otherwise tries
an untried same-tier pair at the highest tier below the target's. The oracle also reads the recipes and failed pairs
its own hint lists and writes every discovery back into the hint; hint-blind solves the same way but ignores the hint,
so its per-position curve is flat. No privileged environment state is read.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from functools import partial

from cod_envs import scripted
from cod_envs.base import Message, TextPolicy

Pair = tuple[str, str]

_NAME = r"[a-z]+"
_CREATED_RE = re.compile(rf"You combined ({_NAME}) \+ ({_NAME}) and created: ({_NAME})!")
_NOTHING_RE = re.compile(rf"({_NAME}) \+ ({_NAME}) — nothing happened\.")
_HINT_RECIPE_RE = re.compile(rf"^- ({_NAME}) \+ ({_NAME}) = ({_NAME})$", re.M)
_HINT_FAILED_RE = re.compile(rf"^- ({_NAME}) \+ ({_NAME}) fails$", re.M)
_TIER_RE = re.compile(r"^- tier (\d+): (.*)$", re.M)
_TARGET_RE = re.compile(rf"^Target: ({_NAME})$", re.M)
_ITEM_RE = re.compile(rf"^- ({_NAME})(?: x(\d+))?$", re.M)
_SUCCESS_RE = re.compile(rf"Environment feedback: Success! Synthesized ({_NAME})\.")
_ANSWER_RE = re.compile(rf"<answer>\s*({_NAME})\s*\+\s*({_NAME})\s*</answer>")


class Knowledge:
    """Recipes (pair -> product) and failed pairs, as learnt from feedback or a hint."""

    def __init__(self) -> None:
        self.recipes: dict[Pair, str] = {}
        self.failed: set[Pair] = set()

    @staticmethod
    def key(a: str, b: str) -> Pair:
        """Recipes are unordered pairs."""
        return (a, b) if a <= b else (b, a)

    def add_text(self, text: str, hint: bool = False) -> None:
        """Facts from feedback lines (or, with ``hint``, from the hint's list lines)."""
        created, nothing = (_HINT_RECIPE_RE, _HINT_FAILED_RE) if hint else (_CREATED_RE, _NOTHING_RE)
        for a, b, c in created.findall(text):
            self.recipes[self.key(a, b)] = c
        for a, b in nothing.findall(text):
            self.failed.add(self.key(a, b))

    def tried(self, pair: Pair) -> bool:
        """Whether the pair's outcome is known."""
        return pair in self.recipes or pair in self.failed

    def render(self) -> str:
        """The hint body: every recipe and failed pair, sorted so equal knowledge gives equal hints."""
        lines = ["- Recipes are shared by all tasks; reuse them and skip the failed pairs.", "- Known recipes:"]
        lines += [f"- {a} + {b} = {c}" for (a, b), c in sorted(self.recipes.items())]
        lines += ["- Failed combinations:"] + [f"- {a} + {b} fails" for a, b in sorted(self.failed)]
        return "\n".join(lines)


def parse_tiers(system_prompt: str) -> dict[str, int]:
    """Element -> tier from the ``## Element Tiers`` listing."""
    tiers: dict[str, int] = {}
    for level, names in _TIER_RE.findall(system_prompt):
        for name in names.split(","):
            if name.strip():
                tiers[name.strip()] = int(level)
    return tiers


def parse_inventory(observation: str) -> dict[str, int]:
    """Element -> copies from a user message (``- e`` lines count as one copy)."""
    return {name: int(count) if count else 1 for name, count in _ITEM_RE.findall(observation)}


def derivable(inventory: dict[str, int], recipes: dict[Pair, str]) -> dict[str, int]:
    """Element -> derivation depth for everything the known recipes can make from the inventory (0 = held)."""
    order = {e: 0 for e in inventory}
    changed = True
    while changed:
        changed = False
        for (a, b), c in recipes.items():
            if a in order and b in order and c not in order:
                order[c], changed = max(order[a], order[b]) + 1, True
    return order


def first_step(elem: str, inventory: dict[str, int], recipes: dict[Pair, str], order: dict[str, int]) -> Pair | None:
    """The first combination of a known derivation of a derivable element (None if it is already held)."""
    if elem in inventory or elem not in order:
        return None
    for (a, b), c in sorted(recipes.items()):
        if c == elem and a in order and b in order and max(order[a], order[b]) < order[elem]:
            for part in (a, b):
                if part not in inventory:
                    return first_step(part, inventory, recipes, order)
            return (a, b)
    return None


def explore_pair(pool: dict[str, int], tiers: dict[str, int], target: str, know: Knowledge) -> Pair | None:
    """An untried pair of held-or-derivable elements: same-tier first, highest tier below the target's first, then
    the cheapest to derive."""
    top = tiers.get(target, 99)
    names = sorted(pool)
    best: tuple[tuple[int, int, int], Pair] | None = None
    for i, a in enumerate(names):
        for b in names[i:]:
            pair = Knowledge.key(a, b)
            if know.tried(pair):
                continue
            ta, tb = tiers.get(a, 0), tiers.get(b, 0)
            if max(ta, tb) >= top:
                continue
            score = (int(ta != tb), -max(ta, tb), pool[a] + pool[b])
            if best is None or score < best[0]:
                best = (score, pair)
    return best[1] if best else None


def next_action(inventory: dict[str, int], tiers: dict[str, int], target: str, know: Knowledge) -> Pair | None:
    """Execute a known derivation of the target, else move towards the most promising untried pair."""
    order = derivable(inventory, know.recipes)
    if target in order:
        return first_step(target, inventory, know.recipes, order)
    pair = explore_pair(order, tiers, target, know)
    if pair is None:
        return None
    for part in pair:
        if part not in inventory:
            return first_step(part, inventory, know.recipes, order)
    return pair


def _answer(pair: Pair, why: str) -> str:
    return f"{why}\n<answer>{pair[0]} + {pair[1]}</answer>"


def _solve(messages: list[Message], rng: random.Random, use_hint: bool) -> str:
    """One solve turn: facts from the hint (optionally) and this episode's feedback, then plan or explore."""
    system = scripted.system_prompt_of(messages)
    observation = messages[-1]["content"] if messages else ""
    target_match = _TARGET_RE.search(observation)
    inventory = parse_inventory(observation)
    if target_match is None or not inventory:
        return "<answer>a + b</answer>"
    target = target_match.group(1)
    know = Knowledge()
    if use_hint:
        know.add_text(scripted.hint_section(system), hint=True)
    for message in messages[1:]:
        if message["role"] == "user":
            know.add_text(message["content"])
    pair = next_action(inventory, parse_tiers(system), target, know)
    if pair is not None:
        return _answer(pair, "Following known recipes, or trying an untried combination.")
    names = sorted(inventory)
    return _answer((rng.choice(names), rng.choice(names)), "Nothing untried is left; any pair.")


def trajectory_facts(prompt: str) -> Knowledge:
    """Facts from an update prompt's trajectory, including the final combination when it made the target."""
    know = Knowledge()
    start = prompt.find(scripted.TRAJECTORY)
    if start == -1:
        return know
    body = prompt[start:]
    know.add_text(body)
    success = _SUCCESS_RE.search(body)
    actions = body.rsplit("\nAction: ", 1)
    if success and len(actions) == 2:
        last = _ANSWER_RE.search(actions[1])
        if last:
            know.recipes[Knowledge.key(last.group(1), last.group(2))] = success.group(1)
    return know


def merge(parts: Iterable[Knowledge]) -> Knowledge:
    """Union of facts (recipes win over a stale failed entry)."""
    out = Knowledge()
    for part in parts:
        out.recipes.update(part.recipes)
        out.failed |= part.failed
    out.failed -= set(out.recipes)
    return out


def _update(messages: list[Message]) -> str:
    """Merge the previous hint's facts with the trajectory's and write them between the delimiters."""
    prompt = messages[-1]["content"]
    previous = Knowledge()
    previous.add_text(scripted.previous_hints(prompt), hint=True)
    know = merge([previous, trajectory_facts(prompt)])
    return f"Recording the recipes and failed pairs found so far.\n{scripted.delimited_hint(know.render())}"


def oracle(seed: int = 0) -> TextPolicy:
    """Solves with the recipes and failed pairs of its own hint plus this episode's feedback; updates record them."""
    return scripted.scripted_policy(partial(_solve, rng=random.Random(seed), use_hint=True), _update)


def hint_blind(seed: int = 0) -> TextPolicy:
    """The oracle's solver without the hint; its updates write the constant hint ``none``."""
    return scripted.scripted_policy(partial(_solve, rng=random.Random(seed), use_hint=False))


def random_policy(seed: int = 0) -> TextPolicy:
    """A uniformly random pair from the inventory; updates write the constant hint ``none`` (no format penalty)."""
    rng = random.Random(seed)

    def solve(messages: list[Message]) -> str:
        names = sorted(parse_inventory(messages[-1]["content"] if messages else "")) or ["a"]
        return f"<answer>{rng.choice(names)} + {rng.choice(names)}</answer>"

    return scripted.scripted_policy(solve)


POLICIES = scripted.policy_table(oracle, hint_blind, random_policy)
