"""The launcher on a real Slurm: ``python -m cod_megatron.launch --executor slurm --mode bare`` on a one-node Slurm
started on this machine (``scripts/slurm_local.sh``: Debian's slurmctld/slurmd/munge, installed if missing).

One job covers the path end to end: sbatch reads the script NeMo-Run wrote, srun starts the Ray head, the driver is
submitted as a Ray job and writes CoD steps; ``scancel --signal=TERM --batch`` (what Slurm's ``--signal=B:TERM@N``
warning does) makes the driver finish its step and checkpoint, the script requeues the job, and the requeued job
resumes from that checkpoint and ends COMPLETED. Where Slurm cannot start, the fixture fails with the reason.
Wall time: 3 min 24 s measured on 2 cores (slurm/README.md), most of it Python and Ray start-up, twice.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.launch.cases import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SCRIPT = REPO / "scripts" / "slurm_local.sh"
STEPS = 40  # steps take about 0.4 s: the stop (a few seconds after the signal) must land before the last one
OVERRIDES = [f"run.steps={STEPS}", "eval.interval=0", "env.warm_start_steps=3", "rollout.packs_per_step=2",
             "rollout.group_size=4", "checkpoint.save_interval=1000"]  # fmt: skip  # the checkpoint comes from the stop


def _sh(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm():
    """A one-node Slurm for this module; stopped afterwards if this fixture started it."""
    t0 = time.monotonic()
    proc = _sh("bash", str(SCRIPT), "start", timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"no Slurm on this machine: `scripts/slurm_local.sh start` failed:\n{proc.stderr[-4000:]}")
    print(f"slurm_local.sh start: {proc.stdout.strip()} in {time.monotonic() - t0:.1f} s")
    yield
    if proc.stdout.strip().endswith("started"):
        _sh("bash", str(SCRIPT), "stop")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _job(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (JobState, Restarts, ExitCode, ...)."""
    text = _sh("scontrol", "show", "job", job_id).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def _wait(what: str, cond, timeout: float, job_id: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        state = _job(job_id).get("JobState", "?")
        if time.monotonic() > deadline or state in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            tails = [
                f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.rglob("*")) if p.suffix in (".out", ".log")
            ]
            pytest.fail(f"waiting for {what}: job {job_id} is {state}\n" + "\n".join(tails))
        time.sleep(2)


def _rows(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_debug_recipe_on_real_slurm_runs_is_stopped_requeued_and_resumes_from_its_checkpoint(slurm, tmp_path):
    out, jobs = tmp_path / "run", tmp_path / "jobs"
    ports = ("RAY_PORT", "RAY_DASHBOARD_PORT", "RAY_DASHBOARD_AGENT_PORT", "RAY_CLIENT_SERVER_PORT")
    env = {**os.environ} | {name: str(_free_port()) for name in ports}  # sbatch exports them
    cmd = [sys.executable, "-m", "cod_megatron.launch", "--recipe", "debug_cpu", "--executor", "slurm",
           "--mode", "bare", "--partition", "debug", "--account", "cod", "--job-dir", str(jobs),
           "--socket-ifname", "lo", "--time", "00:30:00", *OVERRIDES, f"run.output_dir={out}"]  # fmt: skip
    t0 = time.monotonic()
    submit = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-4000:]
    job_id = re.search(r"submitted Slurm job (\d+)", submit.stdout).group(1)
    try:
        _wait("the first CoD step", lambda: len(_rows(out)) >= 1, 900, job_id, jobs)
        first_step_s = time.monotonic() - t0
        assert _sh("scancel", "--signal=TERM", "--batch", job_id).returncode == 0
        requeued = lambda: (_job(job_id).get("JobState"), _job(job_id).get("Restarts")) == ("PENDING", "1")  # noqa: E731
        _wait("the requeue", requeued, 600, job_id, jobs)
        stopped_at = len(_rows(out))
        # Slurm 22.05 holds a requeued job for a fixed 121 s before it is eligible again (set when the requeue
        # completes, hence PENDING above); skip the hold
        assert _sh("scontrol", "update", f"JobId={job_id}", "StartTime=now").returncode == 0
        _wait("the resumed job to complete", lambda: _job(job_id).get("JobState") == "COMPLETED", 900, job_id, jobs)
    finally:
        _sh("scancel", job_id)
    print(f"job {job_id}: first step after {first_step_s:.0f} s, stopped at step {stopped_at}, "
          f"completed after {time.monotonic() - t0:.0f} s")  # fmt: skip

    job = _job(job_id)
    assert (job["JobState"], job["Restarts"], job["ExitCode"]) == ("COMPLETED", "1", "0:0")
    assert 1 <= stopped_at < STEPS, f"the stop must land mid-run (stopped at {stopped_at} of {STEPS})"
    # every step once, across the requeue: the resumed job went on from the checkpoint the stop saved
    assert [r["step"] for r in _rows(out)] == list(range(1, STEPS + 1))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"step_{stopped_at}"]
    task_dir = next(jobs.rglob("driver.log")).parent
    batch_log = next(task_dir.glob("sbatch_*.out")).read_text()
    assert "SIGTERM: the driver stops after its current step and checkpoints" in batch_log
    assert f"requeueing {job_id}; it resumes with checkpoint.load=auto" in batch_log
    driver_log = (task_dir / "driver.log").read_text()
    assert f"stopping: saved {out}/checkpoints/step_{stopped_at}" in driver_log
    assert f"resumed from {out}/checkpoints/step_{stopped_at} (step {stopped_at})" in driver_log
    assert f"Job 'cod-{job_id}' succeeded" in driver_log  # the driver ran as a Ray job on the job's Ray head
    assert (task_dir / f"ray-node0-{job['BatchHost']}.log").exists()  # the Ray head's own step and log
