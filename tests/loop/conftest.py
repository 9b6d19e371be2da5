"""Two small teachers of the word domains, shared by the teacher and OPD tests: one HiddenKey and one CodeLock
checkpoint of debug_cpu_mix's model with the mixture's vocabulary, each a 40-step hint-following warm start plus one
CoD step (so they differ from a student warm-started for 3 steps). About a minute each on 2 cores."""

import pytest

from tests.cli import train_cli

TEACHER_RUN = [
    "env.vocabulary_domains=hidden_key,code_lock", "env.warm_start_steps=40", "rollout.packs_per_step=4",
    "rollout.group_size=2", "rollout.backend=inprocess", "eval.interval=0", "run.steps=1", "checkpoint.save_interval=1",
]  # fmt: skip


@pytest.fixture(scope="session")
def word_teachers(tmp_path_factory) -> dict[str, str]:
    """``{domain: checkpoint directory}`` for hidden_key and code_lock."""
    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for domain in ("hidden_key", "code_lock"):
        train_cli(root / domain, *TEACHER_RUN, f"env.train_domains={domain}", recipe="debug_cpu_mix")
        out[domain] = str(root / domain / "checkpoints" / "step_1")
    return out
