"""Scripted FrozenLake-Obscure policies (cod.md 9.0, 9.1) that read only the text a model would see.

The solver keeps the set of the 24 action permutations consistent with what it has observed (moves, edge bumps, the
hole or goal that ended an episode), plans with BFS over the actions whose direction is certain, and otherwise probes
an uncertain action from the reachable cell where it is least likely to drop into a hole. The oracle also trusts the
mapping its own hint states (``Direction k = Down`` lines); hint-blind solves the same way but ignores the hint, so
its per-position curve is flat. No privileged environment state is read.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import deque
from collections.abc import Iterable, Sequence
from functools import partial

from cod_envs.base import Message, TextPolicy
from cod_envs.frozenlake_obscure.env import DELTAS, DIRECTIONS
from cod_envs.scripted import TRAJECTORY, delimited_hint, hint_section, policy_table, previous_hints, scripted_policy

Perm = tuple[str, ...]
"""``perm[k - 1]`` is the direction of ``Direction k``."""
Cell = tuple[int, int]
Constraint = tuple[int, frozenset[str]]
"""(action number, the directions it may still mean)."""
ALL_PERMS: tuple[Perm, ...] = tuple(itertools.permutations(DIRECTIONS))

_STEP_RE = re.compile(r"^Step (\d+)/(\d+)", re.M)
_MOVED_RE = re.compile(
    r"You executed action Direction (\d+)\. Your position changed from \(row=(\d+), col=(\d+)\) "
    r"to \(row=(\d+), col=(\d+)\)\."
)
_STAYED_RE = re.compile(
    r"You executed action Direction (\d+)\. Your position did not change \(stayed at row=(\d+), col=(\d+)\)"
)
_GOAL_RE = re.compile(r"You have not reached the goal \(row=(\d+), col=(\d+)\)")
_HINT_LINE_RE = re.compile(r"Direction ([1-4]) = ((?:Down|Right|Up|Left)(?: or (?:Down|Right|Up|Left))*)")
_ANSWER_RE = re.compile(r"<answer>\s*[Dd]irection\s+(\d+)")
_STEP_BLOCK_RE = re.compile(r"(?:^|\n\n)Step \d+:\nObservation: (.*?)\nAction: (.*?)(?=\n\nStep \d+:\n|\Z)", re.S)


class Board:
    """A map as parsed from an observation: grid of ``H``/``F``/``G``, the player and the goal."""

    def __init__(self, grid: list[str], pos: Cell, goal: Cell):
        self.grid, self.pos, self.goal = grid, pos, goal
        self.rows, self.cols = len(grid), len(grid[0]) if grid else 0

    def inside(self, cell: Cell) -> bool:
        """Whether a cell is on the map (moves off it leave the player in place)."""
        return 0 <= cell[0] < self.rows and 0 <= cell[1] < self.cols

    def tile(self, cell: Cell) -> str:
        """``H``, ``F`` or ``G``."""
        return self.grid[cell[0]][cell[1]]

    def move(self, cell: Cell, direction: str) -> Cell:
        """Where a direction leads from a cell (the same cell at an edge)."""
        dr, dc = DELTAS[direction]
        nxt = (cell[0] + dr, cell[1] + dc)
        return nxt if self.inside(nxt) else cell


def parse_board(observation: str) -> Board | None:
    """The map of a user message (cells ``" s \\t"``), or None if there is none."""
    start = observation.find("Current map:\n")
    goal_match = _GOAL_RE.search(observation)
    if start == -1 or goal_match is None:
        return None
    body = observation[start + len("Current map:\n") : goal_match.start()].rstrip("\n")
    grid, pos = [], None
    for r, line in enumerate(body.split("\n")):
        cells = [cell.strip() for cell in line.split("\t")[:-1]]
        for c, symbol in enumerate(cells):
            if symbol == "P":
                pos = (r, c)
        grid.append("".join({"O": "H", "G": "G", "X": "H"}.get(s, "F") for s in cells))
    if pos is None or not grid:
        return None
    return Board(grid, pos, (int(goal_match.group(1)), int(goal_match.group(2))))


def _direction_between(a: Cell, b: Cell) -> str | None:
    return next((d for d, delta in DELTAS.items() if (a[0] + delta[0], a[1] + delta[1]) == b), None)


def feedback_constraints(text: str, board: Board) -> list[Constraint]:
    """Constraints from the ``You executed action ...`` lines of one observation."""
    out: list[Constraint] = []
    for m in _MOVED_RE.finditer(text):
        direction = _direction_between((int(m.group(2)), int(m.group(3))), (int(m.group(4)), int(m.group(5))))
        if direction is not None:
            out.append((int(m.group(1)), frozenset([direction])))
    for m in _STAYED_RE.finditer(text):
        cell = (int(m.group(2)), int(m.group(3)))
        off_edge = frozenset(d for d in DIRECTIONS if board.move(cell, d) == cell)
        out.append((int(m.group(1)), off_edge))
    return out


def hint_constraints(hint: str) -> list[Constraint]:
    """``Direction k = Down`` / ``Direction k = Up or Left`` lines of a hint, as written by :func:`format_hint`."""
    return [(int(m.group(1)), frozenset(m.group(2).split(" or "))) for m in _HINT_LINE_RE.finditer(hint)]


def consistent(constraints: Iterable[Constraint], base: Sequence[Perm] = ALL_PERMS) -> list[Perm]:
    """The permutations that satisfy every constraint."""
    perms = list(base)
    for action, allowed in constraints:
        if 1 <= action <= 4:
            perms = [p for p in perms if p[action - 1] in allowed]
    return perms


def format_hint(perms: Sequence[Perm]) -> str:
    """What is known per action: certain directions, and the remaining options where some were ruled out."""
    lines = []
    for k in range(4):
        options = [d for d in DIRECTIONS if any(p[k] == d for p in perms)]
        if len(options) == 1:
            lines.append(f"- Direction {k + 1} = {options[0]}")
        elif 1 < len(options) < 4:
            lines.append(f"- Direction {k + 1} = {' or '.join(options)} (uncertain)")
    if not lines:
        return "- The action-to-direction mapping is still unknown; probe actions from cells without adjacent holes."
    return "\n".join(["- Action-to-direction mapping (shared by all tasks):", *lines])


def choose_action(board: Board, perms: Sequence[Perm], turns_left: int, rng: random.Random) -> int:
    """BFS to the goal over certain actions; else the safest probe of an uncertain action from a reachable cell."""
    known = {k + 1: perms[0][k] for k in range(4) if len({p[k] for p in perms}) == 1}
    first: dict[Cell, int | None] = {board.pos: None}
    dist = {board.pos: 0}
    queue = deque([board.pos])
    while queue:
        cell = queue.popleft()
        for action, direction in known.items():
            nxt = board.move(cell, direction)
            if nxt in dist or board.tile(nxt) == "H":
                continue
            dist[nxt], first[nxt] = dist[cell] + 1, first[cell] or action
            if nxt == board.goal:
                return first[nxt] or action
            queue.append(nxt)
    goal_dist = _distances_to(board, board.goal)
    best: tuple[tuple[float, ...], Cell, int] | None = None
    for cell, d in dist.items():
        if d + 1 > turns_left and cell != board.pos:
            continue
        here = goal_dist.get(cell, 99)
        for action in range(1, 5):
            if action in known:
                continue
            targets = [board.move(cell, p[action - 1]) for p in perms]
            hole = sum(board.tile(t) == "H" for t in targets) / len(targets)
            progress = sum(goal_dist.get(t, 99) < here for t in targets) / len(targets)
            score = (hole, d, -progress, rng.random())
            if best is None or score < best[0]:
                best = (score, cell, action)
    if best is None:
        return rng.randint(1, 4)
    _, cell, action = best
    return action if cell == board.pos else first[cell] or action


def _distances_to(board: Board, target: Cell) -> dict[Cell, int]:
    """True-geometry BFS distances to the target over non-hole cells (for ranking probes by likely progress)."""
    dist = {target: 0}
    queue = deque([target])
    while queue:
        cell = queue.popleft()
        for direction in DIRECTIONS:
            nxt = board.move(cell, direction)
            if nxt not in dist and board.tile(nxt) != "H":
                dist[nxt] = dist[cell] + 1
                queue.append(nxt)
    return dist


def _solve(messages: list[Message], rng: random.Random, use_hint: bool) -> str:
    """One solve turn: constraints from the hint (optionally) and from this episode's feedback, then plan."""
    observation = messages[-1]["content"]
    board = parse_board(observation)
    if board is None:
        return f"<answer>Direction {rng.randint(1, 4)}</answer>"
    episode: list[Constraint] = []
    for message in messages:
        if message["role"] == "user":
            episode += feedback_constraints(message["content"], board)
    perms = consistent(episode)
    if use_hint and messages and messages[0]["role"] == "system":
        hinted = consistent(hint_constraints(hint_section(messages[0]["content"])), perms)
        perms = hinted or perms  # a hint that contradicts what this episode saw is dropped
    step = _STEP_RE.search(observation)
    turns_left = int(step.group(2)) - int(step.group(1)) + 1 if step else 1
    action = choose_action(board, perms or list(ALL_PERMS), turns_left, rng)
    return f"Plan from the map and the known mapping.\n<answer>Direction {action}</answer>"


