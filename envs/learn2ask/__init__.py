"""Learn2Ask (docs/cod.md 9.4): ask one more focused question or stop; exports what ``cod_envs.registry`` loads.

Dialogue JSONL schema (one object per line; :func:`load_dialogues` reads it, real data is never shipped)::

    {"cid": "35310",                                  # optional id
     "messages": [{"role": "user", "content": "I have a sore throat."},       # patient
                  {"role": "assistant", "content": "For how long?"},          # doctor
                  {"role": "user", "content": "Two days."}],
     "decision_truth": "continue",                    # or "stop": the doctor's right next move
     "info_truth": "fever; cough with phlegm"}        # key information the next question should target
                                                      # ("None" when the decision is "stop")

Synthetic rows (``make_rows``, ``python -m cod_envs.learn2ask.data``) are ``{"seed": s, "synthetic": true}``: the
dialogue is built at runtime from the pack's hidden condition (a small table of conditions and their key topics,
:mod:`cod_envs.learn2ask.conditions`), so the tasks of a pack share it and the hint can carry it.
"""

from __future__ import annotations

from cod_envs.lazy_rows import lazy_make_rows
from cod_envs.learn2ask.data import load_dialogues, validate_row
from cod_envs.learn2ask.env import Learn2Ask
from cod_envs.learn2ask.judge import Judge, JudgeError, RuleJudge, parse_verdict
from cod_envs.learn2ask.policies import POLICIES, hint_blind, oracle, random_policy

ENV = Learn2Ask
make_rows = lazy_make_rows(__name__, "easy")

__all__ = [
    "ENV",
    "POLICIES",
    "Judge",
    "JudgeError",
    "Learn2Ask",
    "RuleJudge",
    "hint_blind",
    "load_dialogues",
    "make_rows",
    "oracle",
    "parse_verdict",
    "random_policy",
    "validate_row",
]
