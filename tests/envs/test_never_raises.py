"""The environment contract (cod.md 9.0) for every registered domain: ``step`` never raises, whatever the model wrote.

For each domain in ``cod_envs.registry.DOMAINS`` environments are built from real rows and fed random text and a
fixed adversarial corpus: huge numerals (bare, in ``<answer>`` and inside the domain's own answer format), deep
nesting, NUL bytes, lone surrogates, a megabyte of text, code injection and shell metacharacters; multi-turn
domains are stepped until done (and once past it). Every call must return a ``StepResult`` with a finite reward
and string feedback/observation in bounded time, and nothing may be executed on the host. The hint parsers
(``update_hint`` and every environment's ``parse_bare_hint``) are held to the same standard. Every text a domain
returns (observations, feedback, update prompts, hints) must encode as UTF-8: a lone surrogate the model wrote and
the domain echoed would make the next prompt fail to encode on the text path.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cod_envs import registry
from cod_envs.base import Environment, PackState, StepResult, TaskContext
from cod_envs.pde_discovery.terms import TERMS as PDE_TERMS
from cod_megatron.cod.hints import HINT_END, HINT_START, HintUpdate, update_hint

DOMAINS = list(registry.DOMAINS)
PACK_SEED = 3
MAX_SECONDS_PER_CALL = 5.0
"""A generous bound: the contract asks for bounded time, not for a speed target."""
PWNED = "/tmp/pwned"
PWNED_BEFORE = os.path.exists(PWNED)
MARKER = f"/tmp/cod_never_raises_{uuid.uuid4().hex}"
"""A fresh path the injection payloads try to create; it must never appear."""
MEGA = "x" * (1 << 20)

HUGE_NUMERALS = [
    "1" * 400,
    "-" + "9" * 5000,
    "9" * 4301,
    "1e99999",
    "-1e99999",
    "1e-99999",
    "1" * 400 + ".5",
    "0." + "0" * 400 + "1",
    "0x" + "f" * 400,
    "1_000" * 100,
    "1" * 400 + "j",
    "inf",
    "-inf",
    "nan",
    "1e308",
    "-0",
]
SMALL_NUMERALS = ["0", "0.0", "1", "-1", "0.5", "1e-300", "999", "1000", "1e6"]
NESTING = [
    "[" * 10000,
    "(" * 10000,
    "{" * 5000,
    "(" * 10000 + "1" + ")" * 10000,
    "-" * 10000 + "1",
    "not " * 3000 + "x",
    "<a>" * 5000,
    "<a>" * 5000 + "</a>" * 5000,
    "1+" * 20000 + "1",
    "&lt;" * 5000,
    "&#" + "9" * 5000 + ";",
]
WEIRD = [
    "",
    " ",
    "\x00",
    "\x00" * 1000,
    "a\x00b",
    "\ud800",
    "\udfff",
    "\ud800<answer>\udfff</answer>",
    "\ufeff\u202e\u200b",
    "\r\n\t\x0b\x0c",
    "\U0001f4a5" * 1000,
    "٣",
    "<answer></answer>",
    "<answer>" * 1000,
    "</answer><answer>",
    "<answer>" + "a" * 70_000 + "</answer>",
    "```python\nprint(1)\n```",
    "<stop />",
    "<eos>",
    "<!DOCTYPE a [<!ENTITY b SYSTEM 'file:///etc/passwd'>]><a>&b;</a>",
    "%s%n%x{0}{}",
]
INJECTION = [
    f"__import__('os').system('touch {PWNED}')",
    f"__import__('os').system('touch {MARKER}')",
    f"eval(\"__import__('os').system('touch {MARKER}')\")",
    f"exec(\"open('{MARKER}', 'w')\")",
    f"(lambda: __import__('subprocess').run(['touch', '{MARKER}']))()",
    "lambda x: x",
    "().__class__.__base__.__subclasses__()",
    "x.__class__",
    "open('/etc/passwd').read()",
    "globals()",
    "{{7*7}}${7*7}",
]
SHELL = [
    f"; rm -rf / | && $(touch {MARKER}) `touch {MARKER}`",
    f"touch {MARKER}",
    f"$(touch {MARKER})",
    f"`touch {MARKER}`",
    "rm -rf --no-preserve-root /",
    "cat /etc/passwd",
    "cd .. && cd .. && cd .. && ls -la",
    "a && b || c ; d & e",
    "echo $HOME ${USER} %USERPROFILE% ~",
    "x" * 5000,
    ";" * 5000,
    "&&" * 3000,
    "'" * 1001,
    '"unterminated',
]
PAYLOADS = HUGE_NUMERALS + SMALL_NUMERALS + NESTING + WEIRD + INJECTION + SHELL + [MEGA]

ANSWER_FORMATS: dict[str, list[str]] = {
    "alchemy_random": ["<answer>{p} + {p}</answer>", "<answer>{p}</answer>"],
    "code_lock": ["{p}", "a0 {p}", "a0 b1 {p}"],
    "hidden_key": ["{p}", "k0 {p}"],
    "hidden_key_chat": ["{p}", "red {p}", "The secret color is {p}."],
    "frozenlake_obscure": ["<answer>Direction {p}</answer>", "<answer>{p}</answer>"],
    "grid_navigation": ["<answer>{p},{p}</answer>", "<answer>{p},0</answer>", "<answer>0,{p}</answer>"],
    "optimal_control": [
        "<answer><action_expression>{p}</action_expression></answer>",
        "<answer><action_expression>clip({p} * (x_target - x), -1, 1)</action_expression></answer>",
        "<answer><action_expression>ifelse(lt(t, {p}), {p}, {p})</action_expression></answer>",
    ],
    "terminal": [
        "<answer>{p}</answer>",
        "<answer>cd {p} && ls -la {p}</answer>",
        "<answer>mkdir -p {p} && touch {p}/f && cp -r {p} {p}2 && mv {p}2 {p}/x</answer>",
        "<answer>tar -czf {p}.tar.gz {p} && tar -xzf {p}.tar.gz -C {p}</answer>",
        "<answer>zip -r {p}.zip {p} && unzip -o {p}.zip -d {p} && gzip -r {p}</answer>",
        "<answer>chmod {p} {p} && ssh {p}@{p} {p}</answer>",
        "<answer>scp -r {p} user@192.168.1.1:{p} && rsync -avz {p} {p}@10.0.0.1:{p}/</answer>",
    ],
    "pde_discovery": [
        '<answer><sample_pde_data><point_grid><point x="{p}" t="{p}"/></point_grid></sample_pde_data></answer>',
        "<answer><run_sparse_regression><dataset_id>{p}</dataset_id><alpha>{p}</alpha><threshold>{p}</threshold>"
        "<dictionary><term>u</term><term>{p}</term></dictionary></run_sparse_regression></answer>",
        "<answer><run_sparse_regression><candidate_equations><equation>{p}*u + {p}*u**3</equation>"
        "</candidate_equations></run_sparse_regression></answer>",
        "<answer><update_scientific_context><preferred_equation>{p}*u</preferred_equation>"
        "<uncertain_terms><term>{p}</term></uncertain_terms></update_scientific_context></answer>",
        "<answer><summarize_pack_evidence><reveal_equations>{p}</reveal_equations></summarize_pack_evidence></answer>",
        "<answer><{p}/></answer>",
    ],
    "learn2ask": ["{p}", "<stop />{p}", "{p}?"],
}
GENERIC_FORMATS = ["{p}", "<answer>{p}</answer>", "reasoning\n<answer>{p}</answer>\ntrailing"]


def test_every_domain_has_answer_formats():
    assert set(ANSWER_FORMATS) == set(DOMAINS)


@functools.cache
def rows_of(name: str) -> tuple[dict, ...]:
    return tuple(registry.load(name).make_rows(3, seed=0, split="train"))


def make_env(name: str, k: int = 0, state: PackState | None = None) -> Environment:
    rows = rows_of(name)
    ctx = TaskContext(row=rows[k % len(rows)], pack_seed=PACK_SEED, task_idx=0, pack_size=4)
    return registry.load(name).env(ctx, state if state is not None else PackState())


def prompt_messages(env: Environment) -> list[dict[str, str]]:
    raw = env.raw_solve_prompt("none")
    if raw is not None:
        return [{"role": "user", "content": raw}]
    return [{"role": "system", "content": env.system_prompt()}, {"role": "user", "content": env.first_observation()}]


@functools.cache
def valid_actions(name: str) -> tuple[str, ...]:
    """What the hint-blind scripted policy answers in one episode: well-formed actions to mutate."""
    env, policy = make_env(name), registry.load(name).policies["hint-blind"](0)
    messages, out = prompt_messages(env), []
    for _ in range(env.max_turns):
        action = policy(messages)
        out.append(action)
        result = env.step(action)
        if result.done:
            break
        messages += [{"role": "assistant", "content": action}, {"role": "user", "content": result.observation}]
    return tuple(out)


def assert_pwned_absent() -> None:
    assert not os.path.exists(MARKER), "model output was executed on the host"
    assert PWNED_BEFORE or not os.path.exists(PWNED), "model output was executed on the host"


def unguarded(method):
    """The domain's own method, unwrapped from ``Environment``'s safety net: these tests look for root causes."""
    return getattr(method, "__wrapped__", method)


def assert_utf8(text: str, what: str) -> None:
    """``text`` encodes as UTF-8 (a lone UTF-16 surrogate does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        pytest.fail(f"{what} is not valid UTF-8 ({exc.reason} at {exc.start}): {text[:200]!r}")


def timed_step(env: Environment, action: str) -> StepResult:
    t0 = time.perf_counter()
    result = unguarded(type(env).step)(env, action)
    elapsed = time.perf_counter() - t0
    assert elapsed < MAX_SECONDS_PER_CALL, f"step took {elapsed:.1f} s"
    assert isinstance(result, StepResult)
    assert isinstance(result.reward, float | int) and math.isfinite(result.reward)
    assert isinstance(result.feedback, str) and isinstance(result.observation, str)
    assert_utf8(result.feedback, f"{env.name} feedback")
    assert_utf8(result.observation, f"{env.name} observation")
    assert isinstance(result.done, bool) and isinstance(result.turns_used, int)
    return result


def run_episode(env: Environment, actions: list[str], max_steps: int | None = None) -> None:
    """Step through ``actions`` (cycling) until done or past ``max_turns`` (or ``max_steps``), then once more; the
    hostile transcript then goes through the update-episode hooks that see model text."""
    messages = prompt_messages(env)
    for turn in range(min(env.max_turns + 1, max_steps or env.max_turns + 1)):
        action = actions[turn % len(actions)]
        result = timed_step(env, action)
        messages += [{"role": "assistant", "content": action}, {"role": "user", "content": result.observation}]
        if result.done:
            break
    timed_step(env, actions[0])
    feedback = unguarded(type(env).final_feedback)(env)
    assert isinstance(feedback, str)
    assert_utf8(feedback, f"{env.name} final feedback")
    trajectory = env.update_trajectory(messages[:-1])
    assert trajectory is None or isinstance(trajectory, str)
    assert_utf8(trajectory or "", f"{env.name} update trajectory")
    update = env.raw_update_prompt("Hints: null", messages[-2]["content"], result.reward, feedback)
    assert update is None or isinstance(update, str) or all(isinstance(m["content"], str) for m in update)
    for text in [update] if isinstance(update, str) else [m["content"] for m in update or []]:
        assert_utf8(text, f"{env.name} update prompt")
    assert_pwned_absent()


# ---- a fixed adversarial corpus in every answer format -------------------------------------------------------------
@pytest.mark.parametrize("name", DOMAINS)
def test_adversarial_corpus_never_raises(name):
    for template in ANSWER_FORMATS[name] + GENERIC_FORMATS:
        for payload in PAYLOADS:
            run_episode(make_env(name), [template.replace("{p}", payload)])


def _deep_tree_lines(depth: int, moves: int) -> list[str]:
    a, b = "/".join(["a"] * depth), "/".join(["b"] * depth)
    segments, src, dst = [], "/t", f"/u/{b}"
    for _ in range(moves):
        segments += [f"mv {src} {dst}", f"mkdir -p {src}/{a if src == '/t' else b}"]
        src, dst = ("/u", f"/t/{a}") if src == "/t" else ("/t", f"/u/{b}")
    return [f"cd / && mkdir -p /t/{a} /u/{b}"] + [" ; ".join(segments[i : i + 8]) for i in range(0, len(segments), 8)]


_PDE_DICTIONARY = "<dictionary>" + "".join(f"<term>{t}</term>" for t in PDE_TERMS) + "</dictionary>"
SETUPS: dict[str, list[list[str]]] = {
    "pde_discovery": [
        # one point at t = 0 (late times cost a solver run per environment): singular regression systems
        ['<answer><sample_pde_data><point_grid><point x="0.5" t="0"/></point_grid></sample_pde_data></answer>'],
    ],
    "terminal": [
        ["<answer>mkdir -p d/e/f && cd d && touch e/f/g && tar -cf a.tar e && zip -r z e</answer>"],
        # two trees moved under each other again and again: directory nesting far past the cap, were it unchecked
        [f"<answer>{line}</answer>" for line in _deep_tree_lines(46, 24)],
    ],
}
"""Per domain, action prefixes that reach deeper states than the scripted policy's first action does."""
SETUP_FORMATS: dict[str, list[str]] = {
    "pde_discovery": [
        f"<answer><run_sparse_regression><alpha>{{p}}</alpha><threshold>{{p}}</threshold>{_PDE_DICTIONARY}"
        "</run_sparse_regression></answer>",
        "<answer><run_sparse_regression><alpha>{p}</alpha><candidate_equations><equation>1*u+1*u**2+1*u**3+1*u**4"
        "+1*u**5+1*u**7+1*sin(u)+1*tanh(u)</equation></candidate_equations></run_sparse_regression></answer>",
    ],
}
"""Extra answer formats tried after the setups (they only mean something in a later state)."""
SETUP_PAYLOADS = [*HUGE_NUMERALS, *SMALL_NUMERALS, *NESTING[:3], *WEIRD[:8], *INJECTION[:3], *SHELL[:4]]


@pytest.mark.parametrize("name", DOMAINS)
def test_adversarial_payloads_after_setup_actions_never_raise(name):
    """Each payload in each format after a well-formed first action (deeper states: sampled data, a move made)."""
    setups = [[valid_actions(name)[0]], *SETUPS.get(name, [])]
    formats = ANSWER_FORMATS[name] + SETUP_FORMATS.get(name, [])
    for setup in setups:
        for template in formats:
            for payload in SETUP_PAYLOADS:
                env = make_env(name)
                for action in setup:
                    timed_step(env, action)
                run_episode(env, [template.replace("{p}", payload)], max_steps=2)


# ---- random text and mutated well-formed actions, multi-turn ------------------------------------------------------
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
SURROGATE_TEXT = st.lists(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)), max_size=200).map("".join)
SMALL_PAYLOADS = [p for p in PAYLOADS if len(p) <= 20_000]


