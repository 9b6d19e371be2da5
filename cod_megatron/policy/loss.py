"""The policy loss path with Megatron's ``(loss, num_tokens, metrics)`` contract.

Scaling chain: the loss function returns the *sum* of per-token losses of its micro-batch and the number of loss
tokens. With ``calculate_per_token_loss=True`` megatron adds the gradients of all micro-batches, DDP sums (not
averages) them over DP x CP, and ``finalize_model_grads`` divides once by the token count summed over the same
ranks. The gradient is therefore the token-mean over the whole step, whatever the micro-batch or DP split.

Until the CoD losses land (REC / IS / PPO, RED), the objective here is the plain segment-advantage policy gradient
``-A_seg * log p(token)``: the shape every CoD loss shares.
"""

from __future__ import annotations

import torch

from cod_megatron.data import PackedBatch


def segment_advantage_loss(
    logprobs: torch.Tensor, entropy: torch.Tensor, batch: PackedBatch
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Token-sum policy-gradient loss of one packed micro-batch.

    Returns ``(loss_sum, num_tokens, metrics)``; metrics hold ``[sum, count]`` pairs so that megatron-style
    reductions over micro-batches and DP ranks give exact token means.
    """
    mask = batch.loss_mask.to(logprobs.dtype)
    adv = batch.token_advantages().to(logprobs.dtype)
    loss_sum = -(adv * logprobs * mask).sum()
    num_tokens = mask.sum().to(torch.int)
    n = mask.sum().detach()
    metrics = {
        "loss": torch.stack([loss_sum.detach(), n]),
        "logprob": torch.stack([(logprobs * mask).sum().detach(), n]),
        "entropy": torch.stack([(entropy * mask).sum().detach(), n]),
    }
    return loss_sum, num_tokens, metrics
