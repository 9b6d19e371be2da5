"""Grid Navigation (docs/cod.md 9.6): rook moves over a hidden cost landscape whose reveals persist across a pack.

The pack seed fixes the grid side and the cost landscape (a sum of anisotropic Gaussian bumps, min-max normalised,
squared, scaled to 0..99), so every task and rollout of a pack shares it. The row seed fixes the round count, the
start and the target on that grid. Cells within ``reveal_radius`` of every entered cell are revealed and stay
revealed for the rest of the lifecycle: they live in the caller-owned :class:`PackState`, never in a module global,
so two rollouts of the same pack never see each other's reveals. Rewards are raw outcomes (1 - loss on success).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from cod_envs.base import Environment, Message, PackState, StepResult, TaskContext, extract_answer, turn_heading
from cod_envs.trajectory import trajectory_blocks

Cell = tuple[int, int]


@dataclass(frozen=True)
class Setting:
    """One row of cod.md 9.6's table."""

    min_size: int
    max_size: int
    n_components: int
    min_scale: float
    max_scale: float
    min_rounds: int
    max_rounds: int
    reveal_radius: int


SETTINGS: dict[str, Setting] = {
    "train": Setting(8, 12, 4, 0.15, 0.45, 3, 5, 1),
    "eval": Setting(10, 14, 5, 0.15, 0.45, 3, 5, 1),
    "8b": Setting(8, 12, 4, 0.10, 0.35, 4, 6, 2),
}
"""27B training, 27B evaluation and the 8B test config."""
SETTING_KEYS = ("min_size", "max_size", "n_components", "min_scale", "max_scale", "min_rounds", "max_rounds")
REVEALED_KEY = "grid_navigation.revealed"
"""PackState key of the set of revealed cells (one set per lifecycle)."""
MAX_WALK_ATTEMPTS = 10_000

SYSTEM_PROMPT_TEMPLATE = (
    "You are navigating a square grid of hidden integer costs between 0 and 99. Your task is to move from your "
    "current position to the target position in an exact number of rounds while keeping the cost of the cells you "
    "enter low.\n"
    "\n"
    "## Grid and observations\n"
    "- Rows and columns are 0-based; a cell is written (row,col).\n"
    "- Unknown cells are shown as `?`. At the start nothing is revealed.\n"
    "- After each move, every cell within Chebyshev distance {radius} of a cell you entered is revealed.\n"
    "- The cost landscape is the same for the whole stream of tasks you will solve, and revealed cells stay "
    "revealed for later tasks.\n"
    "\n"
    "## Movement rules\n"
    "- Each round you make exactly one rook move: to any other cell in the same row or the same column.\n"
    "- The cells you enter are every cell crossed by the move plus the destination, excluding the cell you start "
    "the move from.\n"
    "- Staying in place, leaving the grid or moving diagonally is illegal and ends the task with reward 0.\n"
    "- The task has an exact number of rounds. Every round is played, even after you reach the target, and you must "
    "be at the target after the final round.\n"
    "\n"
    "## Loss and reward\n"
    "- Loss = (sum of the costs of all entered cells) / (100 * number of entered cells). Repeat visits count again. "
    "The loss is a mean, not a total: entering many cheap cells lowers it.\n"
    "- Reward = 1 - loss if you are at the target after the final round, otherwise 0.\n"
    "\n"
    "## Exploration\n"
    "Explore broadly across the stream of tasks: cells you reveal now help you find cheaper routes in later tasks.\n"
    "\n"
    "## Response Format\n"
    "Format your complete response as follows:\n"
    "```\n"
    "(your thinking process goes here)\n"
    "<answer>row,col</answer>\n"
    "```\n"
    "where row,col is the destination of this round's move."
)
"""Our wording of ``system.jinja2`` (the reference text is not in the spec; its listed contents are all here)."""

PARSE_MESSAGE = "expected exactly one <answer>row,col</answer> destination."
OUTSIDE_MESSAGE = "Destination ({dest}) is outside the grid."
SAME_MESSAGE = "The destination must differ from the current position."
ROOK_MESSAGE = "The destination must be in the same row or the same column."
INVALID_FEEDBACK = "Invalid action: {message} Game over."
MOVE_FEEDBACK = "You moved to ({r},{c}) through {n} entered cells: {path}. Cumulative normalized loss: {loss:.4f}."
SUCCESS_FEEDBACK = "Success: finished round {n} at the target. Normalized loss: {loss:.4f}; reward: {reward:.4f}."
FAILURE_FEEDBACK = "Failed: after {n} rounds, position ({r}, {c}) did not equal target ({tr}, {tc}). Reward: 0."

_ACTION_RE = re.compile(r"\s*(-?\d+)\s*,\s*(-?\d+)\s*")
_MAX_DIGITS = 12
"""Longer coordinates are outside any grid; echoing at most this many keeps feedback short and ``int`` cheap."""


