"""What a HiddenKey checkpoint does at its three decisions, read off the policy's probabilities (no sampling noise).

Usage: ``python scripts/hidden_key_probe.py RUN_DIR/checkpoints/step_N [...]``; one JSON object per checkpoint.
The held-out gap mixes three skills and the pack keys' luck; this separates them (docs/robustness.md):

- ``solve_none``: the answer at position 0 (hint ``none``): its entropy (nats; ln 4 = 1.39 is uniform over the keys)
  and the largest key probability (1.0: the policy always names one key, so position 0's reward is that key's share
  of the evaluation packs, not 1/4);
- ``follow``: P(answer = kX | hint kX), hint reading (the warm start's skill);
- ``write_first``: P(the update's first token = kX | feedback names kX), hint writing (RL's skill); ``write``:
  P(response = ``kX <eos>``); ``write_second_top``: the likeliest second tokens after kX (with a 2-token cap a hint
  ``kX kX`` parses too); the entropy of the first token. Averaged over keys, answers and distractors.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from itertools import product

import torch

from cod_envs.hidden_key.env import distractor_words, key_words

KEYS = key_words(4)
DISTRACTORS = distractor_words(16)


def solve_prompt(hint: str, distractor: str) -> str:
    return f"<bos> solve hint : {hint} distractor : {distractor} answer :"


def update_prompt(answer: str, key: str) -> str:
    verdict, reward = ("correct", "1") if answer == key else ("wrong", "0")
    fields = f"previous hint : none answer : {answer} reward : {reward} feedback : {verdict} the key was {key}"
    return f"<bos> update {fields} new hint :"


@torch.no_grad()
def next_token_probs(model: torch.nn.Module, prompts: list[list[int]]) -> torch.Tensor:
    """[len(prompts), V] next-token probabilities (prompts of one length: every probe prompt here is)."""
    logits = model(input_ids=torch.tensor(prompts)).logits[:, -1].float()
    return torch.softmax(logits, dim=-1)


def probe(model: torch.nn.Module, encode: Callable[[str], list[int]], eos_id: int, words: list[str]) -> dict:
    """The probe's numbers for a causal LM over HiddenKey's word vocabulary."""
    key_ids = [encode(k)[0] for k in KEYS]
    none = next_token_probs(model, [encode(solve_prompt("none", d)) for d in DISTRACTORS])[:, key_ids]
    none_mean = none.mean(0)
    entropy = float(-(none_mean * none_mean.clamp_min(1e-12).log()).sum())
    hinted = [(k, d) for k, d in product(range(len(KEYS)), DISTRACTORS)]
    follow = next_token_probs(model, [encode(solve_prompt(KEYS[k], d)) for k, d in hinted])
    pairs = list(product(range(len(KEYS)), repeat=2))  # (answer, key)
    prompts = [encode(update_prompt(KEYS[a], KEYS[k])) for a, k in pairs]
    first = next_token_probs(model, prompts)
    second = next_token_probs(model, [p + [key_ids[k]] for p, (_, k) in zip(prompts, pairs, strict=True)])
    write_first = torch.stack([first[i, key_ids[k]] for i, (_, k) in enumerate(pairs)])
    write = torch.stack([first[i, key_ids[k]] * second[i, eos_id] for i, (_, k) in enumerate(pairs)])
    second_top = second.mean(0).topk(2)
    first_entropy = -(first * first.clamp_min(1e-12).log()).sum(-1)
    return {
        "solve_none_entropy": entropy,
        "solve_none_top_prob": float(none_mean.max()),
        "solve_none_top_key": KEYS[int(none_mean.argmax())],
        "solve_none_key_prob_mass": float(none.sum(-1).mean()),
        "follow": float(torch.stack([follow[i, key_ids[k]] for i, (k, _) in enumerate(hinted)]).mean()),
        "write_first": float(write_first.mean()),
        "write_first_by_key": [round(float(write_first[[k == key for _, k in pairs]].mean()), 4) for key in range(4)],
        "write": float(write.mean()),
        "write_second_top": {words[int(i)]: round(float(v), 4) for v, i in zip(*second_top, strict=True)},
        "write_first_token_entropy": float(first_entropy.mean()),
        "uniform_entropy": math.log(len(KEYS)),
    }


def load_policy(ckpt: str) -> tuple[torch.nn.Module, Callable[[str], list[int]], int, list[str]]:
    """A training checkpoint as an HF causal LM on the host (the evaluation path: trainer -> embedded engine)."""
    from cod_megatron.loop.checkpoint_engine import checkpoint_engine

    _, engine, renderer = checkpoint_engine(ckpt, device="cpu")
    return engine.model, renderer.encode, renderer.end_of_turn_id, list(renderer.words)


def main() -> None:
    """CLI entry: one JSON line per checkpoint."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    for ckpt in p.parse_args().checkpoints:
        model, encode, eos, words = load_policy(ckpt)
        print(json.dumps({"checkpoint": ckpt} | probe(model, encode, eos, words)), flush=True)


if __name__ == "__main__":
    main()
