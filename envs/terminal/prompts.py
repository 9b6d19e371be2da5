"""Texts of the Terminal domain (docs/cod.md 9.3): paper Table 6's system prompt (the reference's
``system.jinja2`` rendered with ``trim_blocks``, final newline dropped), the per-step user message and feedback."""

from __future__ import annotations

from cod_envs.base import turn_heading

SYSTEM_TEMPLATE = (
    "You are interacting with a simulated terminal environment. Your goal is to complete file operations by typing "
    "commands.\n"
    "\n"
    "## Environment\n"
    "- Local machine: {os_name} (type: {os_type}, hostname: localhost)\n"
    "- Remote server: {remote_host} (Linux, SSH pre-configured)\n"
    "- Remote username: {remote_user}\n"
    "\n"
    "## Available Commands\n"
    "ls, dir, cd, pwd, cat, type, mkdir, chmod, cp, copy, mv, move, rm, del, ren, touch, scp, rsync, ssh, exit, "
    "whoami, echo, tar, zip, unzip, gzip, gunzip\n"
    "\n"
    "Note: Not all commands are available on all systems.\n"
    "\n"
    "## Task\n"
    "{task_description}\n"
    "\n"
    "## Response Format\n"
    "First think step by step about which command to run, then provide your command using <answer>...</answer> tags "
    "at the end. Format your complete response as follows:\n"
    "```\n"
    "[THINKING]\n"
    "<answer>COMMAND</answer>\n"
    "```\n"
    "where [THINKING] should be replaced with your thinking process, while COMMAND is a single shell command line to "
    "execute this turn.\n"
    "\n"
    "Other requirements:\n"
    "- Be concise and avoid overthinking in your thinking process.\n"
    "- Issue exactly ONE command per turn. You may use `&&` or `;` to chain commands within the single `<answer>` "
    "block.\n"
    "- If your response cannot be parsed (missing `<answer>` tags), the episode ends immediately.\n"
    "- You have {max_steps} steps to complete the task.\n"
    "- The `<answer>` tag must appear at the END of your response."
)
OS_NAMES = {"windows": "Windows", "mac": "macOS", "linux": "Linux"}

FORMAT_ERROR_OUTPUT = "ERROR: Could not parse command from <answer>...</answer> tags. Episode terminated."
"""The step feedback of an unparseable (or empty) answer, as the reference's workflow sets it."""
SUCCESS_FEEDBACK = "Success! Task completed correctly."
FAILURE_FEEDBACK = "Failed: Goal state not achieved."
FORMAT_FAILURE_FEEDBACK = "Failed: Episode terminated due to action format error."
COMPLETED_OUTPUT = "Task completed successfully."


def system_prompt(os_type: str, remote_host: str, remote_user: str, description: str, max_steps: int) -> str:
    """Paper Table 6 filled in."""
    return SYSTEM_TEMPLATE.format(
        os_name=OS_NAMES[os_type],
        os_type=os_type,
        remote_host=remote_host,
        remote_user=remote_user,
        task_description=description,
        max_steps=max_steps,
    )


def user_message(step: int, max_steps: int, output: str, prompt: str) -> str:
    """``Step k/N``, then the previous command's output when non-empty, then the shell prompt (blank-line separated)."""
    return turn_heading("Step", step, max_steps, output) + prompt
