"""Scripted Grid Navigation policies (cod.md 9.0, 9.6) that read only the text a model would see.

The solver estimates every cell's cost (revealed cells exact, unknown cells from a prior), then searches the
exact-round route from its position to the target with the lowest estimated mean entered cost (the loss is a mean,
so a Dinkelbach loop over "sum of (cost - lambda)" dynamic programs). The oracle's update records what it learned
about the landscape: its correlation length (landscapes are sums of broad Gaussian bumps, so sqrt(cost) is a smooth
field) and the full estimated cost grid, revealed cells exact and the rest kriged from them in sqrt-cost space. Its
solver takes that grid as the prior and corrects it around the cells revealed since (the same kriging at the
recorded length). Hint-blind runs the same solver with the flat prior (mean revealed cost) and writes the constant
hint ``none``; the environment's persistent reveals still help it, so its curve rises too. No privileged environment
state is read.
"""

from __future__ import annotations

import random
import re
from functools import partial

import numpy as np

from cod_envs.base import Message, TextPolicy
from cod_envs.grid_navigation.env import entered_cells
from cod_envs.scripted import TRAJECTORY, delimited_hint, hint_section, policy_table, scripted_policy

ESTIMATE_HEADER = "- Estimated cost grid (revealed cells exact, others interpolated from them):"
SCALE_LINE = "- The cost landscape is shared by all tasks and smooth: costs are correlated over about {scale:g} cells."
SCALES = (1.5, 2.0, 3.0, 4.0, 5.0)
"""Candidate correlation lengths in cells (bump scales are 0.15-0.45 of a 7-13 cell span); the update picks one."""
DEFAULT_SCALE = 3.0
"""Correlation length the solver assumes when a hint has a grid but no length."""
BACKGROUND = 0.3
"""Prior sqrt(cost / 99) far from revealed cells (cost ~9): slightly optimistic, so unknown areas get tried."""
NUGGET = 1e-3
"""Kriging noise term (revealed costs are rounded integers)."""
DEFAULT_PRIOR = 30.0
"""Prior cost before anything is revealed (any constant gives the same routes: every route ties)."""
DINKELBACH_ITERS = 4
EXPLORE_BONUS = 5.0
"""Cost discount per unknown cell: breaks ties toward routes that reveal more (the prompt asks to explore broadly)."""

_ROUND_RE = re.compile(r"^Round (\d+)/(\d+)", re.M)
_POS_RE = re.compile(r"Current position: \((\d+),(\d+)\)")
_TARGET_RE = re.compile(r"Target position: \((\d+),(\d+)\)")
_PATH_RE = re.compile(r"You moved to \(\d+,\d+\) through \d+ entered cells: ([^\n]*?)\. Cumulative")
_CELL_RE = re.compile(r"\((\d+),(\d+)\)")
_SCALE_RE = re.compile(r"correlated over about ([0-9]+(?:\.[0-9]+)?) cells")


def parse_grid(text: str, header: str) -> np.ndarray | None:
    """The grid rendered after ``header`` as floats (NaN for ``?``), or None."""
    start = text.rfind(header)
    if start == -1:
        return None
    lines = text[start + len(header) :].lstrip("\n").split("\n")
    if not lines or not lines[0].strip():
        return None
    size = len(lines[0].split())
    rows = []
    for line in lines[1 : size + 1]:
        tokens = line.split()
        if len(tokens) != size + 1:
            return None
        rows.append([float("nan") if t == "?" else float(t) for t in tokens[1:]])
    return np.array(rows) if len(rows) == size and size > 0 else None


