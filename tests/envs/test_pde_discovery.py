"""PDE Discovery (cod.md 9.7): rows, families, solver, hidden equation, actions, pack evidence, fuzzing, hint use."""

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cod_envs.base import PackState, TaskContext
from cod_envs.pde_discovery import ENV, POLICIES, STATE_KEY, PDEDiscovery, make_rows
from cod_envs.pde_discovery import numeric as nm
from cod_envs.pde_discovery import policies as pol
from cod_envs.pde_discovery.data import main as data_main
from cod_envs.pde_discovery.families import EVAL, TRAIN, disjointness_violations, validate
from cod_envs.pde_discovery.prompts import COMPRESSED, PROTOCOL_REMINDER
from cod_envs.pde_discovery.terms import (
    TERMS,
    EquationError,
    columns,
    format_equation,
    parse_equation,
    reward,
)
from cod_megatron.cod import hints
from cod_megatron.eval.stats import gap_stats
from cod_megatron.rollout.text_play import run_text_lifecycle
from tests.envs.domain_checks import cli_output_is_reproducible, disjoint_splits, read_jsonl, rows_are_reproducible
from tests.envs.hint_use import hint_use, lifecycles

ROWS = make_rows(8, seed=0)
MEGA = "x" * (1 << 20)


def make_env(row=ROWS[0], pack_seed=7, task_idx=0, state=None, pack_size=4):
    ctx = TaskContext(row=row, pack_seed=pack_seed, task_idx=task_idx, pack_size=pack_size)
    return PDEDiscovery(ctx, state if state is not None else PackState())


def ans(xml):
    return f"Reasoning.\n<answer>{xml}</answer>"


def sample(*points):
    body = "".join(f'<point x="{x}" t="{t}"/>' for x, t in points)
    return ans(f"<sample_pde_data><point_grid>{body}</point_grid></sample_pde_data>")


def regress(terms=TERMS, dataset="merged_all", extra=""):
    body = "".join(f"<term>{t}</term>" for t in terms)
    return ans(
        f"<run_sparse_regression><dataset_id>{dataset}</dataset_id><dictionary>{body}</dictionary>{extra}"
        "</run_sparse_regression>"
    )


def update(eq):
    return ans(f"<update_scientific_context><preferred_equation>{eq}</preferred_equation></update_scientific_context>")


SIX = [(0.15, 0.0), (0.3, 0.0), (0.42, 0.0), (0.58, 0.0), (0.7, 0.0), (0.85, 0.0)]


# ---- data and families -----------------------------------------------------------------------------------------
def test_rows_are_deterministic_disjoint_prefix_stable_and_stratified(tmp_path):
    rows_are_reproducible(make_rows, 40, 10)
    train, test = disjoint_splits(make_rows, sizes=(300, 400))
    assert all(r["max_reaction_terms"] == 2 and r["template_family"] == "physical_train" for r in train)
    for k in range(50):
        pack = test[8 * k : 8 * k + 8]
        assert {r["ground_truth_template_index"] for r in pack} == {k % 25}
        assert {r["pde_environment_seed"] for r in pack} == {pack[0]["seed"]} and pack[0]["pack_index"] == k
    args = ["--train-size", "20", "--test-size", "16", "--seed", "5"]
    out = cli_output_is_reproducible(data_main, args, tmp_path)
    assert read_jsonl(out / "test.jsonl") == make_rows(16, 5, "test")


def test_families_are_valid_and_disjoint():
    validate(TRAIN)
    validate(EVAL)
    assert len(EVAL) == 25 and all(1 <= len(t) <= 2 for t in TRAIN) and max(len(t) for t in EVAL) == 3
    assert disjointness_violations(TRAIN, EVAL) == []
    assert disjointness_violations(TRAIN, ((("u**3", -1), ("u**2", 1)),)) != []  # Zeldovich is a train template
    assert disjointness_violations(TRAIN, ((("u", -1),),)) != []  # unsigned ("u", 0) covers both signs


