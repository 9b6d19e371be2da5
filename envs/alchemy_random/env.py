"""Alchemy-Random (docs/cod.md 9.2): combine inventory elements to synthesize a target over a hidden recipe graph.

The pack seed fixes the tiered recipe DAG and the list of targets (``random.Random(pack_seed)``, drawn in the
reference's order), so every task and every rollout of a pack shares the graph and a hint that lists discovered
recipes and failed pairs transfers. Task j's target is entry ``task_idx mod len(list)``. The row seed is used only
for the material count of ``limited`` mode. Rewards are raw outcomes (1 target made, 0 otherwise); the step penalty
of cod.md 3.1 is the CoD core's job.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from cod_envs.alchemy_random.graph import SETTINGS, Graph, Pair, base_copies_needed, generate_graph, solution_path
from cod_envs.base import Environment, PackState, StepResult, TaskContext, extract_answer, turn_heading

MATERIAL_MULT = (1.5, 2.0)
_MAX_ECHO = 40
"""Unknown names are echoed at most this long, so feedback stays short whatever the model wrote."""

FORMAT_ERROR_FEEDBACK = (
    "Invalid format: could not parse combination. Expected format: {your reasoning process here}"
    "<answer>Element1 + Element2</answer>. Game over."
)
SUCCESS_FEEDBACK = "Success! Synthesized {t}."
OUT_OF_MATERIALS_FEEDBACK = "Failed: Ran out of materials. Could not synthesize {t}. Used {k} rounds."
OUT_OF_ROUNDS_FEEDBACK = "Failed: Ran out of rounds ({k}/{n}). Could not synthesize {t}."
CREATED_FEEDBACK = "You combined {a} + {b} and created: {c}!"
NOTHING_FEEDBACK = "{a} + {b} — nothing happened."
CONSUMED_SUFFIX = " Materials consumed."
MISSING_ONE_FEEDBACK = "'{a}' is not in your inventory."
MISSING_TWO_FEEDBACK = "'{a}' and '{b}' are not in your inventory."
NOT_ENOUGH_SAME_FEEDBACK = "Not enough '{a}' (need 2, have {n})."
NOT_ENOUGH_FEEDBACK = "Not enough materials for '{a}' + '{b}'."

_UNLIMITED_RULES = (
    "- **No consumption**: Elements are NOT consumed when used. You keep all elements after each attempt, whether it "
    "succeeds or fails. Newly discovered elements are permanently added to your inventory.\n",
    "- **Ending**: The game ends when you succeed or reach the round limit.\n",
)
_LIMITED_RULES = (
    "- **Consumption**: Every attempt consumes 1 copy of each input element, whether it succeeds or fails. If both "
    "inputs are the same element, 2 copies are consumed. Failed attempts lose materials with no result.\n",
    "- **Ending**: The game ends when you succeed, run out of materials, or reach the round limit.\n",
)
SYSTEM_TEMPLATE = (
    'You are in an Alchemy crafting environment. Your goal is to synthesize the target element "{target}" by '
    "combining elements in your inventory.\n"
    "\n"
    "## Game Mechanics\n"
    "\n"
    "There exists a fixed set of recipes. Each recipe takes exactly two input elements and produces one output "
    "element. A recipe's two inputs can be the same or different elements, and can be from different tiers.\n"
    "\n"
    "- **Combination**: Each round, choose two elements from your inventory to combine. If the pair matches a valid "
    "recipe, the result is added to your inventory. If not, nothing is produced.\n"
    "- **Tier system**: Every element has a tier. Every recipe produces a result whose tier is strictly higher than "
    "both inputs' tiers.\n"
    "{consumption}"
    '- **Winning**: You win when "{target}" appears in your inventory.\n'
    "{ending}"
    "- All element names in this Alchemy crafting environment have no correspondence to real-world concepts. Do not "
    "try to guess recipes based on element names. \n"
    "\n"
    "## Hidden Clues About the Environment\n"
    "Recipes (i.e., which elements can be combined and which cannot) are unknown initially. You can try to discover "
    "them through experimentation, or based on additional hints provided in the context.\n"
    "\n"
    "## Element Tiers\n"
    "\n"
    "{tiers}\n"
    "\n"
    "## Response Format\n"
    "First think about which combination of elements to try out in the current round, then provide your action "
    "using <answer>...</answer> tags at the end. Format your complete response as follows:\n"
    "```\n"
    "[THINKING]\n"
    "<answer>Element1 + Element2</answer>\n"
    "```\n"
    "where [THINKING] should be replaced with your thinking process, while Element1 and Element2 are elements "
    "(same or different) chosen from your inventory.\n"
    "\n"
    "Other requirements:\n"
    "- Be concise and avoid overthinking in your thinking process.\n"
    "- Take one and only one action for each round.\n"
    "- You should synthesize the target element within a limited number of rounds. Try to find a short path towards "
    "the goal, e.g., by leveraging recipes that have been revealed and avoiding combinations that are known to fail.\n"
    "- Balance exploration and exploitation: as you strive to reach the goal, you may acquire information about the "
    "environment along the way, which can be potentially helpful for solving other similar tasks later on.\n"
)
"""``system.jinja2`` rendered with ``trim_blocks`` for ``show_tiers``, obfuscated names, hidden recipes (paper
Table 5); Jinja drops the file's final newline, leaving one."""


