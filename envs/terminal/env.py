"""TerminalSimulator (docs/cod.md 9.3): file operations on a simulated local machine and a remote Linux host.

Everything comes from the row seed by default (the tasks of a pack are largely unrelated, as in the reference);
the ``per_pack`` setting takes the local OS, remote host and remote user from the pack seed instead, so that a
hint about the machines and their command syntax transfers across the pack. Goal checks run after every command;
the episode ends with reward 1 as soon as they all pass, else with their verdict after the 12-step budget. A
missing or empty answer ends it with 0 and the format-error flag. No length penalty (the reference overrides it).
"""

from __future__ import annotations

from typing import Any, ClassVar

from cod_envs.base import Environment, PackState, StepResult, TaskContext, extract_answer
from cod_envs.terminal.checks import all_pass, build_machines
from cod_envs.terminal.prompts import (
    COMPLETED_OUTPUT,
    FAILURE_FEEDBACK,
    FORMAT_ERROR_OUTPUT,
    FORMAT_FAILURE_FEEDBACK,
    SUCCESS_FEEDBACK,
    system_prompt,
    user_message,
)
from cod_envs.terminal.shell import Shell
from cod_envs.terminal.tasks import COMPOSITE_RATIO, generate_task, pack_layout

AGENT_MAX_STEPS = 12
SETTINGS = ("default", "per_pack")


def is_per_pack(row: dict[str, Any]) -> bool:
    """The row asks for the pack-shared OS and host (``setting: per_pack`` or ``per_pack: true``)."""
    return row.get("setting") == "per_pack" or bool(row.get("per_pack", False))


class TerminalSimulator(Environment):
    """One terminal task; the two machines live only in this object."""

    name: ClassVar[str] = "terminal"

    def __init__(self, ctx: TaskContext, state: PackState):
        super().__init__(ctx, state)
        row = ctx.row
        self.agent_max_steps = int(row.get("agent_max_steps", AGENT_MAX_STEPS))
        layout = pack_layout(ctx.pack_seed) if is_per_pack(row) else None
        self.task = generate_task(
            int(row.get("seed", 0)),
            float(row.get("composite_ratio", COMPOSITE_RATIO)),
            row.get("forced_task_type"),
            layout,
        )
        self.local, self.remote = build_machines(self.task)
        self.shell = Shell(self.local, self.remote)
        self.done = False
        self.outcome: str | None = None
        """None while running, else ``success``, ``failure`` or ``format``."""
        self.last_output = ""

    @property
    def max_turns(self) -> int:
        """``agent_max_steps`` (12 in the evaluation config)."""
        return self.agent_max_steps

    def system_prompt(self) -> str:
        """Paper Table 6 with this task's machines and description."""
        t = self.task
        return system_prompt(t.os_type, t.host, t.user, t.description, self.agent_max_steps)

    def first_observation(self) -> str:
        """``Step 1/N`` and the shell prompt."""
        return user_message(1, self.agent_max_steps, "", self.shell.prompt())

    def goal_reached(self) -> bool:
        """Whether all goal checks pass now."""
        return all_pass(self.task, self.local, self.remote)

    def _end(self, outcome: str, output: str) -> StepResult:
        self.done, self.outcome, self.last_output = True, outcome, output
        return self.finish(1.0 if outcome == "success" else 0.0, output, format_error=outcome == "format")

    def step(self, action_text: str) -> StepResult:
        """Run one command line on the simulated machines; never raises, never touches the host."""
        if self.result is not None:
            return self.result
        self.turns += 1
        command = extract_answer(action_text) if isinstance(action_text, str) else None
        if not command:
            return self._end("format", FORMAT_ERROR_OUTPUT)
        output = self.shell.run(command)
        if self.goal_reached():
            return self._end("success", COMPLETED_OUTPUT)
        if self.turns >= self.agent_max_steps:
            return self._end("failure", output)
        self.last_output = output
        observation = user_message(self.turns + 1, self.agent_max_steps, output, self.shell.prompt())
        return self.next_turn(observation, output)

    def final_feedback(self) -> str:
        """``Success! Task completed correctly.``, ``Failed: Goal state not achieved.`` or the format-error text."""
        if self.outcome == "success":
            return SUCCESS_FEEDBACK
        if self.outcome == "format":
            return FORMAT_FAILURE_FEEDBACK
        return FAILURE_FEEDBACK