# ---- numerics --------------------------------------------------------------------------------------------------
def test_solver_matches_the_known_solution_of_the_linear_equation():
    """f(u) = c u, u0 = A sin(pi x): exact u = A exp((c - pi^2) t) sin(pi x); the scheme's own factor per step is
    (1 + dt c) / (1 + dt lambda_h) with lambda_h = 4/h^2 sin^2(pi h / 2)."""
    c, a = 1.5, 1.2
    x = nm.grid_x(257)
    u = nm.solve(a * np.sin(np.pi * x), lambda v: c * v)
    h, dt = 1 / 256, 1 / 2000
    lam = 4 / h**2 * np.sin(np.pi * h / 2) ** 2
    for n in (1, 500, 2000):
        discrete = a * ((1 + dt * c) / (1 + dt * lam)) ** n * np.sin(np.pi * x)
        exact = a * np.exp((c - np.pi**2) * n * dt) * np.sin(np.pi * x)
        assert np.abs(u[n] - discrete).max() < 1e-10
        assert np.abs(u[n] - exact).max() / np.abs(exact).max() < 0.03 * n * dt + 1e-3  # O(dt) in time
    assert u[:, 0].tolist() == [0.0] * 2001 and u[:, -1].tolist() == [0.0] * 2001
    y = nm.residual_field(u, {"u": c})
    assert np.abs(y[:, 1:-1] - c * u[:, 1:-1]).max() < 1e-8  # scheme-consistent residual = f(u^n)


def test_hidden_problem_is_deterministic_shared_and_in_range():
    signs = set()
    for seed in range(40):
        p = nm.hidden_problem(seed, "physical_train", 2, 4)
        assert p == nm.hidden_problem(seed, "physical_train", 2, 4) and p.stable
        template = TRAIN[p.template_index]
        assert [t for t, _ in template] == [t for t, _ in p.coefs]
        for (_term, sign), (_, c) in zip(template, p.coefs, strict=True):
            assert 0.5 <= abs(c) <= 2.0 and round(c, 2) == c and (sign == 0 or np.sign(c) == sign)
            signs.add(np.sign(c))
        a_max = nm.amplitude_bound("physical_train", 2)
        assert sorted(int(a // (a_max / 4)) for a in p.amplitudes) == [0, 1, 2, 3]  # one amplitude per stratum
    assert signs == {1.0, -1.0}
    envs = [make_env(row, pack_seed=11, task_idx=j) for j, row in enumerate(ROWS[:4])]
    assert len({e.problem for e in envs}) == 1 and [e.trajectory for e in envs] == [0, 1, 2, 3]
    row = make_rows(8, 0, "test")[3]
    env = make_env(row, pack_seed=999, pack_size=8)
    assert env.env_seed == row["pde_environment_seed"] and env.problem.template_index == 0 and env.max_terms == 3
    u0 = env.problem.u0(2, nm.grid_x(257))
    assert u0[0] == u0[-1] == 0 and u0.min() >= 0 and u0.max() == pytest.approx(env.problem.amplitudes[2])


# ---- equations and reward --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,want",
    [
        ("1.2*u - 0.8*u**3", {"u": 1.2, "u**3": -0.8}),
        ("f(u) = -0.5*sin(2*u) + 0.7*(exp(u)-1)", {"sin(2*u)": -0.5, "exp(u)-1": 0.7}),
        ("2e-1*(u/(1+u+u**2)) + 1*(u)", {"u/(1+u+u**2)": 0.2, "u": 1.0}),
        ("1*u + 1*u - 2*u + 0.3*tanh(u)", {"tanh(u)": 0.3}),
        ("0.5 * u**4 / (1 + u**4)".replace("0.5 * ", "0.5*(") + ")", {"u**4/(1+u**4)": 0.5}),
    ],
)
def test_equation_parser_accepts(text, want):
    assert parse_equation(text) == pytest.approx(want)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "u - u**3",
        "c1*u",
        "a*u + 1*u**3",
        "0.7*exp(u)-1",
        "1.2*u**6",
        "1.2*u*u",
        "1.2*u -",
        "1*u; 2*u",
        "__import__('os')*u",
        "1e400*u",
        "1.2*u " * 40,
        "x" * 3000,
        "1.2*(u/(1+u**2)",
        "1.2*cos(u)",
    ],
)
def test_equation_parser_rejects(text):
    with pytest.raises(EquationError):
        parse_equation(text)


def test_format_roundtrip_and_reward():
    coefs = {"u": 1.25, "u**3": -0.8, "exp(u)-1": 0.7, "u/(1+u**2)": -2.0}
    assert format_equation(coefs) == "1.25*u - 0.8*u**3 + 0.7*(exp(u)-1) - 2*(u/(1+u**2))"
    assert parse_equation(format_equation(coefs)) == coefs
    truth = {"u": 1.0, "u**3": -1.0}
    assert reward(truth, truth) == 1.0
    assert reward({"u": 1.1, "u**3": -1.0}, truth) == pytest.approx(1 / 1.05)
    assert reward({"u": 1.0, "u**3": -1.0, "sin(u)": 0.1}, truth) == pytest.approx(1 / (1 + 0.05 + 1))
    assert reward({}, truth) == pytest.approx(0.5)
    u = np.linspace(-3, 3, 7)
    assert np.isfinite(columns(u)).all() and columns(u).shape == (7, 15)


