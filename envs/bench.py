"""Environment steps per second, per domain (CPU): ``python -m cod_envs.bench [--steps 10000] [--seconds 20]``.

A step is one ``Environment.step`` with a response of the domain's ``random`` scripted policy; a fresh environment
is built (and its prompt rendered) whenever an episode ends, as in a rollout. A domain stops early after
``--seconds`` (PDE Discovery solves a reaction-diffusion equation per pack: tens of steps per second).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from cod_envs import registry
from cod_envs.base import PackState, TaskContext


def steps_per_second(name: str, steps: int, seed: int = 0, max_seconds: float = float("inf")) -> float:
    """Random-policy steps per second of domain ``name`` (episode resets included), over at most ``max_seconds``."""
    domain = registry.load(name)
    rows = domain.make_rows(64, seed, "test", "easy")
    policy = domain.policies["random"](seed)
    responses = [policy([{"role": "user", "content": "x"}]) for _ in range(256)]
    done, env, k = True, None, 0
    t0 = time.perf_counter()
    i = 0
    for i in range(steps):  # noqa: B007 (i counts the steps taken when the time budget ends the loop)
        if done and time.perf_counter() - t0 > max_seconds:
            break
        if done:
            env = domain.env(TaskContext(row=rows[k % len(rows)], pack_seed=k, task_idx=0, pack_size=4), PackState())
            (env.raw_solve_prompt("none") or env.system_prompt() + env.first_observation())
            k += 1
        done = env.step(responses[i % len(responses)]).done or env.turns >= env.max_turns
    else:
        i = steps
    return i / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """Print the table and append it to the CSV."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=20.0, help="time budget per domain")
    p.add_argument("--csv", default="docs/benchmarks/cpu_envs.csv")
    args = p.parse_args(argv)
    rows = [(name, steps_per_second(name, args.steps, max_seconds=args.seconds)) for name in sorted(registry.DOMAINS)]
    print(f"{'environment':>20} {'steps/s':>10}")
    for name, sps in rows:
        print(f"{name:>20} {sps:>10.0f}")
    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        command = "python -m cod_envs.bench " + " ".join(argv if argv is not None else sys.argv[1:])
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["date", "git_sha", "machine", "command", "environment", "steps_per_s"])
            stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            for name, sps in rows:
                w.writerow([stamp, sha, f"{platform.machine()} {os.cpu_count()} cpus", command, name, f"{sps:.0f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
