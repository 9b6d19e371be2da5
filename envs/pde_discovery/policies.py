"""Scripted PDE Discovery policies (cod.md 9.0, 9.7) that read only the text a model would see.

Solve strategy (oracle and hint-blind alike): sample 6 points at early times spread over x, run a dictionary
regression on ``merged_all`` (every dataset of the pack, an environment-side memory), re-score the best supports in
candidate mode, and finalise one scored candidate. The oracle also adds the equation its hint carries to the
candidate re-scoring and keeps the hinted support unless another support fits clearly better (a parsimony prior that
earlier tasks earned); its updates record the finalised equation, its fit error and how many tasks confirmed it. The
hint-blind policy ignores the hint, writes ``none``, and always finalises the lowest-error candidate. No privileged
environment state is read.
"""

from __future__ import annotations

import random
import re

from cod_envs import scripted
from cod_envs.base import Message, TextPolicy
from cod_envs.pde_discovery.terms import TERMS, EquationError, parse_equation

SAMPLE_X = (0.15, 0.3, 0.42, 0.58, 0.7, 0.85)
KEEP_HINTED = 1.2
"""The hinted support is kept while its max error is within this factor of the best candidate's."""

_CANDIDATE_RE = re.compile(r"^\s+\d+\. f\(u\) = (.+?) \| max error (\S+)$", re.M)
_HINT_RE = re.compile(r"Preferred equation so far: f\(u\) = (.+?) \(confirmed by (\d+) task")
_FINAL_RE = re.compile(r"Task terminated\. reward_equation=(.+?); sampled-data max error=(\S+?);")


def _answer(xml: str, note: str) -> str:
    return f"{note}\n<answer>{xml}</answer>"


def sample_action(xs: tuple[float, ...] = SAMPLE_X, t: float = 0.0) -> str:
    """Sample the given x positions at time t."""
    points = "".join(f'<point x="{x:.3f}" t="{t:.3f}"/>' for x in xs)
    return _answer(f"<sample_pde_data><point_grid>{points}</point_grid></sample_pde_data>", "Sampling early times.")


def regression_action(equations: list[str] | None = None) -> str:
    """Dictionary mode on merged_all (no equations), or candidate mode with the given equations."""
    if equations:
        body = "".join(f"<equation>{e}</equation>" for e in dict.fromkeys(equations))
        args = f"<candidate_equations>{body}</candidate_equations>"
    else:
        args = "<dictionary>" + "".join(f"<term>{t}</term>" for t in TERMS) + "</dictionary>"
    xml = f"<run_sparse_regression><dataset_id>merged_all</dataset_id>{args}</run_sparse_regression>"
    return _answer(xml, "Regressing on all pack data.")


def update_action(equation: str) -> str:
    """Finalise ``equation``."""
    xml = f"<update_scientific_context><preferred_equation>{equation}</preferred_equation></update_scientific_context>"
    return _answer(xml, "Finalising the preferred equation.")


def candidates(feedback: str) -> list[tuple[str, float]]:
    """(equation, max error) of the listed top candidates, best first."""
    return [(eq, float(err)) for eq, err in _CANDIDATE_RE.findall(feedback)]


def parse_hint(text: str) -> tuple[str, int] | None:
    """(equation, confirmations) from a hint written by :func:`_update`."""
    m = _HINT_RE.search(text)
    return (m.group(1), int(m.group(2))) if m else None


def _support(equation: str) -> frozenset[str]:
    try:
        return frozenset(parse_equation(equation))
    except EquationError:
        return frozenset()


_MAX_TERMS_RE = re.compile(r"at most (\d+) terms of this dictionary")