def tier_listing(graph: Graph, target: str) -> str:
    """``- tier k: e1, e2`` per tier, a blank line, then the target's tier."""
    lines = [f"- tier {t}: {', '.join(names)}" for t, names in enumerate(graph.tiers)]
    return "\n".join(lines) + f"\n\nThe target element '{target}' is at tier {graph.tier_of(target)}."


def _echo(name: str) -> str:
    return name if len(name) <= _MAX_ECHO else name[:_MAX_ECHO] + "..."


class AlchemyRandom(Environment):
    """One Alchemy-Random task: graph and target from the pack seed and position, materials from the row seed."""

    name: ClassVar[str] = "alchemy_random"

    def __init__(self, ctx: TaskContext, state: PackState):
        super().__init__(ctx, state)
        row: dict[str, Any] = ctx.row
        self.setting = str(row.get("setting", "easy"))
        cfg = SETTINGS[self.setting]
        self.max_rounds = int(row.get("max_rounds", cfg.max_rounds))
        self.material_mode = str(row.get("material_mode", cfg.material_mode))
        self.graph = generate_graph(int(ctx.pack_seed), self.setting, max(1, int(ctx.pack_size)))
        self.target = self.graph.targets[ctx.task_idx % len(self.graph.targets)]
        base = self.graph.tiers[0]
        if self.material_mode == "limited":
            m = base_copies_needed(solution_path(self.target, self.graph.recipes), set(base))
            u = random.Random(int(row.get("seed", 0))).uniform(*MATERIAL_MULT)
            count = max(m, int(m * u + 0.5))
        else:
            count = 1
        self.inventory: dict[str, int] = {e: count for e in base}
        self.done = False
        self.outcome: str | None = None
        """None while running, else ``success``, ``format``, ``materials`` or ``rounds``."""
        self.last_feedback = ""

    @property
    def limited(self) -> bool:
        """Whether attempts consume materials."""
        return self.material_mode == "limited"

    @property
    def max_turns(self) -> int:
        """8 rounds easy, 15 hard."""
        return self.max_rounds

    def system_prompt(self) -> str:
        """Paper Table 5 with the tier listing; the CoD core appends the hint and length sections."""
        consumption, ending = _LIMITED_RULES if self.limited else _UNLIMITED_RULES
        return SYSTEM_TEMPLATE.format(
            target=self.target, consumption=consumption, ending=ending, tiers=tier_listing(self.graph, self.target)
        )

    def first_observation(self) -> str:
        """The round-1 user message (no feedback line)."""
        return self._observation(None)

    def _observation(self, feedback: str | None) -> str:
        """``user.jinja2`` rendered: round, feedback, target, sorted inventory, the prompt line; no trailing newline."""
        head = turn_heading("Round", self.turns + 1, self.max_rounds, feedback)
        if self.limited:
            items = sorted(self.inventory.items())
            listing = f"Inventory ({sum(self.inventory.values())} total copies):\n" + "".join(
                f"- {e} x{n}\n" for e, n in items
            )
        else:
            listing = "Available elements in your inventory:\n" + "".join(f"- {e}\n" for e in sorted(self.inventory))
        return f"{head}Target: {self.target}\n\n{listing}\nChoose two elements available in your inventory to combine."

    def _end(self, outcome: str, reward: float, feedback: str, format_error: bool = False) -> StepResult:
        self.done, self.outcome, self.last_feedback = True, outcome, feedback
        return self.finish(reward, feedback, format_error)

    def _attempt(self, a: str, b: str) -> str:
        """Apply one well-formed combination and return its feedback (no exception for any names)."""
        missing = [n for n in (a, b) if self.inventory.get(n, 0) <= 0]
        if missing:
            if len(missing) == 2 and missing[0] != missing[1]:
                return MISSING_TWO_FEEDBACK.format(a=_echo(missing[0]), b=_echo(missing[1]))
            return MISSING_ONE_FEEDBACK.format(a=_echo(missing[0]))
        if self.limited:
            if a == b and self.inventory[a] < 2:
                return NOT_ENOUGH_SAME_FEEDBACK.format(a=a, n=self.inventory[a])
            for elem in (a, b):
                self.inventory[elem] -= 1
            self.inventory = {e: n for e, n in self.inventory.items() if n > 0}
        product = self.graph.recipes.get((a, b) if a <= b else (b, a))
        if product is None:
            return NOTHING_FEEDBACK.format(a=a, b=b) + (CONSUMED_SUFFIX if self.limited else "")
        if self.limited:
            self.inventory[product] = self.inventory.get(product, 0) + 1
        else:
            self.inventory[product] = 1
        return CREATED_FEEDBACK.format(a=a, b=b, c=product)

    def _feasible(self) -> bool:
        """Whether any pair can still be attempted (limited mode: at least two copies in total)."""
        return not self.limited or sum(self.inventory.values()) >= 2

    def step(self, action_text: str) -> StepResult:
        """Apply one response; unparseable ones end the episode with reward 0 and the format-error flag."""
        if self.result is not None:  # stepping past the end returns the final answer again, never an exception
            return self.result
        self.turns += 1
        pair = parse_action(action_text if isinstance(action_text, str) else "")
        if pair is None:
            return self._end("format", 0.0, FORMAT_ERROR_FEEDBACK, format_error=True)
        feedback = self._attempt(*pair)
        if self.inventory.get(self.target, 0) > 0:
            return self._end("success", 1.0, feedback)
        if not self._feasible():
            return self._end("materials", 0.0, feedback)
        if self.turns >= self.max_rounds:
            return self._end("rounds", 0.0, feedback)
        self.last_feedback = feedback
        return self.next_turn(self._observation(feedback), feedback)

    def final_feedback(self) -> str:
        """cod.md 9.2's final texts: success, the format-error text, out of materials, or out of rounds."""
        if self.outcome == "success":
            return SUCCESS_FEEDBACK.format(t=self.target)
        if self.outcome == "format":
            return FORMAT_ERROR_FEEDBACK
        if self.outcome == "materials":
            return OUT_OF_MATERIALS_FEEDBACK.format(t=self.target, k=self.turns)
        return OUT_OF_ROUNDS_FEEDBACK.format(k=self.turns, n=self.max_rounds, t=self.target)


def parse_action(text: str) -> Pair | None:
    """The two lowercased names of ``<answer>E1 + E2</answer>`` (input capped by ``extract_answer``), else None.

    The stripped content is split on ``+``; exactly two non-empty stripped parts are required. Names are matched
    case-insensitively, so they are lowercased here; whether they are in the inventory is the round's business.
    """
    answer = extract_answer(text)
    if answer is None:
        return None
    parts = [p.strip() for p in answer.split("+")]
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0].lower(), parts[1].lower()