# ---- actions ---------------------------------------------------------------------------------------------------
def test_prompts_and_a_full_successful_task():
    env = make_env()
    assert "at most 2 terms of this dictionary" in env.system_prompt() and env.max_turns == 6
    obs = env.first_observation()
    assert obs.startswith("Task 1/4 | Step 1/6\nPoint budget: 6/6 remaining\nDiscover the nonlinear reaction term")
    assert "Action feedback: No action has been taken in this task yet.\nChoose the next action." in obs
    assert obs.endswith("Include exactly one XML action wrapped in <answer> tags.")
    r = env.step(sample(*SIX[:4]))
    assert not r.done and r.feedback.startswith(
        "Sampled 4 points. Dataset: ds_t1_1. Point budget remaining: 2/6. Sampling mode: point_grid. Region: x in"
    )
    assert r.observation.startswith("Task 1/4 | Step 2/6\nPoint budget: 2/6 remaining")
    r = env.step(sample(*SIX))
    assert r.feedback.startswith("Error: 6 points requested but only 2/6 remain") and env.budget == 2
    r = env.step(update("1*u"))
    assert r.feedback.startswith("Error: update_scientific_context is accepted only after")
    r = env.step(regress())
    assert (
        r.feedback.startswith("Sparse regression on merged_all (n=4, mode=dictionary")
        and "Top candidates:" in r.feedback
    )
    best = pol.candidates(r.feedback)[0][0]
    assert env.step(update("1.23456*u")).feedback.startswith("Error: the preferred equation does not match")
    r = env.step(update(best))
    assert r.done and not r.format_error and r.turns_used == 6
    assert r.reward == pytest.approx(reward(parse_equation(best), env.problem.coefficients()))
    assert r.feedback.startswith(f"Task terminated. reward_equation={best}; sampled-data max error=")
    assert env.step(sample(*SIX)) == r and env.final_feedback() == r.feedback
    m = env.metrics()
    assert m["pde_structure_recovery"] in (0.0, 1.0) and m["pde_coefficient_relative_error"] >= 0.0
    assert make_env().metrics() == {"pde_structure_recovery": 0.0, "pde_coefficient_relative_error": 1.0}


def test_samples_are_deterministic_noisy_observations_of_the_solution():
    env1, env2 = make_env(), make_env()
    r1, r2 = env1.step(sample(*SIX)), env2.step(sample(*SIX))
    assert r1 == r2
    pts = env1.evidence["datasets"]["ds_t1_1"]["points"]
    full = nm.solve(env1.problem.u0(0, nm.grid_x(257)), lambda v: nm.evaluate(env1.problem.coefficients(), v))
    y_full = nm.residual_field(full, env1.problem.coefficients())
    for x, t, u, y in pts:
        assert abs(u - nm.bilinear(full, x, t)) < 5 * 0.002 and abs(y - nm.bilinear(y_full, x, t)) < 5 * 0.0005
    lazy = env1._solution()
    for x, t in [(0.5, 0.3), (0.9, 1.0), (0.01, 0.9995)]:  # the lazy stepping gives the full solve's values
        assert lazy.sample(x, t) == pytest.approx((nm.bilinear(full, x, t), nm.bilinear(y_full, x, t)), abs=1e-12)
    other = make_env(ROWS[1])  # another row seed: other noise draws, same pack
    other.step(sample(*SIX))
    assert other.evidence["datasets"]["ds_t1_1"]["points"] != pts


def test_turn_budget_runs_out_with_reward_zero():
    env = make_env()
    for _ in range(5):
        assert not env.step(ans("<summarize_pack_evidence/>")).done
    r = env.step(ans("<summarize_pack_evidence/>"))
    assert r.done and r.reward == 0.0 and not r.format_error and "Turn budget exhausted" in r.feedback


INVALID = "Invalid format: expected exactly one XML action wrapped in <answer>...</answer>. Game over."


