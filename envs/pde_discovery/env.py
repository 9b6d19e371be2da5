"""PDE Discovery (docs/cod.md 9.7): identify the hidden reaction term f(u) of u_t = u_xx + f(u) by active sampling.

The environment seed (``pde_environment_seed`` of the row, else the pack seed) fixes the hidden sparse f and the
pack's S initial conditions; task p observes trajectory (p - 1) mod S. Up to 6 turns and 6 sampled points per task;
actions: ``sample_pde_data``, ``summarize_pack_evidence``, ``run_sparse_regression``, ``update_scientific_context``.
Sampled datasets, finalised equations and an evidence history persist across the pack in the caller-owned
:class:`PackState` (one per lifecycle, never a global). The reward uses the hidden coefficients, so the update
prompt does not show it (``update_shows_reward = False`` and the protocol reminder as ``update_prompt_suffix``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cod_envs.base import Environment, Message, PackState, StepResult, TaskContext
from cod_envs.pde_discovery import actions as act
from cod_envs.pde_discovery import numeric as nm
from cod_envs.pde_discovery import regression as reg
from cod_envs.pde_discovery.prompts import (
    NO_FEEDBACK,
    PROTOCOL_REMINDER,
    render_system_prompt,
    render_trajectory,
    render_user_prompt,
)
from cod_envs.pde_discovery.terms import reward

MAX_STEPS = 6
POINT_BUDGET = 6
STATE_KEY = "pde_discovery"
"""Where the pack's evidence lives in ``PackState.data``."""
DEFAULT_FAMILY = "physical_train"
DEFAULT_MAX_TERMS = 2
MAX_FEEDBACK_ROWS = 48


def pack_evidence(state: PackState, env_seed: int) -> dict[str, Any]:
    """This lifecycle's evidence dict (datasets, sample counter, finalisations, history), reset for another pack."""
    ev = state.data.get(STATE_KEY)
    if not isinstance(ev, dict) or ev.get("env_seed") != env_seed:
        ev = {"env_seed": env_seed, "datasets": {}, "samples": 0, "finalised": [], "history": []}
        state.data[STATE_KEY] = ev
    return ev


