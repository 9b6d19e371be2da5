"""CPU benchmark of episode packing: token saving vs one sample per turn, and credit + packing throughput.

``python -m cod_megatron.data.bench_packing [--episodes 10000] [--csv docs/benchmarks/cpu_packing.csv]``.
Synthetic episodes with stated lengths (FrozenLake-Obscure-like until the environment exists): a first prompt of
``--prompt`` tokens (system prompt, hint, first observation), then per turn a response of ``--response`` tokens and
an observation of ``--observation`` tokens.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

from cod_megatron.cod.credit import assign_credit
from cod_megatron.cod.episode import Episode, EpisodeKind, Lifecycle, Pack, Task
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data.episodes import pack_episodes


def synthetic_episode(
    turns: int,
    prompt: int,
    response: int,
    observation: int,
    *,
    rng: random.Random,
    pack_id: int = 0,
    rollout: int = 0,
    kind: EpisodeKind = "solve",
    position: int = 0,
) -> Episode:
    """An episode of ``turns`` model calls with the stated lengths (+-20 % jitter on responses)."""
    calls = []
    for t in range(turns):
        resp = max(1, int(response * rng.uniform(0.8, 1.2)))
        calls.append(([1] * (prompt if t == 0 else observation), [1] * resp, [-0.5] * resp))
    ep = Episode.from_turns(calls, pack_id=pack_id, rollout=rollout, kind=kind, position=position)
    ep.reward = float(rng.random() < 0.4)
    return ep


def token_saving_rows(prompt: int, response: int, observation: int) -> list[dict]:
    """One row per turn count: tokens as one segment vs one sample per model call."""
    rng = random.Random(0)
    rows = []
    for turns in (1, 2, 4, 8):
        eps = [synthetic_episode(turns, prompt, response, observation, rng=rng) for _ in range(200)]
        seg = sum(len(e.token_ids) for e in eps)
        per_turn = sum(e.per_turn_sample_tokens() for e in eps)
        rows.append(
            {
                "turns": turns,
                "segment_tokens": seg / len(eps),
                "per_turn_tokens": per_turn / len(eps),
                "saving": per_turn / seg,
            }
        )
    return rows


def lifecycles_for(n_episodes: int, *, pack_size: int, group: int, args: argparse.Namespace) -> list[Lifecycle]:
    """Enough lifecycles (S solve + S-1 update episodes each) for ``n_episodes`` episodes."""
    rng = random.Random(1)
    per_lc = 2 * pack_size - 1
    n_lc = -(-n_episodes // per_lc)
    n_lc += -n_lc % group
    out = []
    for i in range(n_lc):
        pack = Pack(
            pack_id=i // group, seed=i // group, tasks=tuple(Task(taskset_id="toy", row=j) for j in range(pack_size))
        )
        eps = [
            synthetic_episode(
                rng.randint(1, 8),
                args.prompt,
                args.response,
                args.observation,
                rng=rng,
                pack_id=pack.pack_id,
                rollout=i % group,
                position=j,
            )
            for j in range(pack_size)
        ]
        eps += [
            synthetic_episode(
                1,
                args.prompt,
                args.response,
                0,
                rng=rng,
                pack_id=pack.pack_id,
                rollout=i % group,
                kind="update",
                position=j,
            )
            for j in range(pack_size - 1)
        ]
        out.append(Lifecycle(pack=pack, rollout=i % group, episodes=eps))
    return out


def main(argv: list[str] | None = None) -> int:
    """Print both tables and append the numbers to the CSV."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=10_000)
    p.add_argument("--prompt", type=int, default=900, help="tokens of the first prompt (system + hint + observation)")
    p.add_argument("--response", type=int, default=250, help="tokens per model response")
    p.add_argument("--observation", type=int, default=120, help="tokens per environment observation")
    p.add_argument("--budget", type=int, default=16_384, help="micro-batch token budget")
    p.add_argument("--dp", type=int, default=8)
    p.add_argument("--csv", default="docs/benchmarks/cpu_packing.csv")
    args = p.parse_args(argv)
    command = "python -m cod_megatron.data.bench_packing " + " ".join(argv if argv is not None else sys.argv[1:])

    print(
        f"episode packing vs one sample per model call (prompt {args.prompt}, response {args.response}, "
        f"observation {args.observation} tokens)"
    )
    print(f"{'turns':>5} {'segment tok':>12} {'per-turn tok':>13} {'saving':>7}")
    rows = token_saving_rows(args.prompt, args.response, args.observation)
    for r in rows:
        print(f"{r['turns']:>5} {r['segment_tokens']:>12.0f} {r['per_turn_tokens']:>13.0f} {r['saving']:>6.2f}x")

    lcs = lifecycles_for(args.episodes, pack_size=4, group=8, args=args)
    n_eps = sum(len(lc.episodes) for lc in lcs)
    t0 = time.perf_counter()
    res = assign_credit(lcs, AlgorithmConfig())
    t1 = time.perf_counter()
    ranks, stats = pack_episodes(res.episodes, budget=args.budget, dp=args.dp)
    t2 = time.perf_counter()
    fill = stats.tokens / (args.dp * stats.micro_batches_per_rank * args.budget)
    print(
        f"\ncredit + packing of {n_eps} episodes ({len(lcs)} lifecycles, S=4, G=8; budget {args.budget}, DP {args.dp})"
    )
    print(f"{'stage':>10} {'seconds':>8} {'episodes/s':>11}")
    for name, dt in (("credit", t1 - t0), ("packing", t2 - t1), ("total", t2 - t0)):
        print(f"{name:>10} {dt:>8.3f} {n_eps / dt:>11.0f}")
    print(
        f"micro-batches per rank {stats.micro_batches_per_rank}, fill {fill:.3f}, rank tokens "
        f"{min(stats.rank_tokens)}..{max(stats.rank_tokens)}, truncated {len(stats.truncated)}"
    )

    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        base = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "git_sha": sha,
            "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            "command": command,
        }
        out = [
            base | {"metric": f"token_saving_{r['turns']}turn", "value": f"{r['saving']:.4f}", "unit": "x"}
            for r in rows
        ]
        out += [
            base | {"metric": "credit_plus_packing", "value": f"{n_eps / (t2 - t0):.1f}", "unit": "episodes/s"},
            base | {"metric": "micro_batch_fill", "value": f"{fill:.4f}", "unit": "fraction"},
        ]
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out[0]))
            if new:
                w.writeheader()
            w.writerows(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