@pytest.mark.parametrize(
    "text,feedback",
    [
        ("no answer", INVALID),
        (ans("<sample_pde_data/>") + "trailing", INVALID),
        (ans("<a/><b/>"), INVALID),
        (ans("text only"), INVALID),
        (ans("<!DOCTYPE x [<!ENTITY a 'aaaa'>]><sample_pde_data>&a;</sample_pde_data>"), INVALID),
        (ans("<sample_pde_data>"), INVALID),
        ("<answer><x/></answer><answer><x/></answer>", INVALID),
        ("<answer>" + MEGA + "</answer>", INVALID),
        (ans("<launch_missiles/>"), "Invalid action: unknown action 'launch_missiles'. Game over."),
        (
            ans("<sample_pde_data>0.2,0.1</sample_pde_data>"),
            "Invalid format: the arguments of <sample_pde_data> must be child elements. Game over.",
        ),
    ],
)
def test_format_errors_end_the_task_with_zero(text, feedback):
    env = make_env()
    r = env.step(text)
    assert r.done and r.format_error and r.reward == 0.0 and r.feedback == feedback


@pytest.mark.parametrize(
    "xml,start",
    [
        ("<sample_pde_data><point_grid/></sample_pde_data>", "Error: sample_pde_data needs <point_grid>"),
        ('<sample_pde_data><point_grid><point x="1.0" t="0.1"/></point_grid></sample_pde_data>', "Error: point"),
        ('<sample_pde_data><point_grid><point x="a" t="0.1"/></point_grid></sample_pde_data>', "Error: every point"),
        ("<run_sparse_regression><dataset_id>merged_all</dataset_id></run_sparse_regression>", "Error: run_sparse"),
        ("<run_sparse_regression><dictionary><term>u</term></dictionary></run_sparse_regression>", "Error: dataset"),
        (
            "<run_sparse_regression><dictionary><term>cos(u)</term></dictionary></run_sparse_regression>",
            "Error: unknown dictionary term",
        ),
        (
            "<run_sparse_regression><dataset_id>ds_t9_9</dataset_id><dictionary><term>u</term></dictionary>"
            "</run_sparse_regression>",
            "Error: unknown dataset",
        ),
        (
            "<run_sparse_regression><alpha>nan</alpha><dictionary><term>u</term></dictionary></run_sparse_regression>",
            "Error: <alpha> must lie in",
        ),
        (
            "<run_sparse_regression><candidate_equations><equation>c1*u</equation></candidate_equations>"
            "</run_sparse_regression>",
            "Error: invalid equation 'c1*u': symbolic coefficient",
        ),
        ("<update_scientific_context/>", "Error: update_scientific_context needs <preferred_equation>"),
        (
            "<update_scientific_context><preferred_equation>a*u</preferred_equation></update_scientific_context>",
            "Error: invalid equation",
        ),
    ],
)
def test_argument_errors_continue(xml, start):
    env = make_env()
    r = env.step(ans(xml))
    assert not r.done and not r.format_error and r.feedback.startswith(start), r.feedback
    assert r.observation.startswith("Task 1/4 | Step 2/6") and f"Action feedback: {r.feedback}" in r.observation


# ---- pack evidence ---------------------------------------------------------------------------------------------
def test_evidence_persists_per_lifecycle_and_interleaved_lifecycles_stay_apart():
    a, b = PackState(), PackState()
    ea, eb = make_env(state=a), make_env(state=b)
    ea.step(sample(*SIX[:3]))
    eb.step(sample(*SIX))
    eb.step(sample(*SIX))  # over budget: nothing stored
    assert list(a.data[STATE_KEY]["datasets"]) == ["ds_t1_1"] and list(b.data[STATE_KEY]["datasets"]) == ["ds_t1_1"]
    assert len(a.data[STATE_KEY]["datasets"]["ds_t1_1"]["points"]) == 3
    assert len(b.data[STATE_KEY]["datasets"]["ds_t1_1"]["points"]) == 6
    r = ea.step(regress())
    ea.step(update(pol.candidates(r.feedback)[0][0]))
    a1, b1 = make_env(ROWS[1], task_idx=1, state=a), make_env(ROWS[1], task_idx=1, state=b)
    assert "Prior task evidence:\n- Sampled points from earlier tasks: 3" in a1.first_observation()
    assert "Prior task evidence:\n- Sampled points from earlier tasks: 6" in b1.first_observation()
    assert "Preferred sampled max error" in a1.first_observation()
    assert "Preferred sampled max error" not in b1.first_observation()
    a1.step(sample(*SIX))
    assert list(a.data[STATE_KEY]["datasets"]) == ["ds_t1_1", "ds_t2_2"]
    summary = a1.step(ans("<summarize_pack_evidence/>")).feedback
    assert "H1: (tasks 1)" in summary and "f(u) =" not in summary
    revealed = a1.step(
        ans("<summarize_pack_evidence><reveal_equations>true</reveal_equations></summarize_pack_evidence>")
    ).feedback
    assert "H1: f(u) = " in revealed
    assert "No equation has been finalised" in b1.step(ans("<summarize_pack_evidence/>")).feedback
    r = a1.step(regress(dataset="merged_t2_t2"))
    assert "(n=6," in r.feedback
    assert "(n=9," in a1.step(regress()).feedback
    assert make_env(ROWS[1], pack_seed=8, task_idx=1, state=a).evidence["datasets"] == {}  # another pack: reset


