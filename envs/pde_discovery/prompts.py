"""PDE Discovery texts (cod.md 9.7): our rendering of ``system.jinja2`` / ``user.jinja2`` from their description, the
within-episode history compression and the update-prompt pieces (the reference's templates are not available)."""

from __future__ import annotations

from cod_envs.base import Message
from cod_envs.pde_discovery.terms import TERMS
from cod_envs.trajectory import trajectory_blocks

TASK_DESCRIPTION = (
    "Discover the nonlinear reaction term f(u) in partial_t u = partial_xx u + f(u) using active sampling, sparse "
    "regression, and scientific context."
)
NO_FEEDBACK = "No action has been taken in this task yet."
FEEDBACK_MARKER = "Action feedback:"
COMPRESSED = "[History compressed.]"
PROTOCOL_REMINDER = (
    "Protocol reminder: after your brief reasoning, end with exactly this block:\n"
    "--- Start of updated hints ---\n- Your concise, transferable hints go here.\n--- End of updated hints ---\n"
    'Do not shorten the opening delimiter to "--- Updated hints ---", omit either delimiter, or write anything after '
    "the end delimiter."
)
"""Restates ``cod_megatron.cod.hints.PDE_PROTOCOL_REMINDER`` (``cod_envs`` imports nothing from the core; a test
checks they are equal)."""

SYSTEM_TEMPLATE = """You are a scientific discovery agent. Identify the hidden reaction term f(u) of the reaction-diffusion equation
partial_t u = partial_xx u + f(u), x in [0, 1], t in [0, 1], with u(0, t) = u(1, t) = 0.

## Hidden structure
f(u) is a sparse linear combination of at most {max_terms} terms of this dictionary:
{terms}
All tasks of this session share the same f(u); each task observes a different initial condition (non-negative, zero at both ends). Sampled datasets, finalised equations and an evidence history persist across the tasks of the session.

## Observations
A sample at (x, t) returns the state u and the reaction target y (the scheme-consistent residual u_t - u_xx, equal to f(u)), with Gaussian noise of standard deviation 0.002 on u and 0.0005 on y. You never estimate derivatives yourself; regression fits y against the dictionary evaluated at the observed u.

## Actions
End every response with exactly one XML action inside <answer>...</answer>; child elements are its arguments.
- Sample points of the current task's trajectory (at most {budget} points per task in total; 0 < x < 1, 0 <= t <= 1):
<answer><sample_pde_data><point_grid><point x="0.20" t="0.10"/><point x="0.50" t="0.50"/></point_grid></sample_pde_data></answer>
- Summarize the pack's evidence (set reveal_equations to true to see earlier finalised equations):
<answer><summarize_pack_evidence><reveal_equations>false</reveal_equations></summarize_pack_evidence></answer>
- Run sparse regression on a dataset (merged_all = every dataset of the session; merged_t<a>_t<b> = tasks a..b; or one dataset id). In dictionary mode every support of 1..{max_terms} dictionary terms is scored, plus a ridge-screened support; in candidate mode the supports of 1-8 given equations are refitted and scored:
<answer><run_sparse_regression><dataset_id>merged_all</dataset_id><alpha>0.05</alpha><threshold>0.05</threshold><dictionary><term>u</term><term>u**3</term></dictionary></run_sparse_regression></answer>
<answer><run_sparse_regression><dataset_id>merged_all</dataset_id><candidate_equations><equation>1.2*u - 0.8*u**3</equation></candidate_equations></run_sparse_regression></answer>
- Finalise the task with your preferred equation (accepted only after at least one sample_pde_data and one run_sparse_regression in this task, and only if its coefficients exactly match a candidate scored by the latest regression):
<answer><update_scientific_context><preferred_equation>1.2*u - 0.8*u**3</preferred_equation><note>why</note><uncertain_terms><term>sin(u)</term></uncertain_terms></update_scientific_context></answer>

## Equation syntax
A sum of <number>*<term> with explicit numeric coefficients, for example 1.2*u - 0.8*u**3 + 0.7*(exp(u)-1). A term containing + or - must be parenthesised. An optional "f(u) =" prefix is allowed. Symbolic coefficients are invalid.

## Rules
- At most {steps} turns per task; the task ends at an accepted update_scientific_context, on a format error, or when the turns run out (reward 0).
- Argument errors return a message starting with "Error:" and cost a turn. A response without exactly one valid XML action, or with an unknown action, ends the task with reward 0.
- The reward compares your finalised coefficients with the hidden ones: 1 / (1 + relative L1 error + number of extra terms). It is never shown."""  # noqa: E501  (prompt text: one line per paragraph)


def render_system_prompt(max_terms: int, steps: int, budget: int) -> str:
    """The solve system prompt."""
    return SYSTEM_TEMPLATE.format(max_terms=max_terms, terms=", ".join(TERMS), steps=steps, budget=budget)


def render_user_prompt(
    *,
    position: int,
    pack_size: int,
    step: int,
    max_steps: int,
    budget: int,
    point_budget: int,
    datasets: list[str],
    latest_error: float | None,
    prior: str | None,
    feedback: str,
) -> str:
    """The user message of one turn (``user.jinja2`` as described in cod.md 9.7)."""
    lines = [
        f"Task {position}/{pack_size} | Step {step}/{max_steps}",
        f"Point budget: {budget}/{point_budget} remaining",
        TASK_DESCRIPTION,
        f"Datasets: {', '.join(datasets) if datasets else 'none yet'}",
        f"Latest sampled-data max error: {'n/a' if latest_error is None else f'{latest_error:.4g}'}",
    ]
    if prior:
        lines.append(f"Prior task evidence:\n{prior}")
    lines += [
        f"{FEEDBACK_MARKER} {feedback}",
        "Choose the next action.",
        "Sampling reminder: points need 0 < x < 1 and 0 <= t <= 1; the state is largest at early times.",
        "Include exactly one XML action wrapped in <answer> tags.",
    ]
    return "\n".join(lines)


def compress(messages: list[Message]) -> list[Message]:
    """Within-episode compression: with k user messages, user messages 1..k-3 keep only the text up to
    ``Action feedback:`` followed by ``[History compressed.]``."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    old = set(users[: max(0, len(users) - 3)])
    out = []
    for i, m in enumerate(messages):
        content = m["content"]
        at = content.find(FEEDBACK_MARKER)
        if i in old and at != -1:
            content = f"{content[: at + len(FEEDBACK_MARKER)]} {COMPRESSED}"
        out.append({"role": m["role"], "content": content})
    return out


def render_trajectory(messages: list[Message]) -> str:
    """The generic update trajectory (cod.md 2.6) over the compressed memory."""
    return "\n\n".join(trajectory_blocks(compress(messages)))
