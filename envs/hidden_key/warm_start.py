"""The supervised warm start of cod.md 9.8: solve prompts only, answer = the key; the hint shows it 3 times in 4.

It stands in for an instruction-following LLM: it teaches *reading* a hint and the answer format, and never shows
an update prompt, so *writing* the key into the hint must still come from RL.
"""

from __future__ import annotations

import random

from cod_envs.base import PackState, TaskContext
from cod_envs.hidden_key.env import INITIAL_HINT, HiddenKey, HiddenKeyOptions
from cod_envs.hooks import WarmStart


def warm_start_samples(
    n: int, seed: int, options: HiddenKeyOptions | None = None, hint_prob: float = 0.75
) -> list[tuple[str, str]]:
    """``n`` (prompt, answer) pairs: ``<bos> solve hint : {h} distractor : {d} answer :`` -> ``k{y}``.

    ``h`` is ``k{y}`` with probability ``hint_prob`` and ``none`` otherwise (then ``y`` is uniform and unreadable).
    """
    o = options or HiddenKeyOptions()
    rng = random.Random(f"hidden_key/warm_start/{seed}")
    out = []
    for _ in range(n):
        row = {"seed": rng.getrandbits(62)}
        env = HiddenKey(TaskContext(row=row, pack_seed=0, task_idx=0, pack_size=1), PackState(), **_kwargs(o))
        key = f"k{rng.randrange(o.num_keys)}"
        hint = key if rng.random() < hint_prob else INITIAL_HINT
        out.append((env.raw_solve_prompt(hint), key))
    return out


def _kwargs(o: HiddenKeyOptions) -> dict:
    return {f: getattr(o, f) for f in HiddenKeyOptions.FIELDS}


WARM_START = WarmStart(samples=warm_start_samples, cache_key=dict(vars(HiddenKeyOptions())))
"""The registry's warm-start hook: default options; the cache key is those options."""