def trajectory_constraints(prompt: str) -> list[Constraint]:
    """Constraints from an update prompt's trajectory, including the move that ended it (goal or hole)."""
    start = prompt.find(TRAJECTORY)
    if start == -1:
        return []
    body = prompt[start:]
    reward_at = body.rfind("\n\nReward: ")
    feedback_at = body.rfind("Environment feedback: ")
    steps = _STEP_BLOCK_RE.findall(body[: reward_at if reward_at != -1 else feedback_at if feedback_at != -1 else None])
    final = body[feedback_at:] if feedback_at != -1 else ""
    out: list[Constraint] = []
    board: Board | None = None
    last_action: int | None = None
    for observation, action_text in steps:
        board = parse_board(observation) or board
        if board is not None:
            out += feedback_constraints(observation, board)
        found = _ANSWER_RE.search(action_text)
        last_action = int(found.group(1)) if found else None
    if board is not None and last_action is not None and 1 <= last_action <= 4:
        if final.startswith("Environment feedback: Success!"):
            direction = _direction_between(board.pos, board.goal)
            if direction is not None:
                out.append((last_action, frozenset([direction])))
        elif final.startswith("Environment feedback: Failed: Fell into a hole"):
            into_hole = frozenset(d for d in DIRECTIONS if board.tile(board.move(board.pos, d)) == "H")
            if into_hole:
                out.append((last_action, into_hole))
    return out


