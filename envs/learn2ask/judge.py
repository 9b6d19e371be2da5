"""The Learn2Ask judge protocol (cod.md 9.4): chat messages in, verdict text out, so ``cod_envs`` needs no model code.

In real runs ``cod_megatron.engines.judge.EngineJudge`` backs the protocol with an auxiliary model engine (an
``OpenAIChatPolicy`` also satisfies it as is); tests and CPU runs use :class:`RuleJudge`, a deterministic stand-in
that reads the same prompt a model judge would. A verdict that :func:`parse_verdict` cannot read raises
:class:`JudgeError`; the environment then flags the episode (``judge_error``) and the lifecycle is dropped (cod.md 3.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from cod_envs.base import Message

JUDGE_PROMPT = """# Task
You are an evaluation assistant. The user gives you a dialogue between a doctor and a patient. Evaluate only the doctor's last message.

# Grading Policy
## Format Score
- 1.0: the last message asks exactly one question.
- 0.5: it asks two questions.
- 0.0: it asks three or more questions, or none.

## Content Score
- 1.0: the question directly asks about an item of the Reference Information.
- 0.5: the question is closely related to, but does not directly ask about, an item of the Reference Information.
- 0.0: the question is unrelated to every item of the Reference Information.

# Reference Information
{info_truth}

# Output Format
<think>Brief reasons for both scores.</think>
<format_score>the format score as a number (1.0, 0.5 or 0.0)</format_score>
<content_score>the content score as a number (1.0, 0.5 or 0.0)</content_score>"""  # noqa: E501  (prompt text)
"""Our wording of the reference judge rubric (same scales and output tags)."""

REFERENCE_HEADER = "# Reference Information\n"
OUTPUT_HEADER = "\n\n# Output Format"
MAX_VERDICT_CHARS = 20_000


class Judge(Protocol):
    """A judge: the system + user messages of :func:`judge_messages` in, the verdict text out."""

    def __call__(self, messages: list[Message]) -> str:
        """The verdict text."""
        ...


class JudgeError(RuntimeError):
    """The judge's answer could not be parsed (or the judge failed): the lifecycle is dropped, never scored."""


@dataclass(frozen=True)
class Verdict:
    """Parsed judge scores, each in [0, 1]."""

    format_score: float
    content_score: float


def render_history(messages: list[Message]) -> str:
    """``patient: ...`` / ``doctor: ...`` lines, as the reference feeds the judge."""
    lines = []
    for m in messages:
        if m["role"] in ("user", "assistant"):
            lines.append(f"{'patient' if m['role'] == 'user' else 'doctor'}: {m['content']}")
    return "\n".join(lines) + "\n"


def judge_messages(info_truth: str, dialogue: list[Message], response: str) -> list[Message]:
    """The judge's prompt: rubric with the reference items, then the dialogue ending with the doctor's response."""
    history = render_history([*dialogue, {"role": "assistant", "content": response}])
    return [
        {"role": "system", "content": JUDGE_PROMPT.format(info_truth=info_truth)},
        {"role": "user", "content": history},
    ]


_TAG = {name: re.compile(rf"<{name}>\s*([^<]*?)\s*</{name}>") for name in ("format_score", "content_score")}


def parse_verdict(text: object) -> Verdict:
    """Both score tags, each once, holding a number in [0, 1]; anything else is a :class:`JudgeError`."""
    if not isinstance(text, str):
        raise JudgeError("the judge returned no text")
    text = text[:MAX_VERDICT_CHARS]
    scores = []
    for name, pattern in _TAG.items():
        found = pattern.findall(text)
        if len(found) != 1:
            raise JudgeError(f"expected exactly one <{name}>, found {len(found)}")
        try:
            value = float(found[0])
        except ValueError:
            raise JudgeError(f"<{name}> is not a number: {found[0][:40]!r}") from None
        if not 0.0 <= value <= 1.0:
            raise JudgeError(f"<{name}> outside [0, 1]: {value}")
        scores.append(value)
    return Verdict(*scores)


_WORD = re.compile(r"[a-z]+")
_STOP = frozenset(
    "have your does with been feel there what when which about more less than that this from they pain worse right "
    "other after under over week days some into their these those yes".split()
)


def content_words(text: str) -> set[str]:
    """Lower-case words of 4+ letters minus stop words, cut to 5 letters (a crude stem)."""
    return {w[:5] for w in _WORD.findall(text.lower()) if len(w) >= 4 and w not in _STOP}


class RuleJudge:
    """A deterministic judge reading the same prompt: format from the number of ``?`` in the doctor's last line,
    content 1.0 when that line shares a content word with a reference item, else 0.0."""

    def __call__(self, messages: list[Message]) -> str:
        """The verdict in the judge's output format."""
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = next((m["content"] for m in messages if m["role"] == "user"), "")
        start = system.find(REFERENCE_HEADER)
        end = system.find(OUTPUT_HEADER, start)
        reference = system[start + len(REFERENCE_HEADER) : end if end != -1 else None] if start != -1 else ""
        last = next(
            (line[len("doctor: ") :] for line in reversed(user.splitlines()) if line.startswith("doctor: ")), ""
        )
        questions = last.count("?")
        fmt = 1.0 if questions == 1 else 0.5 if questions == 2 else 0.0
        words = content_words(last)
        items = [content_words(item) for item in reference.split(";")]
        content = 1.0 if any(words & item for item in items) else 0.0
        return (
            f"<think>{questions} question mark(s); reference overlap: {content:.1f}.</think>\n"
            f"<format_score>{fmt}</format_score>\n<content_score>{content}</content_score>"
        )