def mutate(action: str, payload: str, k: int) -> str:
    """Replace the k-th number of a well-formed action by the payload (or insert it at a position if none)."""
    numbers = list(_NUMBER.finditer(action))
    if numbers:
        m = numbers[k % len(numbers)]
        return action[: m.start()] + payload + action[m.end() :]
    at = k % (len(action) + 1)
    return action[:at] + payload + action[at:]


def action_strategy(name: str) -> st.SearchStrategy[str]:
    formats = ANSWER_FORMATS[name] + GENERIC_FORMATS
    return st.one_of(
        st.text(max_size=300),
        SURROGATE_TEXT,
        st.sampled_from(SMALL_PAYLOADS),
        st.builds(lambda t, p: t.replace("{p}", p), st.sampled_from(formats), st.text(max_size=40)),
        st.builds(lambda t, p: t.replace("{p}", p), st.sampled_from(formats), st.sampled_from(SMALL_PAYLOADS)),
        st.builds(
            lambda i, p, k: mutate(valid_actions(name)[i % len(valid_actions(name))], p, k),
            st.integers(0, 20),
            st.one_of(st.sampled_from(HUGE_NUMERALS), st.text(max_size=10)),
            st.integers(0, 1000),
        ),
        st.integers(0, 20).map(lambda i: valid_actions(name)[i % len(valid_actions(name))]),
    )


