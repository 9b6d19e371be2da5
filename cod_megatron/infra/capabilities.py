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


TE_DTYPES = ("bfloat16", "float16")
"""Model dtypes Transformer Engine's packed (THD) attention runs: its flash and cuDNN-fused backends have no fp32
kernels, and its unfused backend takes no THD input ("No dot product attention backend is available")."""


def transformer_engine_layers(params_dtype: str) -> tuple[bool, str]:
    """Whether the model's layers are Transformer Engine's, and why: only where TE imports (with CUDA) and can run
    the model's dtype on packed sequences; else the local layers with the project's packed attention."""
    if params_dtype not in TE_DTYPES:
        return False, f"local layers: Transformer Engine has no {params_dtype} packed-sequence (THD) attention"
    if not has("te"):
        return False, "local layers: Transformer Engine is not usable here (not installed, or no CUDA)"
    return True, f"Transformer Engine layers ({params_dtype}, THD attention)"
