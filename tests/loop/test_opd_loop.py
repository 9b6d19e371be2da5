"""On-policy distillation end to end on CPU (issue 35): a student of the two word domains distils from two teachers
that differ from it, one per domain, through the real loop (Ray teacher actors, scoring between credit and packing,
the per-token advantage in the loss); the reverse KL to each teacher falls. About 1.5 minutes with the teachers."""

import statistics

import pytest

from tests.cli import train_cli

pytestmark = pytest.mark.slow

STEPS = 16


def test_reverse_kl_to_each_teacher_falls(word_teachers, tmp_path):
    teachers = ",".join(f"{d}={path}" for d, path in word_teachers.items())
    rows = train_cli(
        tmp_path / "student", "env.vocabulary_domains=hidden_key,code_lock", "env.warm_start_steps=3",
        "rollout.packs_per_step=8", "rollout.group_size=2", "eval.interval=0", f"run.steps={STEPS}", "run.seed=5",
        "optimizer.lr=1e-2", f"distill.teachers={teachers}", "algorithm.teacher_coef=1", recipe="debug_cpu_mix",
    )  # fmt: skip
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for domain in word_teachers:
        kl = [r[f"opd/{domain}/reverse_kl"] for r in rows]
        first, last = statistics.mean(kl[:4]), statistics.mean(kl[-4:])
        assert first > 0.5 and last < 0.75 * first, (domain, [round(x, 2) for x in kl])
        assert all(f"opd/{domain}/reverse_kl_update_pos0" in r for r in rows)  # update calls are scored too
    assert all(r["time/teacher_s"] > 0 for r in rows)