@pytest.mark.parametrize("name", DOMAINS)
def test_random_multi_turn_actions_never_raise(name):
    valid_actions(name)  # computed once, outside the examples

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(actions=st.lists(action_strategy(name), min_size=1, max_size=8), k=st.integers(0, 2))
    def check(actions, k):
        run_episode(make_env(name, k), actions)

    check()


def test_environments_sharing_a_pack_state_survive_adversarial_predecessors():
    """Pack state written by a hostile episode must not break the next task of the lifecycle."""
    for name in DOMAINS:
        state = PackState()
        for j, payload in enumerate(["1" * 400, "(" * 10000, "\ud800", MEGA]):
            rows = rows_of(name)
            ctx = TaskContext(row=rows[j % len(rows)], pack_seed=PACK_SEED, task_idx=j, pack_size=4)
            env = registry.load(name).env(ctx, state)
            assert isinstance(env.first_observation(), str)
            actions = [mutate(a, payload, j) for a in valid_actions(name)] + list(valid_actions(name))
            run_episode(env, actions)


# ---- hint parsers -------------------------------------------------------------------------------------------------
HINT_TEXT = st.one_of(
    st.text(max_size=300),
    SURROGATE_TEXT,
    st.sampled_from(PAYLOADS),
    st.lists(st.sampled_from([HINT_START, HINT_END, "x", "\n", " ", "\x00", "\ud800", "1" * 400]), max_size=10).map(
        "".join
    ),
    st.builds(lambda p: f"thinking\n{HINT_START}\n{p}\n{HINT_END}", st.sampled_from(PAYLOADS)),
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(previous=st.one_of(st.just("Hints: null"), st.text(max_size=50)), response=HINT_TEXT)
def test_update_hint_never_raises(previous, response):
    for on_failure in ("keep", "reset"):
        t0 = time.perf_counter()
        out = update_hint(previous, response, on_failure)
        assert time.perf_counter() - t0 < MAX_SECONDS_PER_CALL
        assert isinstance(out, HintUpdate) and isinstance(out.hint, str) and isinstance(out.parsed, bool)
        assert_utf8(out.hint, "update_hint's hint")
        if not out.parsed and on_failure == "keep":
            assert out.hint == previous


def test_update_hint_on_adversarial_corpus_keeps_the_previous_hint_on_failure():
    for payload in PAYLOADS:
        for response in (payload, f"{HINT_START}{payload}", f"{payload}{HINT_END}{HINT_START}"):
            out = update_hint("Hints: previous", response)
            assert out == HintUpdate("Hints: previous", False)
        out = update_hint("Hints: previous", f"{HINT_START}\n{payload}\n{HINT_END}")
        assert out.parsed == bool(payload.strip()) and isinstance(out.hint, str)


@pytest.mark.parametrize("name", DOMAINS)
def test_parse_bare_hint_never_raises(name):
    env = make_env(name)
    for payload in PAYLOADS:
        for text in (payload, f"k0 {payload}", f"{payload} <eos>"):
            t0 = time.perf_counter()
            hint = unguarded(type(env).parse_bare_hint)(env, text)
            assert time.perf_counter() - t0 < MAX_SECONDS_PER_CALL
            assert hint is None or isinstance(hint, str)
            assert_utf8(hint or "", f"{name} hint")

    @settings(max_examples=60, deadline=None, database=None)
    @given(text=HINT_TEXT)
    def check(text):
        hint = unguarded(type(env).parse_bare_hint)(env, text)
        assert hint is None or isinstance(hint, str)
        assert_utf8(hint or "", f"{name} hint")

    check()


# ---- the safety net in Environment ------------------------------------------------------------------------------
class _Broken(Environment):
    name = "broken"
    format_error_reward = -0.5

    @property
    def max_turns(self) -> int:
        return 3

    def system_prompt(self) -> str:
        return ""

    def first_observation(self) -> str:
        return ""

    def step(self, action_text: str) -> StepResult:
        if action_text == "ok":
            self.turns += 1
            return StepResult(observation="next", reward=0.0, done=False, feedback="fine", turns_used=self.turns)
        if action_text == "interrupt":
            raise KeyboardInterrupt
        self.turns += action_text == "count first"
        raise OverflowError("int too large to convert to float")

    def final_feedback(self) -> str:
        return "the domain's own final feedback"

    def parse_bare_hint(self, response: str) -> str | None:
        if response == "interrupt":
            raise KeyboardInterrupt
        return response if response.isalpha() else int(response)  # type: ignore[return-value]


def _broken() -> _Broken:
    return _Broken(TaskContext(row={}, pack_seed=0, task_idx=0, pack_size=4), PackState())


@pytest.mark.parametrize("counted_by_domain", [False, True])
def test_safety_net_turns_an_escaping_exception_into_a_logged_format_error(caplog, counted_by_domain):
    env = _broken()
    assert env.step("ok").turns_used == 1
    with caplog.at_level("WARNING", logger="cod_envs.base"):
        res = env.step("count first" if counted_by_domain else "boom")
    assert res == StepResult(
        observation="",
        reward=-0.5,
        done=True,
        feedback="Invalid response: it could not be parsed (OverflowError). Game over.",
        turns_used=2,
        format_error=True,
    )
    assert env.turns == 2 and env.step("ok") is res and env.final_feedback() == res.feedback
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "broken" in caplog.records[0].getMessage() and "OverflowError" in caplog.records[0].getMessage()


def test_safety_net_covers_parse_bare_hint_and_lets_interrupts_through(caplog):
    env = _broken()
    assert env.final_feedback() == "the domain's own final feedback"
    assert env.parse_bare_hint("key") == "key"
    with caplog.at_level("WARNING", logger="cod_envs.base"):
        assert env.parse_bare_hint("not a number") is None
    assert "broken" in caplog.text and "ValueError" in caplog.text
    with pytest.raises(KeyboardInterrupt):
        env.step("interrupt")
    with pytest.raises(KeyboardInterrupt):
        env.parse_bare_hint("interrupt")


def test_every_registered_environment_is_under_the_safety_net():
    for name in DOMAINS:
        env_cls = registry.load(name).env
        assert getattr(env_cls.step, "_never_raises", False), name
        assert Environment.format_error_reward == 0.0
        assert env_cls.format_error_reward == (-0.1 if name == "optimal_control" else 0.0)
    subclass = registry.load("learn2ask").env.with_judge(lambda messages: "")
    assert subclass.step is registry.load("learn2ask").env.step  # inherited, not wrapped twice
