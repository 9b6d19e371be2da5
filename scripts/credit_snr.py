"""How much of an update episode's value each credit mode sees on CodeLock: signal, noise and their ratio.

Usage: ``python scripts/credit_snr.py [--packs 200] [--group 8] [--pack-size 4] [--chance 0 2 4]``.

A scripted *coin-flip writer* plays G rollouts of each pack: every update episode independently writes the oracle's
hint (previous words kept, the revealed word added) or, with probability 1/2, a bad one (a reveal update leaves the
new word out, a later update forgets every word); solves read the hint as the oracle does. The project's own credit
code (``lifecycle_returns``, ``group_advantages``: reward-to-go or outcome, the mean returns style, the
per-(pack, type, position) baseline) turns the rewards into advantages. Per update position j it prints the signal
(mean advantage of good minus bad writes), the noise (sd of the advantage within good and within bad writes,
pooled) and their ratio: the ratio a REINFORCE step sees per episode. Advantages are divided by nothing else.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics

import torch

from cod_envs.base import Message, TextPolicy
from cod_envs.code_lock import CodeLock, make_rows, oracle
from cod_envs.words import EOS, NONE
from cod_megatron.cod.baselines import group_advantages
from cod_megatron.cod.returns import lifecycle_returns
from cod_megatron.rollout.text_play import run_text_lifecycle


def coin_flip_writer(seed: int, code_length: int, choices: list[bool]) -> TextPolicy:
    """The oracle, except that each update episode is bad with probability 1/2; ``choices`` records good (True)."""
    good, rng = oracle(seed, code_length=code_length), random.Random(seed + 1)

    def policy(messages: list[Message]) -> str:
        words = messages[0]["content"].split()
        if words[1] != "update":
            return good(messages)
        ok = rng.random() < 0.5
        choices.append(ok)
        if ok:
            return good(messages)
        if "was" in words:  # a reveal update: keep the previous words, leave the new one out
            previous = words[words.index("hint") + 2 : words.index("answer")]
            return " ".join([*previous, EOS])
        return f"{NONE} {EOS}"  # a later update forgets every word

    return policy


def measure(packs: int, group: int, size: int, chance: float, seed: int = 0) -> dict[str, list[float]]:
    """Per update position: signal, noise and their ratio under reward-to-go and outcome credit."""
    rows = make_rows(size * packs, seed, "test", "easy", chance_reward=chance)
    code_length = rows[0]["code_length"]
    r_x, r_z, good, pack_ids = [], [], [], []
    for p in range(packs):
        for g in range(group):
            choices: list[bool] = []
            policy = coin_flip_writer(1000 * p + g, code_length, choices)
            lc = run_text_lifecycle(CodeLock, rows[size * p : size * (p + 1)], pack_seed=p, policy=policy)
            r_x.append(lc.solve_rewards)
            r_z.append(lc.update_rewards)
            good.append(choices)
            pack_ids.append(p)
    rx, rz = torch.tensor(r_x, dtype=torch.float64), torch.tensor(r_z, dtype=torch.float64)
    out: dict[str, list[float]] = {}
    for credit in ("reward_to_go", "outcome"):
        ret_x, ret_z = lifecycle_returns(rx, rz, credit=credit, returns="mean")
        _, adv_z = group_advantages(ret_x, ret_z, torch.tensor(pack_ids))
        for j in range(size - 1):
            a = adv_z[:, j].tolist()
            yes = [v for v, c in zip(a, good, strict=True) if c[j]]
            no = [v for v, c in zip(a, good, strict=True) if not c[j]]
            signal = statistics.mean(yes) - statistics.mean(no)
            noise = math.sqrt((statistics.pvariance(yes) + statistics.pvariance(no)) / 2)
            for key, value in (("signal", signal), ("noise", noise), ("ratio", signal / noise if noise else math.inf)):
                out.setdefault(f"{credit}/{key}", []).append(value)
    return out


def main() -> None:
    """Print one markdown table per chance reward."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packs", type=int, default=200)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--pack-size", type=int, default=4)
    p.add_argument("--chance", type=float, nargs="+", default=[0.0, 2.0, 4.0])
    args = p.parse_args()
    for chance in args.chance:
        m = measure(args.packs, args.group, args.pack_size, chance)
        print(f"\nchance_reward = {chance:g} ({args.packs} packs x G = {args.group}, packs of {args.pack_size})\n")
        heads = [f"{c} {k}" for c in ("RTG", "outcome") for k in ("signal", "noise", "ratio")]
        print("| update after task | " + " | ".join(heads) + " |")
        print("|---|---|---|---|---|---|---|")
        for j in range(args.pack_size - 1):
            keys = [f"{c}/{k}" for c in ("reward_to_go", "outcome") for k in ("signal", "noise", "ratio")]
            cells = [f"{m[key][j]:.3f}" for key in keys]
            print(f"| {j} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