def test_update_prompt_hides_the_reward_and_compresses_old_turns():
    lc = run_text_lifecycle(ENV, ROWS[:2], pack_seed=3, policy=pol.oracle(0))
    prompt = lc.episodes[1].prompt[-1]["content"]
    assert "\nReward:" not in prompt and "Environment feedback: Task terminated. reward_equation=" in prompt
    assert prompt.count(f"Action feedback: {COMPRESSED}") == 1  # 4 turns: user message 1 is compressed
    assert PROTOCOL_REMINDER == hints.PDE_PROTOCOL_REMINDER and ENV.update_prompt_suffix == PROTOCOL_REMINDER
    assert ENV.update_shows_reward is False and lc.update_rewards == [0.0]
    assert pol.parse_hint(lc.hints[1]) is not None


# ---- fuzzing ---------------------------------------------------------------------------------------------------
_SOLVER = make_env()._solution()
TOKENS = [
    "<answer>",
    "</answer>",
    "<sample_pde_data>",
    "</sample_pde_data>",
    "<point_grid>",
    "</point_grid>",
    '<point x="0.5" t="0.1"/>',
    '<point x="2" t="-1"/>',
    "<run_sparse_regression>",
    "</run_sparse_regression>",
    "<dictionary>",
    "</dictionary>",
    "<term>u</term>",
    "<term>u**3</term>",
    "<update_scientific_context>",
    "</update_scientific_context>",
    "<preferred_equation>",
    "</preferred_equation>",
    "1.2*u",
    " - 0.8*u**3",
    "<summarize_pack_evidence/>",
    "<candidate_equations>",
    "</candidate_equations>",
    "<equation>",
    "</equation>",
    "&lt;",
    "&",
    "<!--",
    "x",
    " ",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.text(max_size=200), st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)),
        min_size=1,
        max_size=7,
    )
)
def test_step_never_raises_on_any_text(texts):
    env = make_env()
    env._solver = _SOLVER  # the same trajectory, stepped once
    t0 = time.perf_counter()
    for text in texts:
        r = env.step(text)
        assert isinstance(r.feedback, str) and 0.0 <= r.reward <= 1.0
        if r.done:
            break
    assert time.perf_counter() - t0 < 2.0
    assert env.turns <= 6 and isinstance(env.update_trajectory([{"role": "user", "content": "x"}]), str)


# ---- hint use --------------------------------------------------------------------------------------------------
def test_curves_oracle_rises_and_hint_blind_rises_through_pack_evidence():
    """Pack evidence persists in the environment, so both curves rise; the oracle must not fall below hint-blind."""
    rows = make_rows(4 * 24, seed=0)
    means, (lo, _) = hint_use(ENV, rows, pol.oracle, 24)
    blind, (blo, _) = hint_use(ENV, rows, pol.hint_blind, 24)
    assert lo > 0.1 and blo > 0.1, (means, blind)
    assert means[0] == blind[0] and sum(means[1:]) >= sum(blind[1:]) - 0.15, (means, blind)
    random_rewards = [lc.solve_rewards for lc in lifecycles(ENV, rows, POLICIES["random"], 4)]
    assert max(map(max, random_rewards)) < min(means[1:])
    assert gap_stats(random_rewards)[0] <= 0.1


@pytest.mark.parametrize("alpha", ["0", "0.0", "1e-300"])
@pytest.mark.parametrize("points", [[(0.5, 0.5)], [(0.999999, 1.0), (0.999999, 1.0)]])
def test_singular_ridge_screening_is_no_exception(alpha, points):
    """Issue 13: ``<alpha>0</alpha>`` on fewer points than terms made ``np.linalg.solve`` raise LinAlgError."""
    for threshold in ("0", "1000"):
        env = make_env()
        env.step(sample(*points))
        res = env.step(regress(extra=f"<alpha>{alpha}</alpha><threshold>{threshold}</threshold>"))
        assert not res.done and not res.format_error and res.reward == 0.0
        assert res.feedback.startswith(("Sparse regression on merged_all", "Error: every candidate"))
