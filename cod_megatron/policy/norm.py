"""RMSNorm for the local spec that works with Megatron sequence parallelism.

megatron-core's ``WrappedTorchNorm`` asserts ``not config.sequence_parallel``. RMSNorm itself needs nothing special
under SP (it is per token); what SP needs is that the weight's gradient, computed on this rank's slice of the
sequence, is summed over the TP group. megatron's ``finalize_model_grads`` does that for every parameter marked
``sequence_parallel = True``, so this norm only sets the mark.
"""

from __future__ import annotations

import torch
from megatron.core.transformer.transformer_config import TransformerConfig


class RMSNorm(torch.nn.RMSNorm):
    """``torch.nn.RMSNorm`` with megatron's norm constructor and the sequence-parallel gradient mark."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6, **_: object):
        super().__init__(hidden_size, eps=eps, dtype=config.params_dtype)
        self.weight.sequence_parallel = config.sequence_parallel


class QKRMSNorm(torch.nn.RMSNorm):
    """Per-head RMSNorm of queries/keys (Qwen3); runs after the SP gather, so it carries no SP mark.

    megatron sums q/k layernorm gradients over TP by parameter name (each rank sees different heads).
    """

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6, **_: object):
        super().__init__(hidden_size, eps=eps, dtype=config.params_dtype)
