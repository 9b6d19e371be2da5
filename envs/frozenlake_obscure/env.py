"""FrozenLake-Obscure (docs/cod.md 9.1): a grid walk whose four action words hide a per-pack direction permutation.

The pack seed fixes which of ``Direction 1..4`` means Down/Right/Up/Left (``random.Random(pack_seed).shuffle``, as in
the reference), so every task and every rollout of a pack shares it and a hint that states the mapping transfers.
The row seed alone fixes the map, start and goal. Rewards are raw outcomes (1 goal, 0 otherwise); the step penalty of
cod.md 3.1 is the CoD core's job.
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from cod_envs.base import Environment, PackState, StepResult, TaskContext, extract_answer, turn_heading

DIRECTIONS: tuple[str, ...] = ("Down", "Right", "Up", "Left")
"""The reference's list, shuffled by the pack seed; ``Direction k`` is the k-th entry of the shuffled list."""
DELTAS: dict[str, tuple[int, int]] = {"Down": (1, 0), "Right": (0, 1), "Up": (-1, 0), "Left": (0, -1)}


@dataclass(frozen=True)
class Setting:
    """One data setting of cod.md 9.1's table: map sizes, path-check length, turn budget, pack size."""

    min_size: int
    max_size: int
    env_max_steps: int
    agent_max_steps: int
    pack_size: int


SETTINGS: dict[str, Setting] = {
    "easy": Setting(min_size=4, max_size=5, env_max_steps=6, agent_max_steps=8, pack_size=4),
    "hard": Setting(min_size=6, max_size=7, env_max_steps=8, agent_max_steps=10, pack_size=8),
}
MAX_MAP_ATTEMPTS = 100_000
"""Redraw bound of the map generator: rows carry p >= 0.6, where a draw succeeds within a few tries; a row whose
parameters make the bound matter is bad data, and failing loudly beats spinning forever."""

SYSTEM_PROMPT = (
    "You are playing a FrozenLake-Obscure game, where the action-to-direction mapping is unknown. Your task is to "
    "reach the goal (G) from your current position (P).\n"
    "\n"
    "## Symbols\n"
    "- P: Player (your current position)\n"
    "- G: Goal (destination)\n"
    "- _: Frozen tile (safe to walk)\n"
    "- O: Hole (fall in and lose)\n"
    "\n"
    "## Rules\n"
    "1. Avoid falling into holes (O).\n"
    "2. Reach the goal (G) to win.\n"
    "3. The map is a grid with boundaries at its edges. If you try to move beyond the edge, your position will not "
    "change and the map will remain the same.\n"
    "\n"
    "## Valid Actions\n"
    "You can execute one of the following actions at each step: Direction 1, Direction 2, Direction 3, Direction 4.\n"
    "\n"
    "## Hidden Clues About the Environment\n"
    "Each valid action corresponds to moving along one of the up/down/left/right directions, but the exact "
    "action-to-direction mapping is unknown. Do not make any prior assumption about the mapping. You may try to "
    "figure it out through trial-and-error, e.g., by observing how your position (P) changes on the map after "
    "executing an action. You may also utilize additional hints provided in the context.\n"
    "\n"
    "## Rewards\n"
    "- Fall into hole (O): 0\n"
    "- Reach goal (G): 1\n"
    "\n"
    "## Response Format\n"
    "First think about which action to take at the current step, then provide your final answer. Format your "
    "complete response as follows:\n"
    "```\n"
    "[THINKING]\n"
    "<answer>Direction X</answer>\n"
    "```\n"
    "where [THINKING] should be replaced with your thinking process, and X is one of 1/2/3/4. \n"
    "\n"
    "Other requirements:\n"
    "- Be concise and avoid overthinking in your thinking process.\n"
    "- Take one and only one action for each step.\n"
    "- You should reach the goal (G) within a limited number of steps. Try to find a short path towards the goal.\n"
    "- Balance exploration and exploitation: as you strive to reach the goal, you may acquire information about the "
    "environment along the way, which can be potentially helpful for solving other similar tasks later on."
)
"""``system_obscure.jinja2`` (paper Table 4) verbatim, including the space after ``1/2/3/4.``; Jinja drops the
file's final newline."""

