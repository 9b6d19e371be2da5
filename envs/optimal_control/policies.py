"""Scripted Optimal Control policies (cod.md 9.0, 9.5) that read only the text a model would see.

Updates fit the hidden a, b by least squares on the feedback table (v_{t+1} = a v_t + b u_t) and write them into the
hint; solves read a, b from the hint (the oracle) or assume a = b = 1 (hint-blind, and the oracle before it has a
hint), plan the optimal box-constrained control sequence for the task's initial state and target, and submit it as
a piecewise-constant expression in ``t``. No privileged environment state is read.
"""

from __future__ import annotations

import random
import re
from functools import partial

import numpy as np

from cod_envs.base import Message, TextPolicy
from cod_envs.optimal_control.env import CONTROL_PENALTY, VELOCITY_WEIGHT
from cod_envs.scripted import delimited_hint, hint_section, policy_table, previous_hints, scripted_policy

FEEDBACK = "Environment feedback:"
DEFAULT_GUESS = (1.0, 1.0)
"""(a, b) assumed without evidence: a pure double integrator with a positive control coefficient."""

_NUM = r"(-?\d+(?:\.\d+)?)"
_HINT_RE = re.compile(rf"a_env = {_NUM}, b_env = {_NUM}")
_TASK_RE = re.compile(
    rf"Initial state: x_0 = {_NUM}, v_0 = {_NUM}\.\nTarget state: x_target = {_NUM}, v_target = {_NUM}\.\n"
    r"The rollout has (\d+) steps"
)
_ROW_RE = re.compile(rf"^ *(\d+) +{_NUM} +{_NUM} +({_NUM[1:-1]}|--) *$", re.M)


def plan_controls(
    a: float, b: float, x0: float, v0: float, x_target: float, v_target: float, horizon: int, iters: int = 60
) -> np.ndarray:
    """The loss-minimising controls in [-1, 1] for known dynamics (x_T, v_T are linear in u: a box-constrained QP,
    solved by accelerated projected gradient)."""
    powers = a ** np.arange(horizon + 1)
    mv = b * powers[horizon - 1 :: -1][:horizon]  # d v_T / d u_t = b a^{T-1-t}
    mx = b * np.cumsum(powers[:horizon])[::-1]  # d x_T / d u_t = b sum_{j < T-t} a^j
    M = np.stack([mx, mv])
    free_x = x0 + v0 * powers[1 : horizon + 1].sum()
    free_v = v0 * powers[horizon]
    r = np.array([x_target - free_x, v_target - free_v])
    W = np.diag([1.0, VELOCITY_WEIGHT])
    H = M.T @ W @ M + CONTROL_PENALTY * np.eye(horizon)
    g = M.T @ W @ r
    step = 1.0 / np.linalg.eigvalsh(H)[-1]
    u = np.clip(np.linalg.solve(H, g), -1.0, 1.0)
    y, prev, k = u.copy(), u.copy(), 1.0
    for _ in range(iters):
        u = np.clip(y - step * (H @ y - g), -1.0, 1.0)
        k_next = (1 + (1 + 4 * k * k) ** 0.5) / 2
        y, prev, k = u + (k - 1) / k_next * (u - prev), u, k_next
    return u


def piecewise_expression(controls: np.ndarray) -> str:
    """``ifelse(lt(t, 0.5), u0, ifelse(lt(t, 1.5), u1, ...))``: the plan as a valid controller expression."""
    expr = f"{controls[-1]:.4f}"
    for t in range(len(controls) - 2, -1, -1):
        expr = f"ifelse(lt(t, {t}.5), {controls[t]:.4f}, {expr})"
    return expr


