"""Optimal Control (docs/cod.md 9.5): steer a 1-D double integrator whose dynamics coefficients a, b are hidden.

The pack seed fixes a ~ U[0.55, 1.20] and b on [-1.5, -0.35] U [0.35, 1.5], so every task and every rollout of a
pack shares them; the row fixes the initial state and target. The model answers once with a feedback expression
(see :mod:`cod_envs.optimal_control.expr`), which is simulated for the horizon. Reward 1/(1+L); a format error is
-0.1, a runtime failure 0. With ``include_previous_control_policy`` the last expression of the lifecycle that ran
without error is shown to the next task; it lives in the caller-owned :class:`PackState`, never in a global.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, ClassVar

from cod_envs.base import MAX_ACTION_CHARS, Environment, Message, PackState, StepResult, TaskContext, extract_answer
from cod_envs.optimal_control.expr import Expression, ExpressionError, parse_answer_xml, parse_expression
from cod_envs.utf8 import valid_utf8

A_RANGE = (0.55, 1.20)
B_RANGE = (0.35, 1.5)
"""|b| range (``min_abs_b_env`` 0.35, ``b_env_range`` [-1.5, 1.5]); the sign is drawn separately."""
HORIZON = 12
CONTROL_PENALTY = 0.03
VELOCITY_WEIGHT = 2.0
STATE_KEY = "optimal_control.previous_policy"
"""Where the last successfully executed policy lives in the caller-owned ``PackState.data``."""

SYSTEM_PROMPT_TEMPLATE = """You are designing a feedback controller for a one-dimensional double integrator with hidden linear dynamics.

## Dynamics
At every step t the state is the position `x` and the velocity `v`. The environment applies
v_{{t+1}} = a_env * v_t + b_env * u_t
x_{{t+1}} = x_t + v_{{t+1}}
The coefficients `a_env` and `b_env` are hidden. The control coefficient `b_env` may be positive or negative, so infer its sign from supplied hints or earlier-controller evidence rather than assuming a direction.
The control u_t is clipped to [-1, 1] before it is applied. There is no process noise.

## Shared Environment Evidence
All tasks in this session share the same hidden `a_env` and `b_env`; only the initial state, the target and the horizon change between tasks. Evidence gathered on one task (state trajectories, earlier controllers and their results) therefore transfers to the others.

## Objective
Drive the state to the target at the final step T while using little control effort. The loss is
L = (x_T - x_target)^2 + {vw:g} * (v_T - v_target)^2 + {penalty:g} * sum_t u_t^2,
and the reward is R = 1 / (1 + L).

## Controller Grammar
Submit one scalar expression. It is re-evaluated at every step t = 0, 1, ..., T-1 and its value (a finite number) is clipped to [-1, 1] and applied.
Variables: `x`, `v`, `t` (the step index, as a float), `x_target`, `v_target`, `horizon`, `remaining_steps` (= max(1, horizon - t)).
Operators: `+ - * / **`, unary `+ - not`, comparisons `== != < <= > >=`, `and`, `or`, and `a if cond else b`.
Functions: `abs(value)`, `min(a, ...)`, `max(a, ...)`, `pow(base, exp)`, `clip(value, lower, upper)`, `ifelse(cond, a, b)`, `lt`, `le`, `gt`, `ge`, `eq`, `ne` (two arguments each).
Numbers are plain numeric constants. Nothing else (other names, attributes, indexing, keyword arguments, strings) is accepted.
Example expressions:
- `clip(0.3 * (x_target - x) - 0.8 * v, -1, 1)`
- `0.25 * (x_target - x) + ifelse(lt(t, horizon - 2), 0.5, 1.0) * (v_target - v)`
The answer is XML, so write `<` and `<=` as `&lt;` and `&lt;=` (or use `lt` and `le`). Example submission:
<answer>
  <action_expression>
    0.25 * (x_target - x) + ifelse(lt(t, horizon - 2), 0.5, 1.0) * (v_target - v)
  </action_expression>
