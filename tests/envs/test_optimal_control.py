"""Optimal Control (cod.md 9.5): whitelisted controller grammar, hostile inputs, simulation, pack state, hint use."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cod_envs.base import PackState, TaskContext
from cod_envs.optimal_control import ENV, POLICIES, make_rows
from cod_envs.optimal_control import policies as pol
from cod_envs.optimal_control.data import main as data_main
from cod_envs.optimal_control.env import (
    STATE_KEY,
    OptimalControl,
    format_reward,
    hidden_dynamics,
    simulate,
)
from cod_envs.optimal_control.expr import (
    MAX_EXPR_CHARS,
    ExpressionError,
    parse_answer_xml,
    parse_expression,
)
from cod_megatron.cod import hints
from tests.envs.domain_checks import (
    cli_output_is_reproducible,
    disjoint_splits,
    policies_match_the_cod_core,
    read_jsonl,
    rows_are_reproducible,
)
from tests.envs.hint_use import hint_use, lifecycles, oracle_rises_and_hint_blind_is_flat

ROWS = make_rows(8, seed=0)
ROW = ROWS[0]
MEGA = "x" * (1 << 20)
STATE = {"x": 1.0, "v": -0.5, "t": 3.0, "x_target": 4.0, "v_target": 0.0, "horizon": 12.0, "remaining_steps": 9.0}


def make_env(row=ROW, pack_seed=7, task_idx=0, state=None, **overrides):
    ctx = TaskContext(row={**row, **overrides}, pack_seed=pack_seed, task_idx=task_idx, pack_size=4)
    return OptimalControl(ctx, state if state is not None else PackState())


def submit(expr: str) -> str:
    return f"Reasoning.\n<answer>\n  <action_expression>\n    {expr}\n  </action_expression>\n</answer>\n"


# ---- data and hidden structure ---------------------------------------------------------------------------------
def test_rows_are_deterministic_disjoint_prefix_stable_and_in_range():
    rows_are_reproducible(make_rows, 40, 10)
    train, test = disjoint_splits(make_rows)
    for row in train + test:
        assert -2 <= row["x0"] <= 2 and -1.5 <= row["v0"] <= 1.5 and -8 <= row["x_target"] <= 8
        assert row["v_target"] == 0.0 and row["horizon"] == 12 and row["control_penalty"] == 0.03


def test_cli_writes_identical_jsonl_twice(tmp_path):
    args = ["--train-size", "20", "--test-size", "5", "--seed", "5"]
    train = read_jsonl(cli_output_is_reproducible(data_main, args, tmp_path) / "train.jsonl")
    assert train == make_rows(20, 5, "train")


def test_hidden_dynamics_ranges_and_pack_sharing():
    signs = set()
    for seed in range(300):
        a, b = hidden_dynamics(seed)
        assert 0.55 <= a <= 1.20 and 0.35 <= abs(b) <= 1.5
        signs.add(b > 0)
    assert signs == {True, False}
    envs = [make_env(row, pack_seed=11, task_idx=j) for j, row in enumerate(ROWS[:4])]  # G rollouts / tasks
    assert len({(e.a, e.b) for e in envs}) == 1 and (envs[0].a, envs[0].b) == hidden_dynamics(11)
    assert hidden_dynamics(11) != hidden_dynamics(12)


def test_same_inputs_give_same_prompts_observations_and_rewards():
    text = submit("0.3 * (x_target - x) - 0.8 * v")
    e1, e2 = make_env(), make_env()
    assert e1.system_prompt() == e2.system_prompt() and e1.first_observation() == e2.first_observation()
    r1, r2 = e1.step(text), e2.step(text)
    assert r1 == r2 and e1.update_trajectory([]) == e2.update_trajectory([])


# ---- texts, simulation, rewards -------------------------------------------------------------------------------
def test_prompt_feedback_and_reward_follow_the_spec():
    env = make_env()
    obs = env.first_observation()
    assert obs.startswith(f"Initial state: x_0 = {ROW['x0']:.3f}, v_0 = {ROW['v0']:.3f}.\nTarget state: x_target = ")
    assert "The rollout has 12 steps (t = 0, 1, ..., 11).\n\nThink briefly" in obs and "Controller evidence" not in obs
    assert "may be positive or negative, so infer its sign" in env.system_prompt() and env.max_turns == 1
    res = env.step(submit("0.3 * (x_target - x) - 0.8 * v"))
    assert res.done and not res.format_error and res.turns_used == 1
    sentence, table, summary = res.feedback.split("\n\n")
    assert sentence == "The environment executed the submitted policy under the fixed hidden dynamics."
    lines = table.split("\n")
    assert lines[0] == "  t         x_t         v_t         u_t" and len(lines) == 14
    assert lines[-1].startswith(" 12") and lines[-1].endswith("        --")
    # independent re-simulation with the known a, b
    x, v, cost = ROW["x0"], ROW["v0"], 0.0
    for _ in range(12):
        u = max(-1.0, min(1.0, 0.3 * (ROW["x_target"] - x) - 0.8 * v))
        v = env.a * v + env.b * u
        x += v
        cost += u * u
    loss = (x - ROW["x_target"]) ** 2 + 2 * v**2 + 0.03 * cost
    assert res.reward == pytest.approx(1 / (1 + loss), rel=1e-12)
    assert summary.endswith(f"L = {loss:.3f}, R = {format_reward(1 / (1 + loss))}.")
    assert env.step("anything") == res and env.final_feedback() == res.feedback  # stepping again is harmless
    assert format_reward(1e-5) == "1.000e-05 (nonzero; below three-decimal precision)" and format_reward(0.0) == "0.000"


@pytest.mark.parametrize(
    "expr,kind",
    [
        ("1 / (x - x)", "ZeroDivisionError"),
        ("x > 0", "TypeError"),
        ("9**9**9", "OverflowError"),
        ("pow(10, 400)", "OverflowError"),
        ("(-8) ** 0.5", "ValueError"),
        (" * ".join(["1e12"] * 26), "ValueError"),
        ("ifelse(lt(t, 5), 1, 1 / 0)", "ZeroDivisionError"),
    ],
)
def test_runtime_failures_give_zero_with_the_error_text(expr, kind):
    env = make_env()
    t0 = time.perf_counter()
    res = env.step(submit(expr))
    assert time.perf_counter() - t0 < 0.5
    assert res.reward == 0.0 and not res.format_error and res.done
    assert res.feedback.startswith("Invalid policy: action failed at t=") and f": {kind}: " in res.feedback
    assert res.feedback.endswith("no complete trajectory or loss was returned, and reward was forced to 0.")
    assert STATE_KEY not in env.state.data  # only expressions that ran are remembered


# ---- the whitelist ----------------------------------------------------------------------------------------------
ACCEPTED = {
    "1": 1.0,
    "-2.5e-1": -0.25,
    "x": 1.0,
    "+v": -0.5,
    "0.25 * (x_target - x) + ifelse(lt(t, horizon - 2), 0.5, 1.0) * (v_target - v)": 0.25 * 3 + 0.5 * 0.5,
    "remaining_steps / horizon": 0.75,
    "x ** 2 + pow(v, 2)": 1.25,
    "abs(v) + min(x) + max(1, 2, 3)": 4.5,
    "clip(10 * x, -1, 1)": 1.0,
    "1 if 0 < x <= 2 else 0": 1.0,
    "1 if 2 < x < 5 else 0": 0.0,
    "(x > 5) or 7": 7.0,
    "0 and 1 / 0": 0.0,
    "ifelse(not (x == 1), 1 / 0, 3)": 3.0,
    "eq(x, 1) + ne(x, 1) + le(x, 1) + ge(x, 2) + gt(t, 2)": 3.0,
    "(x != 1) * 5 - (v >= 0)": 0.0,
}
REJECTED = [
    "",
    "   ",
    "x = 1",
    "x := 1",
    "import os",
    "__import__('os').system('ls')",
    "x.real",
    "abs.__class__",
    "[x][0]",
    "(x, v)",
    "{x: 1}",
    "{x}",
    "[i for i in range(3)]",
    "lambda: 1",
    "'1'",
    "b'1'",
    "f'{x}'",
    "True",
    "None",
    "1j",
    "1e400",
    "1" + "0" * 20,
    "y",
    "a_env * x",
    "abs",
    "abs(x, v)",
    "min()",
    "clip(x, 1)",
    "lt(x)",
    "abs(value=x)",
    "max(*[x])",
    "x // 2",
    "x % 2",
    "x @ v",
    "x << 1",
    "~x",
    "x in v",
    "x is v",
    "eval('1')",
    "exec('1')",
    "open('f')",
    "print(x)",
    "sin(x)",
    "yield x",
    "await x",
    "x if x",
    "1 +",
    "x; v",
    "(" * 300 + "x" + ")" * 300,
    "-" * 1500 + "x",
    "not " * 400 + "x",
    "x+" * 600 + "x",
    "x" * (MAX_EXPR_CHARS + 1),
]


@pytest.mark.parametrize("expr,value", list(ACCEPTED.items()))
def test_whitelist_accepts_and_evaluates(expr, value):
    assert parse_expression(expr).evaluate(STATE) == pytest.approx(value)


@pytest.mark.parametrize("expr", REJECTED)
def test_whitelist_rejects(expr):
    t0 = time.perf_counter()
    with pytest.raises(ExpressionError):
        parse_expression(expr)
    assert time.perf_counter() - t0 < 0.5


def test_answer_xml_rules():
    assert parse_answer_xml("<action_expression> x &lt;= 1 &amp;&amp; &#65;</action_expression>") == "x <= 1 && A"
    for bad in (
        "x",
        "<action_expression>x</action_expression><action_expression>x</action_expression>",
        "<action_expression>x < 1</action_expression>",
        "<action_expression><b>x</b></action_expression>",
        "<action_expression>&foo;</action_expression>",
        "<action_expression>a & b</action_expression>",
        '<action_expression id="1">x</action_expression>',
        "<action_expression><![CDATA[x]]></action_expression>",
    ):
        with pytest.raises(ExpressionError):
            parse_answer_xml(bad)


@pytest.mark.parametrize(
    "text",
    [
        "no answer",
        "```\n" + submit("x"),
        submit("x") + "trailing text",
        submit("x") + submit("x"),
        "<answer>x</answer>",
        "</answer><answer><action_expression>x</action_expression>",
        submit("x &lt; 1 if 1 else 0").replace("&lt;", "<"),
        submit("__import__('os').system('echo hi')"),
        "<answer><action_expression>" + "1+" * 500_000 + "1</action_expression></answer>",
        "<answer>" + MEGA + "</answer>",
        MEGA,
    ],
)
def test_format_errors_give_minus_point_one_and_the_flag(text):
    env = make_env()
    t0 = time.perf_counter()
    res = env.step(text)
    assert time.perf_counter() - t0 < 0.5
    assert res.reward == -0.1 and res.format_error and res.done
    assert res.feedback.startswith("Invalid controller submission: expected exactly one terminal <answer>")
    assert res.feedback.endswith("The environment was not executed and reward was set to -0.1.")
    assert "Raw agent response; no valid action expression was extracted:" in env.update_trajectory([])


def test_hostile_inputs_leave_the_host_untouched(tmp_path):
    sentinel = tmp_path / "sentinel"
    payloads = [
        f"__import__('os').system('touch {sentinel}')",
        f"open('{sentinel}', 'w')",
        f"eval(\"open('{sentinel}', 'w')\")",
        f"exec(\"open('{sentinel}', 'w')\")",
        "().__class__.__bases__[0].__subclasses__()",
        f"[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]('touch {sentinel}')",
        f"(lambda: __import__('subprocess').run(['touch', '{sentinel}']))()",
        f"globals()['__builtins__']['open']('{sentinel}', 'w')",
    ]
    for payload in payloads:
        for text in (submit(payload), submit(payload.replace("'", "&apos;"))):
            res = make_env().step(text)
            assert res.format_error and res.reward == -0.1
        with pytest.raises(ExpressionError):
            parse_expression(payload)
    assert not sentinel.exists()


TOKENS = [
    "x",
    "v",
    "t",
    "horizon",
    "1",
    "0",
    "9",
    "1e308",
    "(",
    ")",
    "+",
    "-",
    "*",
    "/",
    "**",
    "<",
    "==",
    "and",
    "or",
    "not",
    "if",
    "else",
    "ifelse(",
    "lt(",
    "pow(",
    "min(",
    "clip(",
    ",",
    " ",
    "__import__",
    ".",
    "[",
    "]",
    "'",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(st.sampled_from(TOKENS), max_size=60).map("".join),
        st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join),
    )
)
def test_parser_and_evaluator_never_raise_unexpectedly(expr):
    t0 = time.perf_counter()
    try:
        parsed = parse_expression(expr)
    except ExpressionError:
        parsed = None
    if parsed is not None:
        try:
            parsed.evaluate(STATE)
        except (ArithmeticError, ValueError, TypeError, RuntimeError):
            pass
    assert time.perf_counter() - t0 < 0.5


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(submit, st.text(max_size=100)),
        st.builds(submit, st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)),
        st.lists(
            st.sampled_from(
                ["<answer>", "</answer>", "<action_expression>", "</action_expression>", "x", "```", "&lt;", "&", " "]
            ),
            max_size=12,
        ).map("".join),
    )
)
def test_step_never_raises_on_any_text(text):
    env = make_env()
    t0 = time.perf_counter()
    res = env.step(text)
    assert time.perf_counter() - t0 < 0.5
    assert res.done and (res.reward in (-0.1, 0.0) or 0.0 < res.reward <= 1.0)
    assert res.format_error == (res.reward == -0.1)
    assert isinstance(env.final_feedback(), str) and isinstance(env.update_trajectory([]), str)


# ---- pack state: previous-policy injection ---------------------------------------------------------------------
def test_previous_policy_lives_in_the_caller_owned_pack_state():
    rows = [{**r, "include_previous_control_policy": True} for r in ROWS[:3]]
    sa, sb = PackState(), PackState()
    ea, eb = make_env(rows[0], 5, 0, sa), make_env(rows[0], 5, 0, sb)
    assert "Controller evidence" not in ea.first_observation()
    ea.step(submit("0.5 * (x_target - x)"))
    eb.step(submit("-0.7 * v"))
    a1, b1 = make_env(rows[1], 5, 1, sa), make_env(rows[1], 5, 1, sb)
    oa, ob = a1.first_observation(), b1.first_observation()
    assert "0.5 * (x_target - x)" in oa and "-0.7 * v" not in oa
    assert "-0.7 * v" in ob and "0.5 * (x_target - x)" not in ob
    assert oa.split("\n\n## Controller evidence from an earlier task\n\n")[1].startswith(
        "The expression and measurements below come from an earlier, different task in the same hidden environment."
    )
    assert f"- Earlier initial state: x0={rows[0]['x0']}, v0={rows[0]['v0']}\n" in oa
    assert "- Earlier horizon: 12\n- Completed that earlier rollout: yes\n" in oa
    assert oa.endswith(
        "<answer>\n  <action_expression>\n    0.5 * (x_target - x)\n  </action_expression>\n</answer>\n\n"
        "Adapt the expression to the current initial state, target, and horizon, or submit a new one if it performed "
        "poorly."
    )
    a1.step(submit("1 / 0"))  # a failing expression is not stored: the block keeps the most recent one that ran
    assert "0.5 * (x_target - x)" in make_env(rows[2], 5, 2, sa).first_observation()
    assert (
        "Controller evidence"
        not in make_env(rows[1], 5, 1, sa, include_previous_control_policy=False).first_observation()
    )


def test_update_trajectory_override():
    env = make_env()
    res = env.step(submit("clip(x_target - x, -1, 1)"))
    messages = [
        {"role": "system", "content": hints.augment_system_prompt(env.system_prompt(), "Hints: null", 100)},
        {"role": "user", "content": env.first_observation()},
        {"role": "assistant", "content": "whatever"},
    ]
    text = env.update_trajectory(messages)
    assert text == (
        f"System:\n{env.system_prompt()}\n\nTask:\n{env.first_observation()}\n\nSubmitted action expression:\n"
        "<answer>\n  <action_expression>\n    clip(x_target - x, -1, 1)\n  </action_expression>\n</answer>"
    )
    assert res.feedback.startswith("The environment executed")


# ---- policies and hint use -------------------------------------------------------------------------------------
def test_policy_delimiters_match_the_cod_core():
    policies_match_the_cod_core(POLICIES)


def test_oracle_hint_recovers_the_hidden_dynamics():
    for i, lc in enumerate(lifecycles(ENV, make_rows(4 * 20, seed=8), pol.oracle, 20, length_limit=1000)):
        a, b = hidden_dynamics(i)  # privileged: test only
        assert lc.update_rewards == [0.0, 0.0, 0.0]
        update = next(e for e in lc.episodes if e.kind == "update")
        assert "Submitted action expression:" in update.prompt[-1]["content"]
        for hint in lc.hints[1:]:
            fit = pol.parse_hint(hint)
            assert fit is not None and abs(fit[0] - a) < 0.02 and abs(fit[1] - b) < 0.02, (hint, a, b)


def _gaps(policy_factory, n_packs, size=4):
    return hint_use(ENV, make_rows(size * n_packs, seed=0), policy_factory, n_packs, size)


def test_oracle_uses_the_hint_and_hint_blind_is_flat():
    """200 packs of 4, no injection: the oracle's gap (positions >= 1 minus position 0) has a 95% CI lower bound
    above 0.1; hint-blind's CI contains 0."""
    means = oracle_rises_and_hint_blind_is_flat(_gaps, pol.oracle, pol.hint_blind, 200, oracle_gap_above=0.1)
    random_means, _ = _gaps(pol.random_policy, 50)
    assert max(random_means) < min(means[1:])


def test_simulate_is_pure():
    expr = parse_expression("0.2 * (x_target - x) - 0.5 * v")
    r1 = simulate(expr, 0.9, -0.7, 0.1, 0.2, 3.0, 0.0, 12)
    assert r1 == simulate(expr, 0.9, -0.7, 0.1, 0.2, 3.0, 0.0, 12) and len(r1.us) == 12


@pytest.mark.parametrize(
    "numeral", ["1" * 400, "-" + "9" * 1990, "1" * 309 + " * x", "clip(1" + "0" * 400 + ", -1, 1)"]
)
def test_integer_literal_beyond_float_range_is_a_format_error(numeral):
    """Issue 13: ``math.isfinite`` on an int above ~1.8e308 raised OverflowError out of ``step``."""
    with pytest.raises(ExpressionError, match="magnitude"):
        parse_expression(numeral)
    env = make_env()
    res = env.step(submit(numeral))
    assert res.done and res.format_error and res.reward == -0.1 == OptimalControl.format_error_reward
    assert res.turns_used == 1 and "Invalid controller submission" in res.feedback and "magnitude" in res.feedback
    assert env.step(submit("0")) is res
