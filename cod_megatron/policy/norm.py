"""RMSNorm for the local spec that works with Megatron sequence parallelism.

megatron-core's ``WrappedTorchNorm`` asserts ``not config.sequence_parallel``. RMSNorm itself needs nothing special
under SP (it is per token); what SP needs is that the weight's gradient, computed on this rank's slice of the
sequence, is summed over the TP group. megatron's ``finalize_model_grads`` does that for every parameter marked
``sequence_parallel = True``, so this norm only sets the mark.

Zero-centred gamma (Qwen3.5, megatron's ``layernorm_zero_centered_gamma``): the stored weight ``w`` scales by
``1 + w`` and starts at zero, so weight decay pulls the scale towards 1 rather than 0; HF's Qwen3.5 norms store the
same ``w``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer.transformer_config import TransformerConfig


class _ZeroCenterable(torch.nn.RMSNorm):
    """``torch.nn.RMSNorm`` whose weight means ``scale - 1`` when the config asks for zero-centred gamma."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float):
        super().__init__(hidden_size, eps=eps, dtype=config.params_dtype)
        self.zero_centered = config.layernorm_zero_centered_gamma
        if self.zero_centered:
            torch.nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.zero_centered:
            return super().forward(x)
        y = F.rms_norm(x.float(), self.normalized_shape, eps=self.eps) * (1.0 + self.weight.float())
        return y.to(x.dtype)


class RMSNorm(_ZeroCenterable):
    """``torch.nn.RMSNorm`` with megatron's norm constructor and the sequence-parallel gradient mark."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6, **_: object):
        super().__init__(config, hidden_size, eps)
        self.weight.sequence_parallel = config.sequence_parallel


class QKRMSNorm(_ZeroCenterable):
    """Per-head RMSNorm of queries/keys (Qwen3); runs after the SP gather, so it carries no SP mark.

    megatron sums q/k layernorm gradients over TP by parameter name (each rank sees different heads). Gated
    DeltaNet's ``out_norm`` (per value head) uses it too; its TP gradient sum is not wired (TP = 1 only so far).
    """

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6, **_: object):
        super().__init__(config, hidden_size, eps)
