"""Learn2Ask (docs/cod.md 9.4): read a doctor-patient dialogue, then ask one more focused question or say ``<stop />``.

Single turn. Reward = action_score * (1 + 2 * content) + format, at most 4: a wrong decision scores 0; a right
``<stop />`` scores 3 plus format 1 when the response is exactly ``<stop />``; a right question is scored by the
judge (format and content in [0, 1]). The judge is the class attribute ``judge`` (a :class:`~.judge.Judge`;
:class:`~.judge.RuleJudge` by default); ``Learn2Ask.with_judge(j)`` gives a class that uses ``j``. A judge failure or
unparseable verdict never becomes a reward: the step ends with reward 0, feedback ``Judge error: ...`` and
``env.judge_error = True``, and the runner must drop the whole lifecycle (cod.md 3.4).
"""

from __future__ import annotations

from typing import Any, ClassVar

from cod_envs.base import MAX_ACTION_CHARS, Environment, Message, PackState, StepResult, TaskContext
from cod_envs.learn2ask.conditions import materialize
from cod_envs.learn2ask.judge import Judge, JudgeError, RuleJudge, judge_messages, parse_verdict, render_history

STOP = "<stop />"
MAX_REWARD = 4.0

SYSTEM_PROMPT = """# Task
You are a medical assistant. Read the ongoing conversation between a doctor and a patient and continue the medical inquiry in English as the doctor.

## Guidelines
- Each response must contain exactly one clear and concise medical question with 2 to 3 answer choices.
- Do not repeat any previous question.
- Your response must be a single sentence.
- If enough information has been gathered to make a medication suggestion, output only: <stop />"""  # noqa: E501
"""Our wording of the reference rollout prompt (``rollout_prompt_med``)."""

USER_TEMPLATE = "Conversation so far:\n{history}\nWrite the doctor's next message: one question, or <stop />."


class Learn2Ask(Environment):
    """One Learn2Ask task: a dialogue row (real, or synthetic and materialised from the pack's hidden condition)."""

    name: ClassVar[str] = "learn2ask"
    judge: ClassVar[Judge] = RuleJudge()

    @classmethod
    def with_judge(cls, judge: Judge) -> type[Learn2Ask]:
        """A subclass whose episodes are scored by ``judge`` (for example an engine-backed adapter)."""
        return type(cls.__name__, (cls,), {"judge": judge})

    def __init__(self, ctx: TaskContext, state: PackState):
        super().__init__(ctx, state)
        row: dict[str, Any] = ctx.row
        data = materialize(row, ctx.pack_seed) if row.get("synthetic") else row
        messages = data.get("messages") if isinstance(data.get("messages"), list) else []
        self.dialogue: list[Message] = [
            {"role": str(m.get("role")), "content": str(m.get("content", ""))}
            for m in messages
            if isinstance(m, dict) and m.get("role") in ("user", "assistant")
        ]
        self.decision_truth = "stop" if data.get("decision_truth") == "stop" else "continue"
        self.info_truth = str(data.get("info_truth", "None"))
        self.judge_error = False
        """Set when the judge failed or its verdict could not be parsed: the lifecycle must be dropped."""
        self.verdict: str | None = None

    @property
    def max_turns(self) -> int:
        """Single turn."""
        return 1

    def system_prompt(self) -> str:
        """The rollout prompt (the CoD core appends hint and length sections)."""
        return SYSTEM_PROMPT

    def first_observation(self) -> str:
        """The dialogue so far as ``patient:`` / ``doctor:`` lines."""
        return USER_TEMPLATE.format(history=render_history(self.dialogue))

    def _finish(self, reward: float, feedback: str) -> StepResult:
        self.turns = 1
        return self.finish(reward, feedback)

    def step(self, action_text: str) -> StepResult:
        """Score the response; never raises (judge failures set ``judge_error``)."""
        if self.result is not None:
            return self.result
        text = action_text[:MAX_ACTION_CHARS] if isinstance(action_text, str) else ""
        action = "stop" if STOP in text else "continue"
        if action != self.decision_truth:
            if action == "stop":
                return self._finish(
                    0.0, f"Wrong decision: you stopped, but key information was still missing: {self.info_truth}."
                )
            return self._finish(
                0.0,
                "Wrong decision: you asked another question, but the key information had "
                "already been collected; the right move was <stop />.",
            )
        if action == "stop":
            fmt = 1.0 if text.strip() == STOP else 0.0
            return self._finish(
                3.0 + fmt,
                f"Correct decision: stop; the key information had already been collected. "
                f"Format score {fmt:.1f} (the response must be exactly <stop />).",
            )
        try:
            self.verdict = self.judge(judge_messages(self.info_truth, self.dialogue, text))
            verdict = parse_verdict(self.verdict)
        except Exception as exc:  # a judge failure is never scored: the lifecycle is dropped
            self.judge_error = True
            detail = str(exc) if isinstance(exc, JudgeError) else type(exc).__name__
            return self._finish(0.0, f"Judge error: {detail[:200]}. This episode is not scored.")
        reward = 1.0 + 2.0 * verdict.content_score + verdict.format_score
        return self._finish(
            reward,
            f"Correct decision: continue asking. Judge scores: format "
            f"{verdict.format_score:.1f}, content {verdict.content_score:.1f}. The next "
            f"question should have targeted: {self.info_truth}.",
        )

    def final_feedback(self) -> str:
        """The step's feedback (empty before the step)."""
        return self.result.feedback if self.result is not None else ""