</answer>

## Response Contract
Reason briefly about the inferred dynamics and feedback law, then end the response with exactly one `<answer><action_expression>...</action_expression></answer>` submission.
- Do not use Markdown code fences.
- Do not write assignments or statements; submit a single expression.
- Submit exactly one candidate.
- Do not write anything after `</answer>`."""  # noqa: E501  (prompt text: one line per paragraph)
"""Our rendering of ``system.jinja2`` from its description in cod.md 9.5 (the template's text is not in the spec)."""

USER_PROMPT_TEMPLATE = (
    "Initial state: x_0 = {x0:.3f}, v_0 = {v0:.3f}.\n"
    "Target state: x_target = {xt:.3f}, v_target = {vt:.3f}.\n"
    "The rollout has {T} steps (t = 0, 1, ..., {T1}).\n"
    "\n"
    "Think briefly about the feedback law, then end with exactly one "
    "`<answer><action_expression>...</action_expression></answer>` submission."
)
PREVIOUS_POLICY_TEMPLATE = (
    "## Controller evidence from an earlier task\n"
    "\n"
    "The expression and measurements below come from an earlier, different task in the same hidden environment. "
    "They are not rollout results for the current task. Use them only as evidence about the shared hidden dynamics "
    "and controller behavior.\n"
    "\n"
    "- Earlier initial state: x0={x0}, v0={v0}\n"
    "- Earlier target: x_target={xt}, v_target={vt}\n"
    "- Earlier horizon: {T}\n"
    "- Completed that earlier rollout: yes\n"
    "- Reward on that earlier task: {R}\n"
    "- Signed terminal position residual x_T - x_target: {dx:.3f}\n"
    "- Signed terminal velocity residual v_T - v_target: {dv:.3f}\n"
    "- Main behavior: The expression completed the earlier rollout.\n"
    "\n"
    "Action expression used on that earlier task:\n"
    "\n"
    "{xml}\n"
    "\n"
    "Adapt the expression to the current initial state, target, and horizon, or submit a new one if it performed "
    "poorly."
)
FORMAT_ERROR_FEEDBACK = (
    "Invalid controller submission: expected exactly one terminal "
    "<answer><action_expression>...</action_expression></answer> block ({detail}). The environment was not "
    "executed and reward was set to -0.1."
)
RUNTIME_ERROR_FEEDBACK = (
    "Invalid policy: action failed at t={t}: {kind}: {message}. Controller evaluation stopped when the expression "
    "failed; no complete trajectory or loss was returned, and reward was forced to 0."
)
EXECUTED_SENTENCE = "The environment executed the submitted policy under the fixed hidden dynamics."
_MAX_ERROR_CHARS = 200


def hidden_dynamics(pack_seed: int) -> tuple[float, float]:
    """(a, b) of a pack: ``random.Random(pack_seed)`` draws a first, then |b|, then b's sign (stable everywhere)."""
    rng = random.Random(pack_seed)
    a = rng.uniform(*A_RANGE)
    magnitude = rng.uniform(*B_RANGE)
    return a, magnitude if rng.random() < 0.5 else -magnitude


def format_reward(reward: float) -> str:
    """Three decimals; a positive reward that would print as 0.000 is shown in ``%.3e`` form with a note."""
    text = f"{reward:.3f}"
    if reward > 0 and text == "0.000":
        return f"{reward:.3e} (nonzero; below three-decimal precision)"
    return text


@dataclass(frozen=True)
class Rollout:
    """A completed simulation: states x_0..x_T, v_0..v_T, applied controls u_0..u_{T-1}, loss and reward."""

    xs: list[float]
    vs: list[float]
    us: list[float]
    loss: float
    reward: float


class RolloutError(Exception):
    """The expression failed at step ``t`` (reward 0)."""

    def __init__(self, t: int, error: BaseException):
        super().__init__(f"t={t}: {error}")
        self.t, self.error = t, error


def simulate(
    expr: Expression,
    a: float,
    b: float,
    x0: float,
    v0: float,
    x_target: float,
    v_target: float,
    horizon: int,
    penalty: float = CONTROL_PENALTY,
) -> Rollout:
    """Run the controller for ``horizon`` steps; raises :class:`RolloutError` on the first failing step."""
    x, v = x0, v0
    xs, vs, us = [x], [v], []
    for t in range(horizon):
        env = {
            "x": x,
            "v": v,
            "t": float(t),
            "x_target": x_target,
            "v_target": v_target,
            "horizon": float(horizon),
            "remaining_steps": float(max(1, horizon - t)),
        }
        try:
            value = expr.evaluate(env)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"the expression must evaluate to a number, got {type(value).__name__}")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"the expression evaluated to a non-finite value ({value})")
        except Exception as exc:  # any failure of model-controlled arithmetic is a runtime failure, never a crash
            raise RolloutError(t, exc) from None
        u = min(1.0, max(-1.0, value))
        v = a * v + b * u
        x = x + v
        xs.append(x)
        vs.append(v)
        us.append(u)
    loss = (x - x_target) ** 2 + VELOCITY_WEIGHT * (v - v_target) ** 2 + penalty * sum(u * u for u in us)
    return Rollout(xs, vs, us, loss, 1.0 / (1.0 + loss))