class PDEDiscovery(Environment):
    """One task of a PDE Discovery pack."""

    name: ClassVar[str] = "pde_discovery"
    update_shows_reward: ClassVar[bool] = False
    update_prompt_suffix: ClassVar[str] = PROTOCOL_REMINDER
    """Appended to the update user prompt after a blank line (cod.md 2.6; the runner passes it as ``suffix``)."""

    def __init__(self, ctx: TaskContext, state: PackState):
        super().__init__(ctx, state)
        row = ctx.row
        seed = row.get("pde_environment_seed")
        self.env_seed = int(seed) if seed is not None else int(ctx.pack_seed)
        self.row_seed = int(row.get("seed", 0))
        self.family = str(row.get("template_family", DEFAULT_FAMILY))
        if self.family not in nm.FAMILIES:
            self.family = DEFAULT_FAMILY
        self.max_terms = max(1, min(int(row.get("max_reaction_terms", DEFAULT_MAX_TERMS)), reg.MAX_SUPPORT_TERMS))
        index = row.get("ground_truth_template_index")
        self.template_index = int(index) if index is not None else None
        self.pack_size = max(1, int(ctx.pack_size))
        self.position = ctx.task_idx + 1
        self.trajectory = ctx.task_idx % self.pack_size
        self.evidence = pack_evidence(state, self.env_seed)
        self.budget = POINT_BUDGET
        self.sampled = self.regressed = False
        self.latest: reg.Regression | None = None
        self.accepted: reg.Candidate | None = None
        """The finalised candidate (evaluation's structure-recovery and coefficient-error metrics read it)."""
        self.feedback = NO_FEEDBACK
        self._solver: nm.LazySolution | None = None

    # ---- hidden problem (computed on first use) ---------------------------------------------------------------
    @property
    def problem(self) -> nm.HiddenProblem:
        """The pack's hidden equation and initial conditions (privileged: tests and evaluation only)."""
        return nm.hidden_problem(self.env_seed, self.family, self.max_terms, self.pack_size, self.template_index)

    def _solution(self) -> nm.LazySolution:
        if self._solver is None:
            u0 = self.problem.u0(self.trajectory, nm.grid_x(nm.DENSE[0]))
            self._solver = nm.LazySolution(u0, self.problem.coefficients())
        return self._solver

    # ---- prompts ---------------------------------------------------------------------------------------------
    @property
    def max_turns(self) -> int:
        """``max_steps`` = 6."""
        return MAX_STEPS

    def system_prompt(self) -> str:
        """Task, dictionary, actions and rules (the CoD core appends hint and length sections)."""
        return render_system_prompt(self.max_terms, MAX_STEPS, POINT_BUDGET)

    def first_observation(self) -> str:
        """The user message of step 1."""
        return self._observation()

    def _observation(self) -> str:
        best = self.latest.best.max_error if self.latest is not None and self.latest.candidates else None
        return render_user_prompt(
            position=self.position,
            pack_size=self.pack_size,
            step=self.turns + 1,
            max_steps=MAX_STEPS,
            budget=self.budget,
            point_budget=POINT_BUDGET,
            datasets=list(self.evidence["datasets"]),
            latest_error=best,
            prior=self._prior_evidence(),
            feedback=self.feedback,
        )

    def _prior_evidence(self) -> str | None:
        earlier = [d for d in self.evidence["datasets"].values() if d["task"] < self.position]
        if not earlier and not self.evidence["history"]:
            return None
        us = [p[2] for d in earlier for p in d["points"]]
        lines = [f"- Sampled points from earlier tasks: {len(us)}"]
        if us:
            lines.append(f"- u span of earlier samples: [{min(us):.4f}, {max(us):.4f}]")
        if self.evidence["history"]:
            last = self.evidence["history"][-1]
            margin = "n/a" if last["margin"] is None else f"{last['margin']:.4g}"
            lines.append(f"- Preferred sampled max error (task {last['task']}): {last['max_error']:.4g}")
            lines.append(f"- Relative margin of the last finalisation: {margin}")
        return "\n".join(lines)

    # ---- stepping --------------------------------------------------------------------------------------------
    def step(self, action_text: str) -> StepResult:
        """One action; never raises. After the end, the final result is returned again."""
        if self.result is not None:
            return self.result
        self.turns += 1
        try:
            action = act.parse_action(action_text)
        except act.FormatError as exc:
            return self._finish(0.0, str(exc), format_error=True)
        try:
            handler = getattr(self, f"_do_{action.name}")
            outcome = handler(action)
        except act.ArgumentError as exc:
            outcome = str(exc)
        if isinstance(outcome, StepResult):
            return outcome
        self.feedback = outcome
        if self.turns >= MAX_STEPS:
            text = f"{outcome}\nTurn budget exhausted without an accepted update_scientific_context; reward 0."
            return self._finish(0.0, text)
        return self.next_turn(self._observation(), outcome)

    def _finish(self, reward_value: float, feedback: str, format_error: bool = False) -> StepResult:
        self.feedback = feedback
        return self.finish(reward_value, feedback, format_error)

    def _do_sample_pde_data(self, action: act.Action) -> str:
        points = act.read_points(action)
        if len(points) > self.budget:
            raise act.ArgumentError(
                f"Error: {len(points)} points requested but only {self.budget}/{POINT_BUDGET} remain in the budget."
            )
        solution = self._solution()
        ev = self.evidence
        ev["samples"] += 1
        rng = np.random.default_rng(np.random.SeedSequence([self.row_seed, self.position, ev["samples"]]))
        rows = []
        for x, t in points:
            u, y = solution.sample(x, t)
            rows.append(
                [x, t, u + float(rng.normal(0.0, nm.NOISE_LEVEL)), y + float(rng.normal(0.0, nm.NOISE_LEVEL / 4))]
            )
        ds = f"ds_t{self.position}_{ev['samples']}"
        ev["datasets"][ds] = {"task": self.position, "points": rows}
        self.budget -= len(points)
        self.sampled = True
        xs, ts = [r[0] for r in rows], [r[1] for r in rows]
        all_u = [p[2] for d in ev["datasets"].values() for p in d["points"]]
        listed = "; ".join(f"({x:.3f}, {t:.3f}, {u:.5f}, {y:.5f})" for x, t, u, y in rows)
        return (
            f"Sampled {len(rows)} points. Dataset: {ds}. Point budget remaining: {self.budget}/{POINT_BUDGET}. "
            f"Sampling mode: point_grid. Region: x in [{min(xs):.3f}, {max(xs):.3f}], t in [{min(ts):.3f}, "
            f"{max(ts):.3f}]. mean t = {sum(ts) / len(ts):.3f}. Dataset coverage: n={len(all_u)}; "
            f"u=[{min(all_u):.4f},{max(all_u):.4f}]; x_span={max(xs) - min(xs):.3f}; t_span={max(ts) - min(ts):.3f}.\n"
            f"Points (x, t, u, y): {listed}"
        )

    def _do_summarize_pack_evidence(self, action: act.Action) -> str:
        reveal = (act.read_text(action, "reveal_equations") or "false").lower() == "true"
        ev = self.evidence
        if ev["datasets"]:
            parts = [f"{k} (task {d['task']}, {len(d['points'])} points)" for k, d in ev["datasets"].items()]
            us = [p[2] for d in ev["datasets"].values() for p in d["points"]]
            text = f"Pack datasets: {', '.join(parts)}. Total points: {len(us)}; u span [{min(us):.4f}, {max(us):.4f}]."
        else:
            text = "No data has been sampled in this pack yet."
        slots: dict[str, list[int]] = {}
        for fin in ev["finalised"]:
            slots.setdefault(fin["equation"], []).append(fin["task"])
        if not slots:
            return text + "\nNo equation has been finalised by earlier tasks of this pack."
        lines = []
        for k, (eq, tasks) in enumerate(slots.items(), start=1):
            where = ", ".join(str(t) for t in tasks)
            lines.append(f"H{k}: {'f(u) = ' + eq + ' ' if reveal else ''}(tasks {where})")
        return text + "\nFinalised equations:\n" + "\n".join(lines)

    def _dataset(self, name: str) -> np.ndarray:
        ds = self.evidence["datasets"]
        if name in ("merged_all", "merged"):
            pts = [p for d in ds.values() for p in d["points"]]
        elif name.startswith("merged_t") and "_t" in name[8:]:
            try:
                a, b = (int(v) for v in name[8:].split("_t", 1))
            except ValueError:
                raise act.ArgumentError(f"Error: unknown dataset {name[:60]!r}.") from None
            pts = [p for d in ds.values() if a <= d["task"] <= b for p in d["points"]]
        elif name in ds:
            pts = ds[name]["points"]
        else:
            raise act.ArgumentError(f"Error: unknown dataset {name[:60]!r}. Known: merged_all, {', '.join(ds)}.")
        if not pts:
            raise act.ArgumentError(f"Error: dataset {name[:60]!r} holds no points yet; sample first.")
        return np.array(pts, dtype=float)

    def _do_run_sparse_regression(self, action: act.Action) -> str:
        name = act.read_text(action, "dataset_id") or "merged_all"
        alpha = act.read_float(action, "alpha", 0.05, 0.0, 1e3)
        threshold = act.read_float(action, "threshold", 0.05, 0.0, 1e3)
        dictionary = act.read_terms(action, "dictionary", len(nm.TERMS) * 2)
        equations = act.read_equations(action)
        if not dictionary and not equations:
            raise act.ArgumentError("Error: run_sparse_regression needs a <dictionary> or <candidate_equations>.")
        points = self._dataset(name)
        result = reg.run(
            points,
            dictionary=dictionary,
            supports=[frozenset(e) for e in equations or []],
            alpha=alpha,
            threshold=threshold,
            max_terms=self.max_terms,
        )
        if not result.candidates:
            raise act.ArgumentError("Error: every candidate fell below the threshold; lower <threshold>.")
        self.latest, self.regressed = result, True
        return self._regression_feedback(name, points, result, "dictionary" if dictionary else "candidates")

    def _regression_feedback(self, name: str, points: np.ndarray, result: reg.Regression, mode: str) -> str:
        best = result.best
        other = result.closest_other(best)
        margin = result.margin(best)
        lines = [
            f"Sparse regression on {name} (n={len(points)}, mode={mode}, candidates scored={len(result.candidates)}).",
            f"Best equation: f(u) = {best.equation}",
            f"Best sampled-data max error: {best.max_error:.4g}",
            "Closest different-support candidate: "
            + (f"f(u) = {other.equation} (max error {other.max_error:.4g})" if other else "none"),
            f"Relative margin: {'n/a' if margin is None else f'{margin:.4g}'}",
            f"Condition number (selected support): {result.kappa_selected:.4g}; (full dictionary): "
            f"{result.kappa_full:.4g}; condition penalty: {result.condition_penalty:.4g}",
            "Top candidates:",
        ]
        lines += [
            f"  {k}. f(u) = {c.equation} | max error {c.max_error:.4g}"
            for k, c in enumerate(result.candidates[:5], start=1)
        ]
        lines.append("Per-point fit of the best equation (x, t, u, y, pred, abs_error):")
        lines += ["  (" + ", ".join(f"{v:.4g}" for v in row) + ")" for row in result.rows[:MAX_FEEDBACK_ROWS]]
        return "\n".join(lines)

    def _do_update_scientific_context(self, action: act.Action) -> str | StepResult:
        text = act.read_text(action, "preferred_equation", act.MAX_NOTE_CHARS)
        if not text:
            raise act.ArgumentError("Error: update_scientific_context needs <preferred_equation>.")
        coefs = act.equation(text)
        act.read_terms(action, "uncertain_terms", act.MAX_UNCERTAIN)
        if not (self.sampled and self.regressed) or self.latest is None:
            raise act.ArgumentError(
                "Error: update_scientific_context is accepted only after sample_pde_data and run_sparse_regression "
                "in the current task."
            )
        chosen = next((c for c in self.latest.candidates if c.matches(coefs)), None)
        if chosen is None:
            raise act.ArgumentError(
                "Error: the preferred equation does not match any candidate scored by the latest regression; "
                "copy a scored candidate's coefficients exactly."
            )
        other = self.latest.closest_other(chosen)
        margin = self.latest.margin(chosen)
        ev = self.evidence
        entry = {"task": self.position, "equation": chosen.equation, "max_error": chosen.max_error, "margin": margin}
        ev["finalised"].append(entry)
        ev["history"] = (ev["history"] + [entry])[-self.pack_size :]
        feedback = (
            f"Task terminated. reward_equation={chosen.equation}; sampled-data max error={chosen.max_error:.4g}; "
            f"condition penalty={self.latest.condition_penalty:.4g}; closest different-support candidate="
            f"{other.equation if other else 'none'}; relative margin={'n/a' if margin is None else f'{margin:.4g}'}."
        )
        self.accepted = chosen
        return self._finish(reward(chosen.coefs, self.problem.coefficients()), feedback)

    def metrics(self) -> dict[str, float]:
        """Evaluation extras (cod.md 9.7): ``pde_structure_recovery`` (1 if the finalised support is the true one) and
        ``pde_coefficient_relative_error`` (mean relative error on the true support when it is right, else 1)."""
        truth = self.problem.coefficients()
        got = self.accepted.coefs if self.accepted is not None else {}
        if set(got) != set(truth):
            return {"pde_structure_recovery": 0.0, "pde_coefficient_relative_error": 1.0}
        err = sum(abs(got[t] - c) / abs(c) for t, c in truth.items()) / len(truth)
        return {"pde_structure_recovery": 1.0, "pde_coefficient_relative_error": err}

    # ---- update episode --------------------------------------------------------------------------------------
    def final_feedback(self) -> str:
        """The last action's feedback (the termination line, the error, or the budget message)."""
        return self.feedback if self.result is not None else ""

    def update_trajectory(self, messages: list[Message]) -> str | None:
        """The generic trajectory rendering over the within-episode compressed memory (cod.md 9.7)."""
        return render_trajectory(messages)
