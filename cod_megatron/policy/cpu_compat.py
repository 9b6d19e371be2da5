"""CPU accommodations for megatron-core's unconditional CUDA calls (applied only when CUDA is absent).

megatron-core assumes a GPU in a handful of places (see docs/cpu.md). Nothing here
edits megatron's files: each accommodation replaces a ``torch.cuda`` entry point or one parallel_state global, or
rewrites a ``device=`` keyword at call time. The list, and the megatron call that needs each:

* ``torch.cuda.current_device`` -> ``torch.device("cpu")`` (``ColumnParallelLinear(gather_output=True)``, p2p
  shape exchange, the sequence-parallel reduce-scatter in backward). It must not rely on the function mode: a
  mode is switched off while its own handler runs, and ``tensor.backward()`` runs inside that handler;
* ``torch.cuda.synchronize`` -> no-op (p2p communication, dist_checkpointing, DDP);
* ``torch.cuda.current_stream`` / ``default_stream`` -> a stream whose waits do nothing (DDP grad sync, 0.19);
* a ``TorchFunctionMode`` turning ``device="cuda"``/int/CUDA-device keywords into CPU and ``Tensor.cuda()`` into
  identity (every schedule's ``torch.zeros([], device="cuda")``; DDP buffers);
* ``Tensor.type()`` without arguments reports the CUDA name (DistributedOptimizer and grad clipping assert
  ``torch.cuda.FloatTensor``);
* the RNG tracker in its CPU-safe mode, and ``parallel_state._GLOBAL_MEMORY_BUFFER`` allocating on CPU;
* ``torch.cuda.random.get_rng_state`` -> the CPU generator's state (activation recompute's ``CheckpointFunction``
  saves the CUDA RNG state; restoring it is already deferred by ``_lazy_call`` while CUDA is uninitialised).

Install with :func:`install` after ``initialize_model_parallel`` (before it, only the torch-level parts apply); it is
idempotent and :func:`uninstall` undoes it.
"""

from __future__ import annotations

import math

import torch

_STATE: dict[str, object] = {}
_CPU = torch.device("cpu")


def _cuda_like(d: object) -> bool:
    if isinstance(d, bool):
        return False
    return (
        isinstance(d, int)
        or (isinstance(d, str) and d.startswith("cuda"))
        or (isinstance(d, torch.device) and d.type == "cuda")
    )


class CudaToCpuMode(torch.overrides.TorchFunctionMode):
    """Rewrites CUDA ``device=`` keywords to CPU and spoofs ``Tensor.type()``; see the module docstring."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = dict(kwargs or {})
        if _cuda_like(kwargs.get("device")):
            kwargs["device"] = "cpu"
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name if name.startswith("torch.cuda.") else name.replace("torch.", "torch.cuda.", 1)
        return func(*args, **kwargs)


class _NullStream:
    def wait_event(self, *a, **k) -> None:
        pass

    def wait_stream(self, *a, **k) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def record_event(self, *a, **k) -> None:
        return None


def _cpu_memory_buffer():
    from megatron.core.utils import GlobalMemoryBuffer

    class CPUGlobalMemoryBuffer(GlobalMemoryBuffer):
        """megatron's scratch buffer, allocating on CPU (same caching by name and dtype)."""

        def get_tensor(self, tensor_shape, dtype, name, *_, **__):
            n = math.prod(tensor_shape)
            buf = self.buffer.get((name, dtype))
            if buf is None or buf.numel() < n:
                buf = self.buffer[(name, dtype)] = torch.empty(n, dtype=dtype)
            return buf[:n].view(*tensor_shape)

    return CPUGlobalMemoryBuffer()


def needed() -> bool:
    """The accommodations apply only where CUDA is absent."""
    return not torch.cuda.is_available()


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return "mode" in _STATE


def install(seed: int = 1234) -> bool:
    """Apply every accommodation (no-op with CUDA present or when already installed); returns whether active."""
    if not needed():
        return False
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    if not installed():
        _STATE["saved"] = {
            n: getattr(torch.cuda, n) for n in ("current_device", "synchronize", "current_stream", "default_stream")
        }
        torch.cuda.current_device = lambda: _CPU
        torch.cuda.synchronize = lambda *a, **k: None
        torch.cuda.current_stream = torch.cuda.default_stream = lambda *a, **k: _NullStream()
        _STATE["saved_random"] = torch.cuda.random.get_rng_state
        torch.cuda.random.get_rng_state = lambda *a, **k: torch.get_rng_state()
        mode = CudaToCpuMode()
        mode.__enter__()
        _STATE["mode"] = mode
    if parallel_state.model_parallel_is_initialized():  # the RNG tracker and the buffer need megatron's groups
        model_parallel_cuda_manual_seed(seed, inference_rng_tracker=True, force_reset_rng=True)
        parallel_state._GLOBAL_MEMORY_BUFFER = _cpu_memory_buffer()
    return True


def uninstall() -> None:
    """Undo :func:`install` (tests use it to leave the process as they found it)."""
    if not installed():
        return
    _STATE.pop("mode").__exit__(None, None, None)
    for name, fn in _STATE.pop("saved").items():
        setattr(torch.cuda, name, fn)
    torch.cuda.random.get_rng_state = _STATE.pop("saved_random")