FORMAT_ERROR_FEEDBACK = (
    "Invalid format: could not parse action. Expected format: {your reasoning process here}"
    "<answer>Direction X</answer>, where X is 1, 2, 3, or 4. Game over."
)
INVALID_NUMBER_FEEDBACK = (
    "Invalid format: Direction {n} is not a valid action. Expected: Direction 1, 2, 3, or 4. Game over."
)
MOVED_FEEDBACK = (
    "You executed action Direction {a}. Your position changed from (row={r0}, col={c0}) to (row={r1}, col={c1})."
)
STAYED_FEEDBACK = (
    "You executed action Direction {a}. Your position did not change (stayed at row={r}, col={c}). This may be "
    "because you tried to move beyond the edge of the map."
)
SUCCESS_FEEDBACK = "Success! Reached the goal (G)."
HOLE_FEEDBACK = "Failed: Fell into a hole (O). Avoid holes by planning a safe path."
OUT_OF_STEPS_FEEDBACK = "Failed: Ran out of steps ({k}/{n}) without reaching the goal. Try to find a shorter path."
GOAL_LINE = "You have not reached the goal (row={r}, col={c}) yet. Please decide your next action."

_ACTION_RE = re.compile(r"[Dd]irection\s+(\d+)")
_MAX_NUMBER_DIGITS = 12
"""Longer digit runs are out of range anyway; echoing at most this many keeps the feedback short and ``int`` cheap
(Python refuses to convert more than 4300 digits)."""
_SYMBOLS = {"F": "_", "S": "_", "H": "O", "G": "G"}


def action_mapping(pack_seed: int) -> dict[int, str]:
    """``Direction k`` -> direction for a pack (the reference's ``get_random_mapping``); stable across processes."""
    directions = list(DIRECTIONS)
    random.Random(pack_seed).shuffle(directions)
    return {k + 1: d for k, d in enumerate(directions)}


def shortest_path_length(grid: tuple[str, ...], start: tuple[int, int], goal: tuple[int, int]) -> int | None:
    """BFS moves from start to goal over non-hole tiles (None if unreachable): the generator's solvability check."""
    n_rows, n_cols = len(grid), len(grid[0])
    dist = {start: 0}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        if (r, c) == goal:
            return dist[(r, c)]
        for dr, dc in DELTAS.values():
            nr, nc = r + dr, c + dc
            if 0 <= nr < n_rows and 0 <= nc < n_cols and (nr, nc) not in dist and grid[nr][nc] != "H":
                dist[(nr, nc)] = dist[(r, c)] + 1
                queue.append((nr, nc))
    return None


@lru_cache(maxsize=4096)
def generate_map(
    seed: int, size: int, p: float, max_steps: int
) -> tuple[tuple[str, ...], tuple[int, int], tuple[int, int]]:
    """(grid rows of ``F``/``H``/``S``/``G``, start, goal) from the row alone, redrawn until solvable in max_steps.

    Every tile is frozen with probability p; start and goal are distinct cells drawn uniformly (cod.md 9.1). Seeded
    numpy Generator, so the same row gives the same map in every process. Cached: all G rollouts build the same rows.
    """
    rng = np.random.default_rng(seed)
    for _ in range(MAX_MAP_ATTEMPTS):
        frozen = rng.random((size, size)) < p
        start_idx, goal_idx = (int(i) for i in rng.choice(size * size, size=2, replace=False))
        start, goal = divmod(start_idx, size), divmod(goal_idx, size)
        cells = [["F" if frozen[r, c] else "H" for c in range(size)] for r in range(size)]
        cells[start[0]][start[1]], cells[goal[0]][goal[1]] = "S", "G"
        grid = tuple("".join(row) for row in cells)
        steps = shortest_path_length(grid, start, goal)
        if steps is not None and steps <= max_steps:
            return grid, start, goal
    raise ValueError(f"no solvable map for seed={seed} size={size} p={p} within {MAX_MAP_ATTEMPTS} draws")


def render_map(grid: tuple[str, ...], pos: tuple[int, int]) -> str:
    """Each cell as ``" s \\t"``, rows joined by newlines; the start shows as frozen, ``P`` marks the player."""
    lines = []
    for r, row in enumerate(grid):
        cells = []
        for c, tile in enumerate(row):
            symbol = _SYMBOLS[tile]
            if (r, c) == pos:
                symbol = {"H": "X", "G": "√"}.get(tile, "P")
            cells.append(f" {symbol} \t")
        lines.append("".join(cells))
    return "\n".join(lines)


