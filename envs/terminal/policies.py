"""Scripted Terminal policies (cod.md 9.0, 9.3) that read only the text a model would see.

The solver reads the task from the system prompt, plans its operations (:mod:`cod_envs.terminal.plans`) and runs
one per turn, labelling each command ``[op i scope.op.variant]`` in its reasoning. An operation whose output looks
like an error is retried with the next candidate pattern; when the plan is done but the episode goes on (the goal
is not met), the plan restarts with the patterns it has not yet used. The candidate order is a seeded shuffle, so
the solver wastes steps on patterns this simulator does not support and can run out of its 12 steps.

The oracle puts the patterns its hint says worked first and the commands it says are unavailable last; its update
records, per OS, the patterns of a successful pass and the commands answered with "not recognized"/"command not
found". Hint-blind solves the same way without reading the hint and writes the constant hint ``none``. No
privileged environment state is read.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from functools import partial

from cod_envs import scripted
from cod_envs.base import Message, TextPolicy
from cod_envs.terminal.plans import OS_LABELS, Op, Parsed, candidates, command_word, parse_task, verification

_ERROR_RE = re.compile(
    r"not recognized|command not found|no such file|cannot|permission denied|connection refused|error|usage:|"
    r"invalid|not found|nothing to do|does not look like|could not|is a directory|not a regular file|missing|"
    r"refusing|syntax of the command|access is denied|lost connection|not supported|too many",
    re.I,
)
_MARK_RE = re.compile(r"\[(op|check) (\d+) ([a-z]+)\.([a-z_]+)\.([a-z_]+)\]")
_UNAVAILABLE_RE = re.compile(r"'([^'\s]+)' is not recognized|bash: ([^:\s]+): command not found")
_HINT_PATTERN_RE = re.compile(r"^- ([A-Za-z ]+) \| ([a-z_]+(?: avoid)?): (.+)$", re.M)
_HINT_UNAVAILABLE_RE = re.compile(r"^- ([A-Za-z ]+) \| unavailable: (.+)$", re.M)
_STEP_BLOCK_RE = re.compile(r"(?:^|\n\n)Step \d+:\nObservation: (.*?)\nAction: (.*?)(?=\n\nStep \d+:\n|\Z)", re.S)
_LOCAL_OS_RE = re.compile(r"- Local machine: \S+ \(type: (\w+),")
GENERIC_COMMANDS = ("ls", "pwd", "whoami", "ls -la", "cd ..", "exit", "dir")

Knowledge = tuple[dict[tuple[str, str], str], dict[str, set[str]]]
"""(pattern that worked per (scope label, op), unavailable commands per scope label)."""


def output_of(observation: str) -> str:
    """The command output inside a ``Step k/N`` user message (empty when there is none)."""
    parts = observation.split("\n\n")
    return "\n\n".join(parts[1:-1])


def is_error(output: str) -> bool:
    """Whether a command's output looks like a failure."""
    return bool(_ERROR_RE.search(output))


def _display(pattern: str) -> str:
    return re.sub(r"\{(\w+)\}", r"<\1>", pattern)


def parse_hint(text: str) -> Knowledge:
    """The patterns and unavailable commands stated by a hint written by :func:`format_hint`."""
    good = {(m.group(1).strip(), m.group(2)): m.group(3).strip() for m in _HINT_PATTERN_RE.finditer(text)}
    bad: dict[str, set[str]] = {}
    for m in _HINT_UNAVAILABLE_RE.finditer(text):
        bad.setdefault(m.group(1).strip(), set()).update(w.strip() for w in m.group(2).split(","))
    good = {k: v for k, v in good.items() if k[1] != "unavailable"}
    return good, bad


def format_hint(knowledge: Knowledge) -> str:
    """One line per verified pattern and per scope's unavailable commands."""
    good, bad = knowledge
    lines = [f"- {label} | {op}: {pattern}" for (label, op), pattern in sorted(good.items())]
    lines += [f"- {label} | unavailable: {', '.join(sorted(cmds))}" for label, cmds in sorted(bad.items()) if cmds]
    if not lines:
        return "- No verified command patterns yet; expect some commands to be missing on some systems."
    head = "- Command patterns verified on these machines (placeholders in <>):"
    return "\n".join([head, *lines])


