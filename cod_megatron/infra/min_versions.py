"""The oldest Python, torch, transformers and megatron-core this code runs on, each with the feature that sets it.

The exact pins (``requirements/cpu.lock``) are what CI tests; these floors are what a machine with its own stack (the
lent GPU machine: its Python, torch and transformers preinstalled) must meet. ``scripts/gpu_check/versions.py``
checks them and stops the run below them; the tests check the pins against them. Plain Python with no import beyond
the standard library and no 3.12 syntax, so that an older interpreter can load it and say what is wrong.
"""

from __future__ import annotations

MINIMUM: dict[str, tuple[tuple[int, ...], str]] = {
    "python": (
        (3, 12),
        "PEP 695 type parameters (def f[T]) in engines/sglang/collective_post.py and sync/buckets.py",
    ),
    "torch": ((2, 6), "megatron-core 0.19 and transformers 5 require it"),
    "transformers": (
        (5, 0),
        "rope_parameters: transformers 4 ignores it, so the engine would run rope theta 10000 against the trainer's",
    ),
    "megatron-core": (
        (0, 18),
        "GPTModel.forward(output_processor=...), the fused LM heads' hook (core_v0.18.0, Megatron-LM #4686)",
    ),
}
"""package -> (minimum release, what needs it)."""


def parse_version(text: str) -> tuple[int, ...]:
    """The leading numeric release parts: ``"2.11.0+cu130"`` -> (2, 11, 0), ``"5.0.0rc1"`` -> (5, 0, 0)."""
    parts = []
    for part in text.strip().split("+")[0].split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) < len(part):  # "0rc1": a pre-release of this part; nothing after it counts
            break
    return tuple(parts)


def below_minimum(installed: dict[str, str | None]) -> list[str]:
    """One line per package of :data:`MINIMUM` that is missing (None, or absent from ``installed``) or older than
    its minimum; empty when the machine can run the code."""
    problems = []
    for name, (minimum, why) in MINIMUM.items():
        need = ".".join(map(str, minimum))
        have = installed.get(name)
        if have is None:
            problems.append(f"{name} is missing; the code needs >= {need}: {why}")
        elif parse_version(have)[: len(minimum)] < minimum:
            problems.append(f"{name} {have} is below {need}: {why}")
    return problems