def parse_action(text: str) -> tuple[int | None, str | None]:
    """(action number, None) for ``Direction X`` with X in 1..4, else (None, the format-error feedback).

    The answer must be extracted by the shared rule (one ``<answer>``, one ``</answer>``, input capped first); its
    stripped content must start with ``Direction``/``direction``, whitespace and digits (a prefix match, so
    ``Direction 2 (up)`` is accepted).
    """
    answer = extract_answer(text)
    match = _ACTION_RE.match(answer) if answer is not None else None
    if match is None:
        return None, FORMAT_ERROR_FEEDBACK
    digits = match.group(1)
    if len(digits) > _MAX_NUMBER_DIGITS:
        return None, INVALID_NUMBER_FEEDBACK.format(n=digits[:_MAX_NUMBER_DIGITS] + "...")
    number = int(digits)
    if not 1 <= number <= 4:
        return None, INVALID_NUMBER_FEEDBACK.format(n=number)
    return number, None


class FrozenLakeObscure(Environment):
    """One FrozenLake-Obscure task: map from the row seed, action permutation from the pack seed."""

    name: ClassVar[str] = "frozenlake_obscure"

    def __init__(self, ctx: TaskContext, state: PackState):
        super().__init__(ctx, state)
        row: dict[str, Any] = ctx.row
        setting = SETTINGS[row.get("setting", "easy")]
        self.env_max_steps = int(row.get("env_max_steps", setting.env_max_steps))
        self.agent_max_steps = int(row.get("agent_max_steps", setting.agent_max_steps))
        size = int(row.get("size", setting.min_size))
        self.grid, self.start, self.goal = generate_map(
            int(row.get("seed", 0)), size, float(row.get("p", 0.8)), self.env_max_steps
        )
        self.mapping = action_mapping(ctx.pack_seed)
        self.pos = self.start
        self.done = False
        self.outcome: str | None = None
        """None while running, else ``success``, ``hole``, ``format`` or ``out_of_steps``."""
        self.last_feedback = ""

    @property
    def max_turns(self) -> int:
        """``agent_max_steps``: 8 on easy training maps, 10 on hard evaluation maps."""
        return self.agent_max_steps

    def system_prompt(self) -> str:
        """Paper Table 4; the CoD core appends the hint and length sections."""
        return SYSTEM_PROMPT

    def first_observation(self) -> str:
        """The step-1 user message (no feedback line)."""
        return self._observation(None)

    def _observation(self, feedback: str | None) -> str:
        """``user.jinja2`` with ``trim_blocks`` and no trailing newline."""
        head = turn_heading("Step", self.turns + 1, self.agent_max_steps, feedback)
        goal = GOAL_LINE.format(r=self.goal[0], c=self.goal[1])
        return f"{head}Current map:\n{render_map(self.grid, self.pos)}\n{goal}"

    def _end(self, outcome: str, reward: float, feedback: str, format_error: bool = False) -> StepResult:
        self.done, self.outcome, self.last_feedback = True, outcome, feedback
        return self.finish(reward, feedback, format_error)

    def step(self, action_text: str) -> StepResult:
        """Apply one response; malformed ones end the episode with reward 0 and the format-error flag."""
        if self.result is not None:  # a caller that steps past the end gets the final answer again, never an exception
            return self.result
        self.turns += 1
        number, error = parse_action(action_text if isinstance(action_text, str) else "")
        if number is None:
            return self._end("format", 0.0, error or FORMAT_ERROR_FEEDBACK, format_error=True)
        dr, dc = DELTAS[self.mapping[number]]
        r, c = self.pos
        nr, nc = r + dr, c + dc
        if 0 <= nr < len(self.grid) and 0 <= nc < len(self.grid[0]):
            self.pos = (nr, nc)
            feedback = MOVED_FEEDBACK.format(a=number, r0=r, c0=c, r1=nr, c1=nc)
        else:
            feedback = STAYED_FEEDBACK.format(a=number, r=r, c=c)
        tile = self.grid[self.pos[0]][self.pos[1]]
        if tile == "G":
            return self._end("success", 1.0, feedback)
        if tile == "H":
            return self._end("hole", 0.0, feedback)
        if self.turns >= self.agent_max_steps:
            return self._end("out_of_steps", 0.0, feedback)
        self.last_feedback = feedback
        return self.next_turn(self._observation(feedback), feedback)

    def final_feedback(self) -> str:
        """cod.md 9.1's final texts: success, hole, the format-error text, or out of steps."""
        if self.outcome == "success":
            return SUCCESS_FEEDBACK
        if self.outcome == "hole":
            return HOLE_FEEDBACK
        if self.outcome == "format":
            return self.last_feedback
        return OUT_OF_STEPS_FEEDBACK.format(k=self.turns, n=self.agent_max_steps)