def _order(op: Op, rng: random.Random, knowledge: Knowledge | None) -> list[tuple[str, str]]:
    """Candidate (key, pattern) order: a seeded shuffle; the oracle moves known-good first, unavailable last."""
    options = [(op.key(v), p) for v, p in candidates(op.scope, op.op)]
    rng.shuffle(options)
    if knowledge is None:
        return options
    label = OS_LABELS[op.scope]
    good, bad = knowledge
    known = good.get((label, op.op))
    missing = bad.get(label, set())
    avoid = good.get((label, op.op + " avoid"))

    def rank(kp: tuple[str, str]) -> tuple[bool, bool, bool]:
        shown = _display(kp[1])
        return shown != known, shown == avoid, command_word(kp[1]) in missing

    return sorted(options, key=rank)


def _history(messages: list[Message]) -> list[tuple[str, int, str, str]]:
    """(``op`` or ``check``, op index, key, output) of every earlier turn of this episode."""
    out = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant" or k + 1 >= len(messages):
            continue
        marks = _MARK_RE.findall(message["content"])
        if marks:
            kind, i, scope, op, variant = marks[-1]
            out.append((kind, int(i), f"{scope}.{op}.{variant}", output_of(messages[k + 1]["content"])))
    return out


@dataclass
class _State:
    """Where a replayed episode stands."""

    idx: int = 0
    pending: str | None = None
    """A key whose operation ran and awaits its verification."""
    failed: set[str] = field(default_factory=set)
    suspect: set[str] = field(default_factory=set)
    chosen: list[str] = field(default_factory=list)


def _replay(task: Parsed, orders: list[list[tuple[str, str]]], known: set[str], history: list) -> _State:
    """Re-derive the solver's state from its labelled turns (it keeps no memory between calls)."""
    st = _State()

    def advance(i: int, key: str) -> None:
        st.chosen.append(key)
        st.idx = i + 1
        if st.idx >= len(task.ops):  # plan done but the goal is not met: start over with unused patterns
            st.suspect.update(k for k in st.chosen if k not in known or all(c in known for c in st.chosen))
            st.chosen, st.idx = [], 0

    def fail(i: int, key: str) -> None:
        st.failed.add(key)
        st.idx = i
        if all(k in st.failed for k, _ in orders[i]):
            st.suspect.update(st.chosen)
            st.chosen, st.idx = [], 0
            st.failed -= {k for k, _ in orders[i]}

    for kind, i, key, output in history:
        if i >= len(task.ops):
            continue
        st.pending = None
        if kind == "check":
            check = verification(task.ops[i], task.user, task.host)
            if check is not None and check[1] in output:
                advance(i, key)
            else:
                fail(i, key)
        elif is_error(output):
            fail(i, key)
        elif key not in known and verification(task.ops[i], task.user, task.host) is not None:
            st.idx, st.pending = i, key
        else:
            advance(i, key)
    return st


def _pick(order: list[tuple[str, str]], failed: set[str], suspect: set[str]) -> tuple[str, str]:
    for allowed in (lambda k: k not in failed and k not in suspect, lambda k: k not in failed, lambda k: True):
        for key, pattern in order:
            if allowed(key):
                return key, pattern
    return order[0]


def _task_rng(seed: int, system_prompt: str) -> random.Random:
    """Per-task randomness that ignores the hint, so oracle and hint-blind match before any hint exists."""
    head = system_prompt.split("\n\n## Hints")[0]
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}/{head}".encode()).digest()[:8], "big"))


def _solve(messages: list[Message], seed: int, use_hint: bool) -> str:
    system = scripted.system_prompt_of(messages)
    task = parse_task(system)
    if task is None or not task.ops:
        return f"<answer>{random.Random(seed + len(messages)).choice(GENERIC_COMMANDS)}</answer>"
    knowledge = parse_hint(scripted.hint_section(system)) if use_hint else None
    rng = _task_rng(seed, system)
    orders = [_order(op, rng, knowledge) for op in task.ops]
    known = _known_keys(task, knowledge)
    st = _replay(task, orders, known, _history(messages))
    op = task.ops[st.idx]
    check = verification(op, task.user, task.host)
    if st.pending is not None and check is not None:
        return f"Verify operation {st.idx + 1}: {op.op} [check {st.idx} {st.pending}].\n<answer>{check[0]}</answer>"
    key, pattern = _pick(orders[st.idx], st.failed, st.suspect)
    cmd = op.command(pattern, task.user, task.host)
    return f"Operation {st.idx + 1}/{len(task.ops)}: {op.op} [op {st.idx} {key}].\n<answer>{cmd}</answer>"


