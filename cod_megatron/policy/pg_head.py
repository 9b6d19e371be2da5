"""The trainer's ``pg_head`` path: megatron's output layer and the CoD loss gradient in one op, ``linear_pg_head``.

``cod_kernels.linear_pg_head`` computes, per chunk of loss rows, the logits, the per-token log-prob and entropy, the
loss gradient (from the callback built here out of the trainer's own ``packed_policy_loss``), dH and dW -- in the
forward. This file connects it to megatron-core (docs/linear_pg_head.md):

- an ``output_processor`` for ``GPTModel`` that returns ``(logp, entropy, surrogate)`` instead of logits;
- the loss function adds the 0-valued ``surrogate`` to the detached loss value: same value and metrics as the
  logits path, the gradient flows through the surrogate into the stored dH;
- dW goes straight into megatron's fp32 ``weight.main_grad``, scaled by the optimizer's loss scale (megatron applies
  nothing else after a per-token loss); a placeholder weight gradient then keeps megatron's DDP contract: its
  post-accumulate hook fires for the weight (bucket readiness with ``overlap_grad_reduce``), sees
  ``grad_added_to_main_grad`` and does not add the placeholder again -- the trick megatron's own
  ``LinearWithGradAccumulationAndAsyncCommunication`` uses with gradient-accumulation fusion. With tied embeddings
  on one stage (``zero_out_wgrad``) the placeholder is zeros, so the embedding's real gradient still gets added.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from megatron.core import parallel_state, tensor_parallel

from cod_kernels.linear_pg_head import linear_pg_head, token_loss_grad
from cod_kernels.linear_pg_head_rows import TORCH_ROW_PASS
from cod_megatron.cod.losses import LossDenominators
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data import PackedBatch
from cod_megatron.policy.loss import packed_policy_loss


class _MainGradWritten(torch.autograd.Function):
    """A 0-valued scalar of ``weight`` whose backward hands megatron's DDP a placeholder weight gradient.

    The real gradient is already in ``weight.main_grad``; without any gradient the weight's accumulate-grad node
    (where DDP hangs its hook) would never run, and with ``overlap_grad_reduce`` the hook asserts a gradient.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor) -> torch.Tensor:
        ctx.weight = weight
        return torch.zeros((), dtype=torch.float32, device=weight.device)

    @staticmethod
    def backward(ctx, _grad):
        weight = ctx.weight
        weight.grad_added_to_main_grad = True
        if getattr(weight, "zero_out_wgrad", False):  # tied embeddings, one stage: summed with the real grad
            return torch.zeros_like(weight)
        return torch.empty_like(weight)  # skipped by the hook (grad_added_to_main_grad)


def head_inputs(hidden_states, output_layer, output_weight, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """What both fused heads take from megatron's output processor: ``[T, H]`` hidden states divided by the sampling
    temperature (``logits / T = (h / T) W^T``) and the output weight (the shared embedding when tied). The TP region
    op in front (SP gather, else copy) sums the per-shard hidden gradient in its backward."""
    weight = output_weight if output_weight is not None else output_layer.weight
    if output_layer.sequence_parallel:
        hidden = tensor_parallel.gather_from_sequence_parallel_region(hidden_states, tensor_parallel_output_grad=True)
    else:
        hidden = tensor_parallel.copy_to_tensor_model_parallel_region(hidden_states)
    return (hidden[:, 0] if temperature == 1.0 else hidden[:, 0] / temperature), weight


def pg_head(
    batch: PackedBatch,
    rows: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    temperature: float,
    grad_scale: float,
    chunk_rows: int,
):
    """An ``output_processor`` returning ``(logp [T], entropy [T], surrogate)`` of ``batch`` (this rank's share).

    ``rows``: int64 indices of the loss tokens on the model's device (computed on the host: no device sync).
    ``loss_fn(logp [T], entropy [T]) -> loss``: the micro-batch's loss (``None``: forward only -- GEMM and row pass).
    ``grad_scale``: the scalar megatron's schedule will multiply the loss by (the optimizer's loss scale).
    """

    def head(hidden_states, output_layer, output_weight, **_):
        hidden, weight = head_inputs(hidden_states, output_layer, output_weight, temperature)
        main_grad = getattr(weight, "main_grad", None) if loss_fn is not None else None
        out = linear_pg_head(
            hidden,
            weight,
            batch.labels,
            rows=rows,
            grad_fn=None if loss_fn is None else token_loss_grad(loss_fn, batch.labels.numel()),
            main_grad=main_grad,
            grad_scale=grad_scale,
            vocab_start=parallel_state.get_tensor_model_parallel_rank() * weight.shape[0],
            group=parallel_state.get_tensor_model_parallel_group(),
            chunk_rows=chunk_rows,
            config=None if hidden.device.type == "cuda" else TORCH_ROW_PASS,  # CPU: torch ops, no interpreter
        )
        surrogate = out.surrogate
        if main_grad is not None and torch.is_grad_enabled() and weight.requires_grad:
            surrogate = surrogate + _MainGradWritten.apply(weight)
        return out.logp, out.entropy, surrogate

    return head


def pg_loss_fn(
    batch: PackedBatch, denom: LossDenominators, cfg: AlgorithmConfig, sample_offset: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The micro-batch's loss as a function of its ``[T]`` log-probs and entropies: what ``linear_pg_head``
    differentiates per chunk. Every term of ``packed_policy_loss`` is per token (the on-policy ``old = sg(logp)`` and
    the rollout weights included), so the chunk's gradient does not depend on the other rows' values."""
    ent_used = cfg.entropy_coef != 0

    def loss_fn(logp: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
        return packed_policy_loss(logp, entropy if ent_used else entropy.detach(), batch, denom, cfg, sample_offset)[0]

    return loss_fn


def pg_head_loss(
    output: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    batch: PackedBatch,
    denom: LossDenominators,
    cfg: AlgorithmConfig,
    sample_offset: int,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """megatron's ``(loss, num_tokens, metrics)`` from the head's output: values from ``packed_policy_loss`` on the
    (gradient-free) log-probs, the gradient through ``surrogate``."""
    logp, entropy, surrogate = output
    loss, n, metrics = packed_policy_loss(logp, entropy, batch, denom, cfg, sample_offset)
    return loss.detach() + surrogate, n, metrics


def loss_scale(config, device: torch.device) -> float:
    """The scalar megatron's schedule multiplies a per-token loss by before its backward (1.0 without
    ``grad_scale_func``, i.e. fp32 / bf16): dW enters ``main_grad`` in the forward, so it is scaled up front.
    Read once per step (one host sync with a dynamic fp16 loss scale)."""
    if not config.calculate_per_token_loss:
        raise ValueError("the pg_head LM head needs megatron's calculate_per_token_loss=True")
    if config.grad_scale_func is None:
        return 1.0
    return float(config.grad_scale_func(torch.ones(1, device=device)).item())
