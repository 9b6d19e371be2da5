"""CodeLock's supervised warm start: hint *following* only, as HiddenKey's (cod.md 9.8).

It stands in for an instruction-following LLM: combination prompts whose hint holds some of the code's words (the
answer copies them, slot by slot, and guesses the rest) and reveal prompts (a uniform guess, a different one after
"wrong"). It never shows an update prompt, so *writing* revealed words into the hint must come from RL.
"""

from __future__ import annotations

import random

from cod_envs.base import PackState, TaskContext
from cod_envs.code_lock.env import INITIAL_HINT, CodeLock, CodeLockOptions, draw_code, slot_words
from cod_envs.hooks import WarmStart


def _prompt(o: CodeLockOptions, position: int, pack_seed: int, hint: str) -> str:
    row = {k: getattr(o, k) for k in CodeLockOptions.FIELDS}
    ctx = TaskContext(row=row, pack_seed=pack_seed, task_idx=position, pack_size=o.code_length + 1)
    return CodeLock(ctx, PackState()).raw_solve_prompt(hint)


def warm_start_samples(
    n: int, seed: int, options: CodeLockOptions | None = None, keep_prob: float = 0.75
) -> list[tuple[str, str]]:
    """``n`` (prompt, answer) pairs, half combination and half reveal prompts.

    Combination: the hint holds each code word with probability ``keep_prob`` (slot order or shuffled); the answer
    is the code with a uniform word in each slot the hint lacks. Reveal task j: the hint holds some words of slots
    < j; the answer is a uniform word of slot j, or, half the time, a second turn after a wrong guess.
    """
    o = options or CodeLockOptions()
    rng = random.Random(f"code_lock/warm_start/{seed}")
    out = []
    for _ in range(n):
        pack_seed = rng.getrandbits(62)
        code = draw_code(pack_seed, o.code_length, o.code_words)
        if rng.random() < 0.5:
            kept = [w for w in code if rng.random() < keep_prob]
            if rng.random() < 0.5:
                rng.shuffle(kept)
            answer = [w if w in kept else rng.choice(slot_words(s, o.code_words)) for s, w in enumerate(code)]
            prompt = _prompt(o, o.code_length, pack_seed, " ".join(kept) or INITIAL_HINT)
            out.append((prompt, " ".join(answer)))
            continue
        slot = rng.randrange(o.code_length)
        kept = [w for w in code[:slot] if rng.random() < keep_prob]
        prompt = _prompt(o, slot, pack_seed, " ".join(kept) or INITIAL_HINT)
        words = list(slot_words(slot, o.code_words))
        if o.guesses > 1 and rng.random() < 0.5:
            first = rng.choice(words)
            prompt += f" {first} wrong answer :"
            words.remove(first)
        out.append((prompt, rng.choice(words)))
    return out


WARM_START = WarmStart(samples=warm_start_samples, cache_key=dict(vars(CodeLockOptions())))
"""The registry's warm-start hook: default options; the cache key is those options."""