@lru_cache(maxsize=1024)
def cost_landscape(pack_seed: int, setting: Setting) -> tuple[tuple[int, ...], ...]:
    """The pack's cost grid (rows of ints 0..99), drawn from ``default_rng(pack_seed)`` as in cod.md 9.6."""
    rng = np.random.default_rng(pack_seed)
    size = int(rng.integers(setting.min_size, setting.max_size + 1))
    axis = np.linspace(0.0, 1.0, size)
    ys, xs = np.meshgrid(axis, axis, indexing="ij")
    total = np.zeros((size, size))
    for _ in range(setting.n_components):
        cy, cx = rng.uniform(0.0, 1.0, 2)
        long = rng.uniform(setting.min_scale, setting.max_scale)
        short = rng.uniform(setting.min_scale, long)
        angle = rng.uniform(0.0, math.pi)
        amplitude = rng.uniform(0.8, 1.2)
        dx, dy = xs - cx, ys - cy
        u = math.cos(angle) * dx + math.sin(angle) * dy
        v = -math.sin(angle) * dx + math.cos(angle) * dy
        total += amplitude * np.exp(-0.5 * ((u / long) ** 2 + (v / short) ** 2))
    span = total.max() - total.min()
    norm = (total - total.min()) / span if span > 0 else np.zeros_like(total)
    costs = np.rint(norm**2 * 99).astype(int)
    return tuple(tuple(int(x) for x in row) for row in costs)


@lru_cache(maxsize=4096)
def start_and_target(row_seed: int, size: int, min_rounds: int, max_rounds: int) -> tuple[int, Cell, Cell]:
    """(rounds, start, target): the end of a random N-rook-move walk from a uniform start, redrawn if it returns."""
    rng = np.random.default_rng(row_seed)
    rounds = int(rng.integers(min_rounds, max_rounds + 1))
    for _ in range(MAX_WALK_ATTEMPTS):
        start = (int(rng.integers(size)), int(rng.integers(size)))
        r, c = start
        for _ in range(rounds):
            change_row = rng.random() < 0.5
            new = int(rng.integers(size - 1))
            if change_row:
                r = new + (new >= r)
            else:
                c = new + (new >= c)
        if (r, c) != start:
            return rounds, start, (r, c)
    raise ValueError(f"no walk for seed={row_seed} size={size}")


def entered_cells(src: Cell, dst: Cell) -> list[Cell]:
    """Every crossed cell plus the destination, excluding the source (a legal rook move assumed)."""
    (r0, c0), (r1, c1) = src, dst
    if r0 == r1:
        step = 1 if c1 > c0 else -1
        return [(r0, c) for c in range(c0 + step, c1 + step, step)]
    step = 1 if r1 > r0 else -1
    return [(r, c0) for r in range(r0 + step, r1 + step, step)]


def render_grid(costs: tuple[tuple[int, ...], ...], revealed: set[Cell] | frozenset[Cell]) -> str:
    """Header of five spaces and width-3 column indices; rows as index (width 3), two spaces, width-3 cells."""
    size = len(costs)
    lines = ["     " + "".join(f"{c:>3}" for c in range(size))]
    for r in range(size):
        cells = "".join(f"{costs[r][c] if (r, c) in revealed else '?':>3}" for c in range(size))
        lines.append(f"{r:>3}  {cells}")
    return "\n".join(lines)


def parse_destination(text: str) -> tuple[Cell | None, str]:
    """(destination, how to echo it) or (None, ""); the answer must match ``row,col`` in full.

    Coordinates longer than a few digits are outside any grid: they become (-1, -1) and are echoed shortened, so a
    megabyte number costs no ``int`` conversion.
    """
    answer = extract_answer(text)
    match = _ACTION_RE.fullmatch(answer) if answer is not None else None
    if match is None:
        return None, ""
    a, b = match.group(1), match.group(2)
    shown = ",".join(x if len(x) <= _MAX_DIGITS else x[:_MAX_DIGITS] + "..." for x in (a, b))
    if max(len(a), len(b)) > _MAX_DIGITS:
        return (-1, -1), shown
    return (int(a), int(b)), shown


def setting_of(row: dict[str, Any]) -> Setting:
    """The row's setting: named defaults, overridden by explicit row fields."""
    base = SETTINGS[row.get("setting", "train") if row.get("setting", "train") in SETTINGS else "train"]
    fields = {k: row.get(k, getattr(base, k)) for k in (*SETTING_KEYS, "reveal_radius")}
    return Setting(
        int(fields["min_size"]),
        int(fields["max_size"]),
        int(fields["n_components"]),
        float(fields["min_scale"]),
        float(fields["max_scale"]),
        int(fields["min_rounds"]),
        int(fields["max_rounds"]),
        int(fields["reveal_radius"]),
    )