def fit_dynamics(feedback: str) -> tuple[float, float] | None:
    """Least-squares (a, b) from a feedback table, or None when there is no table or it does not identify them."""
    rows = [(int(t), float(x), float(v), u) for t, x, v, u in _ROW_RE.findall(feedback)]
    rows.sort()
    vs = [v for _, _, v, _ in rows]
    us = [float(u) for *_, u in rows if u != "--"]
    if len(us) < 2 or len(vs) != len(us) + 1:
        return None
    X = np.column_stack([vs[:-1], us])
    y = np.array(vs[1:])
    sv = np.linalg.svd(X, compute_uv=False)
    if sv[-1] < 1e-2 * max(sv[0], 1e-9):
        return None
    (a, b), *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(a), float(b)


def format_hint(a: float, b: float) -> str:
    """The oracle's hint: the fitted dynamics and what the sign of b means."""
    direction = "increases" if b > 0 else "decreases"
    return (
        f"- Hidden dynamics shared by all tasks (least-squares fit of the state table): a_env = {a:.4f}, "
        f"b_env = {b:.4f}.\n"
        f"- b_env is {'positive' if b > 0 else 'negative'}: a positive u {direction} the velocity.\n"
        "- Plan the whole control sequence for these dynamics and submit it piecewise in t."
    )


def parse_hint(text: str) -> tuple[float, float] | None:
    """(a, b) from a hint written by :func:`format_hint`."""
    m = _HINT_RE.search(text)
    return (float(m.group(1)), float(m.group(2))) if m else None


def _answer(expr: str, note: str) -> str:
    return f"{note}\n<answer>\n  <action_expression>\n    {expr}\n  </action_expression>\n</answer>"


def _solve(messages: list[Message], use_hint: bool) -> str:
    """Plan for the hinted dynamics (or the default guess) and submit the plan."""
    task = next((m["content"] for m in messages if m["role"] == "user"), "")
    m = _TASK_RE.search(task)
    if m is None:
        return _answer("0.3 * (x_target - x) - 0.8 * v", "No task found; a generic feedback law.")
    x0, v0, xt, vt = (float(m.group(i)) for i in range(1, 5))
    horizon = int(m.group(5))
    dynamics = None
    if use_hint and messages and messages[0]["role"] == "system":
        dynamics = parse_hint(hint_section(messages[0]["content"]))
    a, b = dynamics or DEFAULT_GUESS
    controls = plan_controls(a, b, x0, v0, xt, vt, max(1, min(horizon, 64)))
    return _answer(piecewise_expression(controls), f"Planning for a_env = {a:.4f}, b_env = {b:.4f}.")


def _update(messages: list[Message]) -> str:
    """Refit a, b on the new table; keep the previous hint's values when the table is missing or uninformative."""
    prompt = messages[-1]["content"]
    previous = parse_hint(previous_hints(prompt))
    at = prompt.rfind(FEEDBACK)
    fitted = fit_dynamics(prompt[at:]) if at != -1 else None
    dynamics = fitted or previous
    body = format_hint(*dynamics) if dynamics else "- Hidden dynamics not identified yet; submit a simple feedback law."
    return f"Fitting the dynamics on the feedback table.\n{delimited_hint(body)}"


def oracle(seed: int = 0) -> TextPolicy:
    """Plans with the dynamics its own hint states; updates write the least-squares fit of the feedback table."""
    return scripted_policy(partial(_solve, use_hint=True), _update)


def hint_blind(seed: int = 0) -> TextPolicy:
    """The oracle's planner with the default guess only; its updates write the constant hint ``none``."""
    return scripted_policy(partial(_solve, use_hint=False))


def random_policy(seed: int = 0) -> TextPolicy:
    """Random valid expressions (a random linear feedback or a constant); updates write ``none``."""
    rng = random.Random(f"optimal_control.random_policy.{seed}")  # not Random(seed): packs draw a, b from that

    def solve(messages: list[Message]) -> str:
        if rng.random() < 0.3:
            return _answer(f"{rng.uniform(-1, 1):.3f}", "A constant push.")
        kx, kv = rng.uniform(-1, 1), rng.uniform(-1, 1)
        return _answer(f"{kx:.3f} * (x_target - x) + {kv:.3f} * (v_target - v)", "A random linear feedback.")

    return scripted_policy(solve)


POLICIES = policy_table(oracle, hint_blind, random_policy)