def _known_keys(task: Parsed, knowledge: Knowledge | None) -> set[str]:
    """Keys of the candidates whose pattern the hint states as verified (no re-verification needed)."""
    if knowledge is None:
        return set()
    good = knowledge[0]
    return {
        op.key(v)
        for op in task.ops
        for v, p in candidates(op.scope, op.op)
        if good.get((OS_LABELS[op.scope], op.op)) == _display(p)
    }


def _learned(prompt: str) -> Knowledge:
    """What the update prompt's trajectory shows: the patterns of the final pass if it succeeded (minus those a
    verification rejected), and the commands an OS did not know."""
    start = prompt.find(scripted.TRAJECTORY)
    body = prompt[start:] if start != -1 else ""
    os_match = _LOCAL_OS_RE.search(body)
    good: dict[tuple[str, str], str] = {}
    bad: dict[str, set[str]] = {}
    if os_match is None:
        return good, bad
    steps = _STEP_BLOCK_RE.findall(body)
    outputs = [output_of(obs) for obs, _ in steps[1:]] + [""]
    marks = [(_MARK_RE.findall(action) or [None])[-1] for _, action in steps]
    rejected: set[str] = set()
    final: list[tuple[int, str, str, str]] = []
    for j, mark in enumerate(marks):
        if mark is None:
            continue
        kind, i, scope, op, variant = mark
        unknown = _UNAVAILABLE_RE.search(outputs[j]) if j < len(marks) - 1 else None
        if unknown:
            bad.setdefault(OS_LABELS[scope], set()).add(unknown.group(1) or unknown.group(2))
        if kind == "check":
            rejected.add(f"{scope}.{op}.{variant}") if j + 1 < len(marks) and _is_retry(marks[j + 1], i) else None
            continue
        if final and int(i) < final[-1][0]:
            final = []
        if j == len(marks) - 1 or not is_error(outputs[j]):
            final.append((int(i), scope, op, variant))
    for key in rejected:
        scope, op, variant = key.split(".")
        pattern = dict(candidates(scope, op)).get(variant)
        if pattern is not None:
            good[(OS_LABELS[scope], op + " avoid")] = _display(pattern)
    if "Environment feedback: Success!" not in body:
        return good, bad
    for _, scope, op, variant in final:
        pattern = dict(candidates(scope, op)).get(variant)
        if pattern is not None and f"{scope}.{op}.{variant}" not in rejected and scope in ("remote", os_match.group(1)):
            good[(OS_LABELS[scope], op)] = _display(pattern)
    return good, bad


def _is_retry(mark: tuple[str, ...] | None, i: str) -> bool:
    """Whether the turn after a verification redoes the same operation (the verification failed)."""
    return mark is not None and mark[0] == "op" and mark[1] == i


def _update(messages: list[Message]) -> str:
    prompt = messages[-1]["content"]
    previous = parse_hint(scripted.previous_hints(prompt))
    good, bad = _learned(prompt)
    merged_good = {**previous[0], **good}
    merged_bad = {k: set(v) for k, v in previous[1].items()}
    for label, cmds in bad.items():
        merged_bad.setdefault(label, set()).update(cmds)
    hint = format_hint((merged_good, merged_bad))
    return f"Recording the command patterns that worked on these machines.\n{scripted.delimited_hint(hint)}"


def oracle(seed: int = 0) -> TextPolicy:
    """Solves with the patterns its hint verified; updates record the patterns of successful passes per OS."""
    return scripted.scripted_policy(partial(_solve, seed=seed, use_hint=True), _update)


def hint_blind(seed: int = 0) -> TextPolicy:
    """The oracle's solver without the hint; its updates write the constant hint ``none``."""
    return scripted.scripted_policy(partial(_solve, seed=seed, use_hint=False))


def random_policy(seed: int = 0) -> TextPolicy:
    """A random candidate command of a random operation of the task (or a generic command); constant hint."""
    rng = random.Random(seed)

    def solve(messages: list[Message]) -> str:
        task = parse_task(scripted.system_prompt_of(messages))
        if task is None or not task.ops or rng.random() < 0.2:
            return f"<answer>{rng.choice(GENERIC_COMMANDS)}</answer>"
        op = rng.choice(task.ops)
        options = candidates(op.scope, op.op)
        return f"<answer>{op.command(rng.choice(options)[1], task.user, task.host)}</answer>"

    return scripted.scripted_policy(solve)


POLICIES = scripted.policy_table(oracle, hint_blind, random_policy)