class GridNavigation(Environment):
    """One Grid Navigation task: landscape from the pack seed, rounds/start/target from the row seed."""

    name: ClassVar[str] = "grid_navigation"

    def __init__(self, ctx: TaskContext, state: PackState):
        super().__init__(ctx, state)
        self.setting = setting_of(ctx.row)
        self.costs = cost_landscape(ctx.pack_seed, self.setting)
        self.size = len(self.costs)
        self.rounds, self.start, self.target = start_and_target(
            int(ctx.row.get("seed", 0)), self.size, self.setting.min_rounds, self.setting.max_rounds
        )
        self.revealed: set[Cell] = state.data.setdefault(REVEALED_KEY, set())
        self.pos = self.start
        self.visited: list[Cell] = []
        self.done = False
        self.outcome: str | None = None
        """None while running, else ``success``, ``failure`` or ``format``."""
        self.reward = 0.0
        self.last_feedback = ""

    @property
    def max_turns(self) -> int:
        """Exactly the task's round count (3-5, or 4-6 in the 8B config)."""
        return self.rounds

    @property
    def loss(self) -> float:
        """Mean entered-cell cost / 100 (0 before the first move)."""
        if not self.visited:
            return 0.0
        return sum(self.costs[r][c] for r, c in self.visited) / (100 * len(self.visited))

    def system_prompt(self) -> str:
        """The domain's rules, with this setting's reveal radius."""
        return SYSTEM_PROMPT_TEMPLATE.format(radius=self.setting.reveal_radius)

    def first_observation(self) -> str:
        """The round-1 user message (no feedback line)."""
        return self._observation(None)

    def grid_text(self) -> str:
        """The observed cost grid as of now (this lifecycle's reveals)."""
        return render_grid(self.costs, self.revealed)

    def _observation(self, feedback: str | None) -> str:
        head = turn_heading("Round", self.turns + 1, self.rounds, feedback)
        return (
            f"{head}Current position: ({self.pos[0]},{self.pos[1]})\n"
            f"Target position: ({self.target[0]},{self.target[1]})\n\n"
            f"Observed cost grid:\n{self.grid_text()}\n\n"
            "Choose one legal destination for this round.\n"
            "Remember to follow every requirement in the `## Movement rules` section."
        )

    def _end(self, outcome: str, reward: float, feedback: str) -> StepResult:
        self.done, self.outcome, self.reward, self.last_feedback = True, outcome, reward, feedback
        return self.finish(reward, feedback, format_error=outcome == "format")

    def _illegal(self, dest: Cell | None, shown: str) -> str | None:
        """The invalid-action message for a destination, or None if the move is legal."""
        if dest is None:
            return PARSE_MESSAGE
        r, c = dest
        if not (0 <= r < self.size and 0 <= c < self.size):
            return OUTSIDE_MESSAGE.format(dest=shown)
        if dest == self.pos:
            return SAME_MESSAGE
        if r != self.pos[0] and c != self.pos[1]:
            return ROOK_MESSAGE
        return None

    def step(self, action_text: str) -> StepResult:
        """Apply one response; unparseable or illegal moves end the task with reward 0 and the format-error flag."""
        if self.result is not None:  # stepping past the end repeats the final answer, never raises
            return self.result
        self.turns += 1
        dest, shown = parse_destination(action_text if isinstance(action_text, str) else "")
        error = self._illegal(dest, shown)
        if error is not None or dest is None:
            return self._end("format", 0.0, INVALID_FEEDBACK.format(message=error or PARSE_MESSAGE))
        path = entered_cells(self.pos, dest)
        self.visited += path
        radius = self.setting.reveal_radius
        for r, c in path:
            for rr in range(max(0, r - radius), min(self.size, r + radius + 1)):
                for cc in range(max(0, c - radius), min(self.size, c + radius + 1)):
                    self.revealed.add((rr, cc))
        self.pos = dest
        feedback = MOVE_FEEDBACK.format(
            r=dest[0], c=dest[1], n=len(path), path=" -> ".join(f"({r},{c})" for r, c in path), loss=self.loss
        )
        if self.turns >= self.rounds:
            if self.pos == self.target:
                return self._end("success", 1.0 - self.loss, feedback)
            return self._end("failure", 0.0, feedback)
        self.last_feedback = feedback
        return self.next_turn(self._observation(feedback), feedback)

    def final_feedback(self) -> str:
        """Success, failure or the invalid-action text, then a blank line and the final observed cost grid."""
        if self.outcome == "success":
            head = SUCCESS_FEEDBACK.format(n=self.rounds, loss=self.loss, reward=self.reward)
        elif self.outcome == "format":
            head = self.last_feedback
        else:
            head = FAILURE_FEEDBACK.format(
                n=self.turns, r=self.pos[0], c=self.pos[1], tr=self.target[0], tc=self.target[1]
            )
        return f"{head}\n\nFinal observed cost grid:\n{self.grid_text()}"

    def update_trajectory(self, messages: list[Message]) -> str | None:
        """The generic trajectory (cod.md 2.6) plus ``Final environment state:`` with the observed cost grid."""
        blocks = trajectory_blocks(messages)
        blocks.append(
            "Final environment state:\n"
            f"Position: ({self.pos[0]}, {self.pos[1]})\n"
            f"Target: ({self.target[0]}, {self.target[1]})\n"
            f"Normalized loss: {self.loss:.4f}\n"
            f"Observed cost grid:\n{self.grid_text()}"
        )
        return "\n\n".join(blocks)
