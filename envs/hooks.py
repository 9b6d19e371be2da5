"""Optional domain hooks: what a domain offers the library beyond the environment contract, as plain values and
callables, so that the library never names a domain. A domain package exports them next to ``ENV``, ``make_rows``
and ``POLICIES`` (``WORD_VOCABULARY``, ``WARM_START``); :func:`cod_envs.registry.load` puts them on the ``Domain``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WarmStart:
    """A supervised warm start the domain offers before RL (HiddenKey's hint *following*, cod.md 9.8)."""

    samples: Callable[[int, int], list[tuple[str, str]]]
    """``samples(n, seed)``: ``n`` (prompt text, answer text) pairs, the same for the same arguments."""
    cache_key: dict[str, Any]
    """Plain values the samples depend on besides ``(n, seed)``: a caller caching the warm start keys on them."""
