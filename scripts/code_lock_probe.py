"""What a CodeLock checkpoint does at each decision, read off the policy's probabilities (no sampling noise).

Usage: ``python scripts/code_lock_probe.py RUN_DIR/checkpoints/step_N [...]``; one JSON object per checkpoint.
The held-out combination reward mixes hint writing, hint keeping and hint reading; this separates them
(docs/credit_domain.md), for the default code (F = 2 slots ``a``/``b``, W = 4 words each), averaged over codes:

- ``reveal_valid``: P(the first reveal answer is a word of the asked slot) at position 0 (hint ``none``) and at
  position 1 (hint = the revealed ``a`` word); its complement is a format error (reward 0, the word still revealed);
  ``reveal_top``: the likeliest first answer tokens at position 0;
- ``write_a``: P(update 0's hint starts with the revealed ``a`` word | previous hint ``none``), the first link;
- ``keep_add``: P(update 1's hint holds both the kept ``a`` word and the revealed ``b`` word, in either order |
  previous hint = the ``a`` word), the second link; ``write_b_first``: P(update 1's first token is the ``b`` word);
  ``write_b``: P(update 1's hint holds the ``b`` word first, or second after an ``a`` word) (the last link alone);
- ``follow``: P(the combination answer = the hint's two words | hint ``aX bY``), hint reading; ``follow_b``: P(its
  ``b`` word is the hint's | it starts with the hint's ``a`` word).
"""

from __future__ import annotations

import argparse
import json
from itertools import product

import torch
from hidden_key_probe import load_policy, next_token_probs

from cod_envs.code_lock.env import slot_words

A, B = slot_words(0, 4), slot_words(1, 4)


def solve(hint: str, task: str) -> str:
    return f"<bos> solve hint : {hint} task : {task} answer :"


def update(previous: str, answer: str, word: str) -> str:
    verdict, reward = ("correct", "1") if answer == word else ("wrong", "0")
    return (
        f"<bos> update previous hint : {previous} answer : {answer} reward : {reward} "
        f"feedback : {verdict} the word was {word} new hint :"
    )


def pair_prob(model: torch.nn.Module, encode, prompt: str, first: str, second: str) -> float:
    """P(response starts ``first second``)."""
    ids = encode(prompt)
    p1 = next_token_probs(model, [ids])[0, encode(first)[0]]
    p2 = next_token_probs(model, [ids + encode(first)])[0, encode(second)[0]]
    return float(p1 * p2)


def probe(model: torch.nn.Module, encode, words: list[str]) -> dict:
    """The probe's numbers for a causal LM over CodeLock's word vocabulary."""
    ids = {w: encode(w)[0] for w in (*A, *B)}
    p0 = next_token_probs(model, [encode(solve("none", "s0"))])[0]
    p1 = next_token_probs(model, [encode(solve(a, "s1")) for a in A])
    top = p0.topk(3)
    write_a = [next_token_probs(model, [encode(update("none", guess, a))])[0, ids[a]] for a, guess in product(A, A)]
    keep_add, write_b_first, write_b = [], [], []
    for a, b, guess in product(A, B, B):
        prompt = update(a, guess, b)
        keep_add.append(pair_prob(model, encode, prompt, a, b) + pair_prob(model, encode, prompt, b, a))
        write_b_first.append(float(next_token_probs(model, [encode(prompt)])[0, ids[b]]))
        write_b.append(write_b_first[-1] + sum(pair_prob(model, encode, prompt, x, b) for x in A))
    follow = [pair_prob(model, encode, solve(f"{a} {b}", "code"), a, b) for a, b in product(A, B)]
    follow_b = [
        float(next_token_probs(model, [encode(solve(f"{a} {b}", "code") + f" {a}")])[0, ids[b]])
        for a, b in product(A, B)
    ]
    return {
        "reveal_valid_pos0": float(p0[[ids[a] for a in A]].sum()),
        "reveal_valid_pos1": float(p1[:, [ids[b] for b in B]].sum(-1).mean()),
        "reveal_top_pos0": {words[int(i)]: round(float(v), 4) for v, i in zip(*top, strict=True)},
        "write_a": float(torch.stack(write_a).mean()),
        "write_b_first": sum(write_b_first) / len(write_b_first),
        "write_b": sum(write_b) / len(write_b),
        "keep_add": sum(keep_add) / len(keep_add),
        "follow": sum(follow) / len(follow),
        "follow_b": sum(follow_b) / len(follow_b),
    }


def main() -> None:
    """CLI entry: one JSON line per checkpoint."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    for ckpt in p.parse_args().checkpoints:
        model, encode, _, words = load_policy(ckpt)
        print(json.dumps({"checkpoint": ckpt} | probe(model, encode, words)), flush=True)


if __name__ == "__main__":
    main()
