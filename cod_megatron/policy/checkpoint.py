"""Reshardable checkpoints of the policy: megatron-core dist-checkpointing (torch_dist format).

Layout: ``{"model": ..., "optimizer": ..., "step": int}`` (``model0``, ``model1``, ... with virtual pipeline chunks).
``cod_megatron.convert hf-to-mcore`` writes the same ``"model"`` key, so a converted HF checkpoint loads here.

Two megatron-core 0.19.2 details, both without Apex/Transformer Engine (CPU):
* the DistributedOptimizer's default ``fully_sharded_model_space`` format fails to save ("ShardedTensor.
  flattened_range is not supported"); ``fully_reshardable`` saves and reshards across TP, PP, CP and DP;
* torch's Adam has no state before its first step, and ``fully_reshardable`` loading looks for a per-parameter
  ``step`` that the checkpoint deliberately leaves out (``KeyError: 'step'``): see :func:`_load_distributed`.
"""

from __future__ import annotations

import os

import torch
from megatron.core import dist_checkpointing

_OPTIM_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}


def _model_state(chunks: list) -> dict:
    sd = {f"model{i}": m.module.sharded_state_dict() for i, m in enumerate(chunks)}
    return {"model": sd.pop("model0")} if len(chunks) == 1 else sd


def _sharded(chunks: list, optimizer, is_loading: bool) -> dict:
    sd = _model_state(chunks)
    if optimizer is not None:
        sd["optimizer"] = optimizer.sharded_state_dict(dict(sd), is_loading=is_loading, metadata=_OPTIM_METADATA)
    return sd


def has_optimizer_state(path: str) -> bool:
    """Whether the checkpoint at ``path`` holds optimizer state (a converted HF checkpoint does not)."""
    return any(k.startswith("optimizer") for k in dist_checkpointing.load_tensors_metadata(path))


def save(path: str, chunks: list, optimizer=None, *, step: int = 0) -> None:
    """Save the DDP-wrapped model chunks (and the megatron optimizer, when given)."""
    os.makedirs(path, exist_ok=True)
    sd = _sharded(chunks, optimizer, is_loading=False)
    sd["step"] = step
    dist_checkpointing.save(sd, path)


def load(path: str, chunks: list, optimizer=None, *, distributed: bool = False) -> int:
    """Load into the chunks (and optimizer) under the current layout; returns the saved step (0 if none)."""
    if optimizer is not None:
        _materialize_adam_state(optimizer)
    sd = _sharded(chunks, optimizer, is_loading=True)
    common = dist_checkpointing.load_common_state_dict(path)
    loaded = dist_checkpointing.load(sd, path)
    for i, m in enumerate(chunks):
        m.module.load_state_dict(loaded["model" if len(chunks) == 1 else f"model{i}"])
    if optimizer is not None and distributed:
        _load_distributed(optimizer, loaded["optimizer"])
    elif optimizer is not None:
        optimizer.load_state_dict(loaded["optimizer"])
    return int(common.get("step", 0)) if isinstance(common, dict) else 0


def _materialize_adam_state(optimizer) -> None:
    """Give every parameter a fresh Adam state (step 0, zero moments) if it has none yet.

    Without Apex/TE megatron wraps torch.optim.Adam, whose state stays empty until the first step, and loading
    into an untouched optimizer fails (``assert len(steps) == 1``). This is exactly the state a fresh Adam would
    create; the checkpoint then overwrites it in place.
    """
    for opt in (o.optimizer for o in getattr(optimizer, "chained_optimizers", [optimizer])):
        for group in opt.param_groups:
            for p in group["params"]:
                if not opt.state[p]:
                    opt.state[p] = {
                        "step": torch.tensor(0.0),
                        "exp_avg": torch.zeros_like(p),
                        "exp_avg_sq": torch.zeros_like(p),
                    }


def _load_distributed(optimizer, state: dict) -> None:
    """``DistributedOptimizer.load_state_dict`` in its two public halves, keeping the ``step`` tensors aside.

    With torch's Adam, megatron-core 0.19.2 puts a tensor ``step`` into every parameter's state before
    ``load_parameter_state_from_fully_reshardable`` copies the checkpoint in, and that copy then asks the
    checkpoint for a ``step`` entry it skipped on purpose. Loading scalars and param groups first, then the
    parameter state with ``step`` set aside, gives the same result as the TE/Apex path.
    """
    (opt,) = getattr(optimizer, "chained_optimizers", [optimizer])
    state = dict(state)
    param_state, kind = state.pop("param_state"), state.pop("param_state_sharding_type")
    if kind != "fully_reshardable":
        raise ValueError(f"checkpoint optimizer format {kind!r}; expected 'fully_reshardable'")
    opt.load_state_dict(state)
    steps = {p: st.pop("step") for p, st in opt.optimizer.state.items() if "step" in st}
    opt.load_parameter_state_from_fully_reshardable(param_state)
    for p, step in steps.items():
        opt.optimizer.state[p]["step"] = step