def _update(messages: list[Message]) -> str:
    """Merge the previous hint's mapping with the trajectory's evidence and write it between the delimiters."""
    prompt = messages[-1]["content"]
    previous = previous_hints(prompt)
    evidence = trajectory_constraints(prompt)
    perms = consistent(evidence)
    merged = consistent(hint_constraints(previous), perms)
    hint = format_hint(merged or perms or list(ALL_PERMS))
    return f"Recording the action mapping observed so far.\n{delimited_hint(hint)}"


def oracle(seed: int = 0) -> TextPolicy:
    """Solves with the mapping from its own hint plus this episode's evidence; updates record the learned mapping."""
    return scripted_policy(partial(_solve, rng=random.Random(seed), use_hint=True), _update)


def hint_blind(seed: int = 0) -> TextPolicy:
    """The oracle's solver without the hint; its updates write the constant hint ``none``."""
    return scripted_policy(partial(_solve, rng=random.Random(seed), use_hint=False))


def random_policy(seed: int = 0) -> TextPolicy:
    """Uniformly random legal action words; updates write the constant hint ``none`` (no format penalty)."""
    rng = random.Random(seed)
    return scripted_policy(lambda messages: f"<answer>Direction {rng.randint(1, 4)}</answer>")


POLICIES = policy_table(oracle, hint_blind, random_policy)
