"""Per-token log-probabilities of the targets and entropy from vocab-parallel logits (the reference path).

The math (and its tensor-parallel reduction) lives with the kernel it is the reference of:
``cod_kernels.fused_linear_logprob_reference.vocab_parallel_logprobs``; here it gets megatron's TP state.
"""

from __future__ import annotations

import torch

from cod_kernels.fused_linear_logprob_reference import vocab_parallel_logprobs


def tp_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`vocab_parallel_logprobs` with the vocab slice and group of megatron's tensor-parallel state."""
    from megatron.core import parallel_state

    rank = parallel_state.get_tensor_model_parallel_rank()
    return vocab_parallel_logprobs(
        logits, targets, vocab_start=rank * logits.shape[-1], group=parallel_state.get_tensor_model_parallel_group()
    )