def _kernel_parts(known: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-kernel matrices: revealed x revealed (with the nugget) and all cells x revealed."""
    size = known.shape[0]
    pts = np.argwhere(known).astype(float)
    grid = np.argwhere(np.ones_like(known)).astype(float)
    inner = np.exp(-0.5 * ((pts[:, None] - pts[None]) ** 2).sum(-1) / scale**2) + NUGGET * np.eye(len(pts))
    cross = np.exp(-0.5 * ((grid[:, None] - pts[None]) ** 2).sum(-1) / scale**2)
    return inner, cross.reshape(size * size, len(pts))


def fit_scale(observed: np.ndarray) -> float:
    """The candidate correlation length with the highest Gaussian-process likelihood of the revealed sqrt-costs."""
    known = ~np.isnan(observed)
    resid = np.sqrt(np.clip(observed[known], 0, 99) / 99) - BACKGROUND
    best, best_nll = DEFAULT_SCALE, np.inf
    for scale in SCALES:
        chol = np.linalg.cholesky(_kernel_parts(known, scale)[0])
        white = np.linalg.solve(chol, resid)
        nll = 0.5 * len(resid) * np.log(max(white @ white / len(resid), 1e-8)) + np.log(np.diag(chol)).sum()
        if nll < best_nll:
            best, best_nll = scale, nll
    return best


def krige(observed: np.ndarray, scale: float, prior: np.ndarray | None = None) -> np.ndarray:
    """Revealed cells exact; unknown cells the kriged sqrt-cost field squared (prior sqrt-cost mean, else flat).

    ``prior`` is a cost grid (e.g. the hint's estimate): kriging then corrects it where revealed cells disagree.
    """
    known = ~np.isnan(observed)
    if not known.any():
        return observed.copy() if prior is None else prior.copy()
    mean = np.full(observed.shape, BACKGROUND) if prior is None else np.sqrt(np.clip(prior, 0, 99) / 99)
    inner, cross = _kernel_parts(known, scale)
    resid = np.sqrt(np.clip(observed[known], 0, 99) / 99) - mean[known]
    field = mean + (cross @ np.linalg.solve(inner, resid)).reshape(observed.shape)
    return np.where(known, observed, np.rint(99 * np.clip(field, 0, 1) ** 2))


def render(grid: np.ndarray) -> str:
    """The environment's grid layout (width-3 cells), ``?`` for NaN."""
    size = grid.shape[0]
    lines = ["     " + "".join(f"{c:>3}" for c in range(size))]
    for r in range(size):
        cells = "".join(f"{'?' if np.isnan(v) else int(v):>3}" for v in grid[r])
        lines.append(f"{r:>3}  {cells}")
    return "\n".join(lines)


def _move_tables(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Summed weight of the entered cells of every move along rows [r, c0, c1] and columns [c, r0, r1]."""
    size = w.shape[0]
    c0, c1 = np.arange(size)[:, None], np.arange(size)[None, :]
    hi, lo = np.where(c1 > c0, c1 + 1, c0), np.where(c1 > c0, c0 + 1, c1)
    out = []
    for m in (w, w.T):
        prefix = np.concatenate([np.zeros((size, 1)), np.cumsum(m, axis=1)], axis=1)
        table = prefix[:, hi] - prefix[:, lo]
        table[:, np.arange(size), np.arange(size)] = np.inf
        out.append(table)
    return out[0], out[1]


def _plan(est: np.ndarray, pos: tuple[int, int], target: tuple[int, int], rounds: int) -> list[tuple[int, int]]:
    """The exact-``rounds`` route (list of destinations) minimising the summed weights ``est``."""
    t_row, t_col = _move_tables(est)
    size = est.shape[0]
    values = [np.full((size, size), np.inf)]
    values[0][target] = 0.0
    for _ in range(rounds - 1):
        v = values[-1]
        by_row = (t_row + v[:, None, :]).min(axis=2)
        by_col = (t_col + v.T[:, None, :]).min(axis=2).T
        values.append(np.minimum(by_row, by_col))
    route, (r, c) = [], pos
    for left in range(rounds, 0, -1):
        v = values[left - 1]
        row_cost, col_cost = t_row[r, c, :] + v[r, :], t_col[c, r, :] + v[:, c]
        if row_cost.min() <= col_cost.min():
            r, c = r, int(np.argmin(row_cost))
        else:
            r, c = int(np.argmin(col_cost)), c
        route.append((r, c))
    return route


def best_move(
    est: np.ndarray, pos: tuple[int, int], target: tuple[int, int], rounds: int, prev: list[tuple[int, int]]
) -> tuple[int, int]:
    """First destination of the route with the lowest estimated mean cost, counting this task's earlier cells."""
    prev_sum, prev_n = sum(est[c] for c in prev), len(prev)
    lam = prev_sum / prev_n if prev_n else float(est.mean())
    route: list[tuple[int, int]] = []
    for _ in range(DINKELBACH_ITERS):
        route = _plan(est - lam, pos, target, rounds)
        cells, here = [], pos
        for dest in route:
            cells += entered_cells(here, dest)
            here = dest
        new = (prev_sum + sum(est[c] for c in cells)) / (prev_n + len(cells))
        if abs(new - lam) < 1e-9:
            break
        lam = new
    return route[0]


def _solve(messages: list[Message], use_hint: bool) -> str:
    """One round: estimate the costs, then move along the cheapest exact-round route."""
    observation = messages[-1]["content"]
    grid = parse_grid(observation, "Observed cost grid:")
    pos_m, target_m, round_m = (
        _POS_RE.search(observation),
        _TARGET_RE.search(observation),
        _ROUND_RE.search(observation),
    )
    if grid is None or pos_m is None or target_m is None or round_m is None:
        return "<answer>0,0</answer>"
    pos = (int(pos_m.group(1)), int(pos_m.group(2)))
    target = (int(target_m.group(1)), int(target_m.group(2)))
    rounds_left = int(round_m.group(2)) - int(round_m.group(1)) + 1
    known = ~np.isnan(grid)
    prior = np.full(grid.shape, float(grid[known].mean()) if known.any() else DEFAULT_PRIOR) - EXPLORE_BONUS
    if use_hint and messages[0]["role"] == "system":
        hint = hint_section(messages[0]["content"])
        hinted = parse_grid(hint, ESTIMATE_HEADER)
        if hinted is not None and hinted.shape == grid.shape and not np.isnan(hinted).any():
            scale_m = _SCALE_RE.search(hint)
            scale = min(max(float(scale_m.group(1)), 0.5), 20.0) if scale_m else DEFAULT_SCALE
            prior = krige(grid, scale, hinted)  # the recorded landscape, corrected around newer reveals
    est = np.where(known, grid, prior)
    prev: list[tuple[int, int]] = []
    for message in messages:
        if message["role"] == "user":
            for m in _PATH_RE.finditer(message["content"]):
                prev += [(int(a), int(b)) for a, b in _CELL_RE.findall(m.group(1))]
    prev = [c for c in prev if 0 <= c[0] < grid.shape[0] and 0 <= c[1] < grid.shape[1]]
    r, c = best_move(est, pos, target, rounds_left, prev)
    return f"Cheapest estimated exact-round route.\n<answer>{r},{c}</answer>"


def _update(messages: list[Message]) -> str:
    """Record the landscape's correlation length and the kriged cost grid from the final observed cost grid."""
    prompt = messages[-1]["content"]
    grid = parse_grid(prompt[prompt.find(TRAJECTORY) :], "Observed cost grid:")
    if grid is None or np.isnan(grid).all():
        return delimited_hint("- The cost landscape is shared by all tasks; nothing revealed yet.")
    scale = fit_scale(grid)
    hint = "\n".join(
        [
            SCALE_LINE.format(scale=scale),
            "- Route through long runs of cheap cells; the loss is the mean entered cost.",
            ESTIMATE_HEADER,
            render(krige(grid, scale)),
        ]
    )
    return f"Recording the cost landscape observed so far.\n{delimited_hint(hint)}"


def oracle(seed: int = 0) -> TextPolicy:
    """Solves with its hint's estimated landscape as the prior for unknown cells; updates record that landscape."""
    return scripted_policy(partial(_solve, use_hint=True), _update)


def hint_blind(seed: int = 0) -> TextPolicy:
    """The oracle's solver with a flat prior (the hint is ignored); its updates write the constant hint ``none``."""
    return scripted_policy(partial(_solve, use_hint=False))


def random_policy(seed: int = 0) -> TextPolicy:
    """A uniformly random legal rook move each round; updates write the constant hint ``none``."""
    rng = random.Random(seed)

    def solve(messages: list[Message]) -> str:
        observation = messages[-1]["content"] if messages else ""
        grid, pos_m = parse_grid(observation, "Observed cost grid:"), _POS_RE.search(observation)
        if grid is None or pos_m is None:
            return "<answer>0,0</answer>"
        r, c, size = int(pos_m.group(1)), int(pos_m.group(2)), grid.shape[0]
        options = [(r, k) for k in range(size) if k != c] + [(k, c) for k in range(size) if k != r]
        dr, dc = rng.choice(options)
        return f"<answer>{dr},{dc}</answer>"

    return scripted_policy(solve)


POLICIES = policy_table(oracle, hint_blind, random_policy)