def _solve(messages: list[Message], hinted: tuple[str, int] | None) -> str:
    """The next action from the number of actions taken so far and the latest feedback; candidates with more terms
    than the system prompt allows are never chosen."""
    turn = sum(1 for m in messages if m["role"] == "assistant")
    last = messages[-1]["content"] if messages else ""
    m = _MAX_TERMS_RE.search(messages[0]["content"]) if messages else None
    limit = int(m.group(1)) if m else len(TERMS)
    listed = [(eq, err) for eq, err in candidates(last) if 0 < len(_support(eq)) <= limit]
    if turn == 0:
        return sample_action()
    if turn == 1:
        return regression_action()
    if turn == 2 and listed:
        pool = [eq for eq, _ in listed[:3]] + ([hinted[0]] if hinted else [])
        return regression_action(pool)
    if listed:
        best_eq, best_err = listed[0]
        choice = best_eq
        if hinted:
            want = _support(hinted[0])
            match = next(((eq, err) for eq, err in listed if _support(eq) == want), None)
            if match is not None and match[1] <= KEEP_HINTED * best_err:
                choice = match[0]
        return update_action(choice)
    return regression_action()


def _update(messages: list[Message]) -> str:
    """Record the finalised equation; confirmations count the tasks that finalised the same support."""
    prompt = messages[-1]["content"]
    previous = parse_hint(scripted.previous_hints(prompt))
    finals = _FINAL_RE.findall(prompt[prompt.find(scripted.TRAJECTORY) :])
    if finals:
        eq, err = finals[-1]
        same = previous is not None and _support(previous[0]) == _support(eq)
        count = previous[1] + 1 if same else 1
        if previous is not None and not same and previous[1] > 1:
            eq, count, err = previous[0], previous[1] - 1, "n/a"
        body = f"- Preferred equation so far: f(u) = {eq} (confirmed by {count} task(s); sampled max error {err})."
    elif previous is not None:
        body = f"- Preferred equation so far: f(u) = {previous[0]} (confirmed by {previous[1]} task(s))."
    else:
        body = "- No equation finalised yet."
    body += (
        "\n- Strategy: sample 6 points at t = 0 spread over x, regress on merged_all with the full dictionary, then "
        "re-score the top candidates plus the preferred equation and keep its support unless another fits clearly "
        "better."
    )
    return f"Recording the finalised equation.\n{scripted.delimited_hint(body)}"


def oracle(seed: int = 0) -> TextPolicy:
    """Uses the hinted equation as a support prior; updates record the finalised equation."""
    return scripted.scripted_policy(
        lambda messages: _solve(messages, parse_hint(scripted.hint_section(scripted.system_prompt_of(messages)))),
        _update,
    )


def hint_blind(seed: int = 0) -> TextPolicy:
    """The same solve strategy without a hint; updates write ``none``."""
    return scripted.scripted_policy(lambda messages: _solve(messages, None))


def random_policy(seed: int = 0) -> TextPolicy:
    """Random (often invalid) actions: random points, dictionaries, equations and stray text; updates write ``none``."""
    rng = random.Random(f"pde_discovery.random_policy.{seed}")

    def solve(messages: list[Message]) -> str:
        roll = rng.random()
        if roll < 0.3:
            xs = tuple(rng.uniform(-0.1, 1.1) for _ in range(rng.randint(1, 7)))
            return sample_action(xs, rng.uniform(0, 1))
        if roll < 0.55:
            terms = rng.sample(TERMS, rng.randint(1, 5))
            body = "".join(f"<term>{t}</term>" for t in terms)
            return _answer(f"<run_sparse_regression><dictionary>{body}</dictionary></run_sparse_regression>", "Try.")
        if roll < 0.8:
            terms = rng.sample(TERMS, rng.randint(1, 3))
            eq = " + ".join(f"{rng.uniform(-2, 2):.2f}*({t})" for t in terms)
            return update_action(eq)
        if roll < 0.9:
            return _answer("<summarize_pack_evidence/>", "Looking at the evidence.")
        return rng.choice(["I am not sure.", "<answer><guess/></answer>", "<answer>u**2</answer>"])

    return scripted.scripted_policy(solve)


POLICIES = scripted.policy_table(oracle, hint_blind, random_policy)
