"""One capability check per GPU-only library (Transformer Engine, SGLang, flash-attn, apex).

A half-installed Transformer Engine raises RuntimeError (not ImportError) on import, and megatron-core's own guard
only catches ImportError, so every optional import in this project goes through :func:`has`, which catches anything.
"""

from __future__ import annotations

import functools
import importlib
from typing import Literal

Capability = Literal["te", "sglang", "flash_attn", "apex", "cuda"]

_MODULE = {"te": "transformer_engine.pytorch", "sglang": "sglang", "flash_attn": "flash_attn", "apex": "apex"}


class MissingCapability(RuntimeError):
    """A GPU-only feature was requested where it cannot run."""


@functools.cache
def has(name: Capability) -> bool:
    """Whether ``name`` can be used here: CUDA present and the module imports without raising."""
    import torch

    if not torch.cuda.is_available():
        return False
    if name == "cuda":
        return True
    try:
        importlib.import_module(_MODULE[name])
    except Exception:  # noqa: BLE001 - a broken install raises RuntimeError, OSError, ...
        return False
    return True


def require(name: Capability) -> None:
    """Raise :class:`MissingCapability` with the install hint unless :func:`has` is true."""
    if not has(name):
        raise MissingCapability(f"{name!r} needs a CUDA GPU and the GPU extra: pip install 'cod-megatron[gpu]'")