def render_table(rollout: Rollout) -> str:
    """``t`` in width 3, then x_t, v_t, u_t in width 10 with three decimals, two spaces apart; u is ``--`` at T."""
    lines = [f"{'t':>3}  {'x_t':>10}  {'v_t':>10}  {'u_t':>10}"]
    for t, (x, v) in enumerate(zip(rollout.xs, rollout.vs, strict=True)):
        u = f"{rollout.us[t]:>10.3f}" if t < len(rollout.us) else f"{'--':>10}"
        lines.append(f"{t:>3}  {x:>10.3f}  {v:>10.3f}  {u}")
    return "\n".join(lines)


def parse_submission(text: str) -> Expression:
    """cod.md 9.5's parse rules in order: no code fence, one answer block, XML element, nothing after, grammar."""
    text = text[:MAX_ACTION_CHARS] if isinstance(text, str) else ""
    if "```" in text:
        raise ExpressionError("Markdown code fences are not allowed")
    content = extract_answer(text)
    if content is None:
        raise ExpressionError("<answer> and </answer> must each occur exactly once, in that order")
    if text[text.index("</answer>") + len("</answer>") :].strip():
        raise ExpressionError("text after </answer> is not allowed")
    return parse_expression(parse_answer_xml(content))


class OptimalControl(Environment):
    """One Optimal Control task: a, b from the pack seed, initial state and target from the row; one turn."""

    name: ClassVar[str] = "optimal_control"
    format_error_reward: ClassVar[float] = -0.1
    """cod.md 9.5: an unparseable submission scores -0.1 (a runtime failure of a parsed expression scores 0)."""
    include_previous_control_policy: ClassVar[bool] = False
    """Default of the row flag ``include_previous_control_policy`` (cod.md 9.5)."""

    def __init__(self, ctx: TaskContext, state: PackState):
        super().__init__(ctx, state)
        row: dict[str, Any] = ctx.row
        self.a, self.b = hidden_dynamics(ctx.pack_seed)
        self.x0, self.v0 = float(row.get("x0", 0.0)), float(row.get("v0", 0.0))
        self.x_target, self.v_target = float(row.get("x_target", 0.0)), float(row.get("v_target", 0.0))
        self.horizon = int(row.get("horizon", HORIZON))
        self.penalty = float(row.get("control_penalty", CONTROL_PENALTY))
        self.inject = bool(row.get("include_previous_control_policy", self.include_previous_control_policy))
        self.done = False
        self.expression: Expression | None = None
        self.raw_response = ""

    @property
    def max_turns(self) -> int:
        """Single turn (``max_step_num = 1``)."""
        return 1

    def system_prompt(self) -> str:
        """Dynamics, hidden coefficients, grammar and response contract; the CoD core appends hint and length."""
        return SYSTEM_PROMPT_TEMPLATE.format(vw=VELOCITY_WEIGHT, penalty=self.penalty)

    def first_observation(self) -> str:
        """The task's user prompt, plus the earlier-controller block when injection is on and one is stored."""
        prompt = USER_PROMPT_TEMPLATE.format(
            x0=self.x0, v0=self.v0, xt=self.x_target, vt=self.v_target, T=self.horizon, T1=self.horizon - 1
        )
        previous = self.state.data.get(STATE_KEY)
        if self.inject and previous is not None and self.ctx.task_idx > 0:
            prompt += "\n\n" + PREVIOUS_POLICY_TEMPLATE.format(**previous)
        return prompt

    def _finish(self, reward: float, feedback: str, format_error: bool = False) -> StepResult:
        self.done, self.turns = True, 1
        return self.finish(reward, feedback, format_error)

    def step(self, action_text: str) -> StepResult:
        """Parse, simulate, score; never raises. A second call returns the first result again."""
        if self.result is not None:
            return self.result
        self.raw_response = action_text[:MAX_ACTION_CHARS] if isinstance(action_text, str) else ""
        try:
            expr = parse_submission(self.raw_response)
        except ExpressionError as exc:
            return self._finish(self.format_error_reward, FORMAT_ERROR_FEEDBACK.format(detail=exc), format_error=True)
        self.expression = expr
        try:
            rollout = simulate(
                expr, self.a, self.b, self.x0, self.v0, self.x_target, self.v_target, self.horizon, self.penalty
            )
        except RolloutError as exc:
            message = str(exc.error)[:_MAX_ERROR_CHARS]
            feedback = RUNTIME_ERROR_FEEDBACK.format(t=exc.t, kind=type(exc.error).__name__, message=message)
            return self._finish(0.0, feedback)
        self.state.data[STATE_KEY] = {
            "x0": self.x0,
            "v0": self.v0,
            "xt": self.x_target,
            "vt": self.v_target,
            "T": self.horizon,
            "R": format_reward(rollout.reward),
            "dx": rollout.xs[-1] - self.x_target,
            "dv": rollout.vs[-1] - self.v_target,
            "xml": expr.xml(),
        }
        T = self.horizon
        summary = (
            f"Terminal state:\nx_{T} = {rollout.xs[-1]:.3f}, v_{T} = {rollout.vs[-1]:.3f}.\n"
            f"Target:\nx_target = {self.x_target:.3f}, v_target = {self.v_target:.3f}.\n"
            f"Loss and reward:\nL = {rollout.loss:.3f}, R = {format_reward(rollout.reward)}."
        )
        return self._finish(rollout.reward, f"{EXECUTED_SENTENCE}\n\n{render_table(rollout)}\n\n{summary}")

    def final_feedback(self) -> str:
        """The step's feedback (table and summary, or the error text); empty before the step."""
        return self.result.feedback if self.result is not None else ""

    def update_trajectory(self, messages: list[Message]) -> str | None:
        """cod.md 2.6 override: ``System:`` (stripped), ``Task:`` (user prompt), and the canonical submission."""
        system = next((m["content"] for m in messages if m["role"] == "system"), self.system_prompt())
        for cut in ("\n\n## Hints", "\n\n## Response length limit"):
            idx = system.find(cut)
            if idx != -1:
                system = system[:idx]
        task = next((m["content"] for m in messages if m["role"] == "user"), self.first_observation())
        if self.expression is not None:
            submitted = f"Submitted action expression:\n{self.expression.xml()}"
        else:
            raw = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), self.raw_response)
            raw = valid_utf8(raw[:MAX_ACTION_CHARS])  # the model's text: it becomes the update prompt
            submitted = f"Raw agent response; no valid action expression was extracted:\n{raw}"
        return f"System:\n{system}\n\nTask:\n{task}\n\n{submitted}"
