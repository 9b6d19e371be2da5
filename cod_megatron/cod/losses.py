"""CoD policy losses (docs/cod.md section 6): pure per-token tensor functions and Megatron's loss contract.

Legend: T tokens of one packed micro-batch, all inputs are 1-D ``[T]``; S samples (one model call / assistant turn
each, section 6.8) identified by a per-token ``sample_ids`` tensor that is unique over the whole optimizer step.

Scaling chain (``calculate_per_token_loss=True``, see ``policy_loss``): every aggregation of section 6.8 is a
weighted token sum ``AGG(x) = sum_t w_t x_t`` whose weights use denominators computed ONCE for the global batch
(``LossDenominators``), so the per-micro-batch partial sums add up to the full-batch value under any micro-batch,
DP or CP split. ``policy_loss`` returns that partial sum multiplied by the global token count N together with its
local token count; megatron adds the gradients of all micro-batches, DDP sums them over DP x CP, and
``finalize_model_grads`` divides once by the summed local counts, which is N again: the gradient is exactly
``grad AGG`` of section 6.9.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from cod_megatron.config import AlgorithmConfig

AggMode = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"]
KLEstimator = Literal["k1", "k2", "k3", "low_var_kl"]
TISMode = Literal["none", "token_tis", "seq_tis", "token_mis", "seq_mis"]

_LOG_RATIO_CLAMP = 20.0
"""exp() overflow guard on log-ratios (verl's bound); the loss is flat there anyway (clipped or masked)."""


# ---- validation -------------------------------------------------------------------------------------------------
def _check_same_shape(**tensors: torch.Tensor | None) -> None:
    """All given tensors must be 1-D with one common length (the packed [T] row)."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    ref = next(iter(shapes.values()))
    if len(ref) != 1 or any(s != ref for s in shapes.values()):
        raise ValueError(f"expected 1-D tensors of one common length [T], got {shapes}")


# ---- per-token policy losses (6.2 - 6.4) ------------------------------------------------------------------------
def _ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """[T] rho_t = exp(logp - old_logp), with gradient through ``logp``."""
    return torch.exp((logp - old_logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))


def rec_one_side_mask(ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float) -> torch.Tensor:
    """[T] bool M_t of 6.2: keep a token unless the ratio already moved past the bound in the advantage's direction.

    ``(A >= 0 and rho <= 1 + eps_high) or (A <= 0 and rho >= 1 - eps_low)``; bounds are inclusive.
    """
    _check_same_shape(ratio=ratio, advantages=advantages)
    r = ratio.detach()
    return ((advantages >= 0) & (r <= 1 + eps_high)) | ((advantages <= 0) & (r >= 1 - eps_low))


def rec_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    clip_mode: Literal["one-side", "none"] = "one-side",
    importance_weight: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REC-OneSide-NoIS (6.2) or, with ``importance_weight``, the IS variant (6.3): ``-A * [sg(rho)] * M * logp``.

    Returns ``(loss [T], clipped [T] bool)`` where ``clipped`` marks tokens the one-side mask removed.
    """
    _check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages)
    ratio = _ratio(logp.detach(), old_logp)
    if clip_mode == "one-side":
        keep = rec_one_side_mask(ratio, advantages, eps_low, eps_high)
    elif clip_mode == "none":
        keep = torch.ones_like(advantages, dtype=torch.bool)
    else:
        raise ValueError(f"clip_mode must be 'one-side' or 'none', got {clip_mode!r}")
    coef = -advantages * keep.to(logp.dtype)
    if importance_weight:
        coef = coef * ratio
    return coef * logp, ~keep


def ppo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    dual_clip: float | None = 3.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO clip with dual clip (6.4); rho carries the gradient.

    Returns ``(loss [T], clipped [T] bool, dual_clipped [T] bool)``: ``clipped`` where the clipped branch is strictly
    larger (active), ``dual_clipped`` where ``-c * A`` bounds a negative-advantage token. ``dual_clip=None`` turns
    the dual clip off; otherwise it must be > 1.
    """
    _check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages)
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    ratio = _ratio(logp, old_logp)
    unclipped = -advantages * ratio
    clipped_branch = -advantages * ratio.clamp(1 - eps_low, 1 + eps_high)
    loss = torch.maximum(unclipped, clipped_branch)
    clipped = clipped_branch.detach() > unclipped.detach()
    if dual_clip is None:
        return loss, clipped, torch.zeros_like(clipped)
    bound = -dual_clip * advantages
    dual = (advantages < 0) & (loss.detach() > bound)
    return torch.where(dual, bound, loss), clipped, dual


# ---- KL and entropy (6.5, 6.6) ----------------------------------------------------------------------------------
def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator) -> torch.Tensor:
    """[T] per-token KL(pi_theta || pi_ref) estimate of 6.5 with delta = logp - ref_logp.

    k1 = delta; k2 = delta^2 / 2; k3 = low_var_kl = exp(-delta) - 1 + delta clamped to [-10, 10] (delta itself is
    clamped to +-20 before exp, as in verl, so that fp32 cannot overflow).
    """
    _check_same_shape(logp=logp, ref_logp=ref_logp)
    delta = logp - ref_logp
    if estimator == "k1":
        return delta
    if estimator == "k2":
        return 0.5 * delta.square()
    if estimator in ("k3", "low_var_kl"):
        d = delta.clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
        return (torch.exp(-d) - 1 + d).clamp(-10.0, 10.0)
    raise ValueError(f"unknown KL estimator {estimator!r}")


def entropy_bonus(entropy: torch.Tensor, entropy_coef: float) -> torch.Tensor:
    """[T] per-token entropy term of 6.6: ``-entropy_coef * H_t`` (a bonus, hence subtracted from the loss)."""
    return -entropy_coef * entropy


# ---- rollout correction (6.7) -----------------------------------------------------------------------------------
def _per_sample_sum(values: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
    """[T] the sum of ``values`` over each token's sample, broadcast back to the sample's tokens."""
    uniq, inverse = torch.unique(sample_ids, return_inverse=True)
    sums = torch.zeros(uniq.numel(), dtype=values.dtype, device=values.device).index_add_(0, inverse, values)
    return sums[inverse]


def rollout_correction(
    old_logp: torch.Tensor,
    rollout_logp: torch.Tensor,
    loss_mask: torch.Tensor,
    sample_ids: torch.Tensor,
    *,
    mode: TISMode,
    cap: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated / masked importance weights of 6.7 against the engine's log-probs (no gradient).

    Token modes use ``exp(old - rollout)`` per token; sequence modes use ``exp(sum_t m_t (old - rollout))`` over the
    sample's masked-in tokens of this tensor (a sample must not be split across calls, e.g. by CP sharding).
    Returns ``(weight [T], corrected [T] bool)``: ``corrected`` marks tokens whose weight was truncated to ``cap``
    (TIS) or zeroed (MIS).
    """
    _check_same_shape(old_logp=old_logp, rollout_logp=rollout_logp, loss_mask=loss_mask, sample_ids=sample_ids)
    if cap <= 0:
        raise ValueError(f"TIS cap must be > 0, got {cap}")
    m = (loss_mask != 0).to(old_logp.dtype)
    log_w = (old_logp - rollout_logp).detach()
    if mode == "none":
        return torch.ones_like(log_w), torch.zeros_like(log_w, dtype=torch.bool)
    if mode in ("seq_tis", "seq_mis"):
        log_w = _per_sample_sum(m * log_w, sample_ids)
    elif mode not in ("token_tis", "token_mis"):
        raise ValueError(f"unknown rollout correction mode {mode!r}")
    over = log_w > math.log(cap)
    if mode.endswith("_tis"):
        return torch.exp(log_w.clamp(max=math.log(cap))), over
    return (~over).to(old_logp.dtype), over


def rollout_mismatch(old_logp: torch.Tensor, rollout_logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token engine/trainer mismatch ``(kl [T], abs_diff [T])`` on tokens sampled by the engine.

    kl is the k3 estimate of KL(pi_rollout || pi_old): ``exp(delta) - 1 - delta`` with delta = old - rollout
    (non-negative, unbiased under the rollout policy); abs_diff is ``|delta|``.
    """
    _check_same_shape(old_logp=old_logp, rollout_logp=rollout_logp)
    delta = (old_logp - rollout_logp).detach().clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    return torch.exp(delta) - 1 - delta, delta.abs()


# ---- aggregation (6.8) ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossDenominators:
    """Global denominators of one optimizer step, computed once before the micro-batch / DP / CP split (R13)."""

    num_tokens: int
    """N: masked-in tokens of the whole step."""
    num_sequences: int
    """|B'|: samples with at least one masked-in token."""
    sample_ids: torch.Tensor
    """[|B'|] int64 sorted global ids of the samples in B'."""
    sample_num_tokens: torch.Tensor
    """[|B'|] int64 masked-in tokens of each of those samples."""

    def to(self, device: torch.device) -> LossDenominators:
        """The same denominators with their tensors on ``device`` (the micro-batches' device)."""
        if self.sample_ids.device == device:
            return self
        return replace(self, sample_ids=self.sample_ids.to(device), sample_num_tokens=self.sample_num_tokens.to(device))


def compute_denominators(loss_masks: Sequence[torch.Tensor], sample_ids: Sequence[torch.Tensor]) -> LossDenominators:
    """Denominators from every micro-batch of the step (all DP ranks): ``loss_masks[i]`` and ``sample_ids[i]`` [T_i].

    Sample ids must be unique over the whole step (one id per model call), not per micro-batch.
    """
    if len(loss_masks) != len(sample_ids) or not loss_masks:
        raise ValueError("need one sample_ids tensor per loss mask, and at least one micro-batch")
    for mask, ids in zip(loss_masks, sample_ids, strict=True):
        _check_same_shape(loss_mask=mask, sample_ids=ids)
    keep = torch.cat([m.detach().cpu() != 0 for m in loss_masks])
    ids = torch.cat([i.cpu().long() for i in sample_ids])[keep]
    uniq, counts = torch.unique(ids, sorted=True, return_counts=True)
    return LossDenominators(
        num_tokens=int(keep.sum()), num_sequences=int(uniq.numel()), sample_ids=uniq, sample_num_tokens=counts
    )


def aggregation_weights(
    loss_mask: torch.Tensor, sample_ids: torch.Tensor, denom: LossDenominators, mode: AggMode
) -> torch.Tensor:
    """[T] float64 weights w_t with ``AGG(x) = sum_t w_t x_t`` over the step (6.8), from the global denominators.

    token_mean: m / N; seq_mean_token_sum: m / |B'|; seq_mean_token_mean: m / (n_s |B'|), n_s the sample's tokens.
    """
    _check_same_shape(loss_mask=loss_mask, sample_ids=sample_ids)
    keep = loss_mask.detach() != 0
    m = keep.to(torch.float64)
    if mode == "token_mean":
        return m / max(denom.num_tokens, 1)
    if mode == "seq_mean_token_sum":
        return m / max(denom.num_sequences, 1)
    if mode == "seq_mean_token_mean":
        if denom.sample_ids.numel() == 0:  # no loss token in the whole step (a shape, not a value: no host read)
            return m
        known = denom.sample_ids.to(sample_ids.device)
        pos = torch.searchsorted(known, sample_ids.long()).clamp(max=known.numel() - 1)
        n = denom.sample_num_tokens.to(m.device, torch.float64)[pos]  # >= 1; masked-out tokens get m = 0
        return m / (n * max(denom.num_sequences, 1))
    raise ValueError(f"unknown loss_agg mode {mode!r}")


# ---- total loss with Megatron's contract (6.9) ------------------------------------------------------------------
@dataclass(frozen=True)
class LossOptions:
    """Loss knobs the config tree does not carry yet (defaults: the spec's CoD setting, no rollout correction)."""

    clip_mode: Literal["one-side", "none"] = "one-side"
    """REC / IS mask; 'none' sets M = 1 (OPD, 6.2)."""
    dual_clip: float | None = 3.0
    """PPO dual-clip constant c > 1 (6.4); None disables it."""
    rollout_correction: TISMode = "none"
    """6.7; needs ``rollout_logp``."""
    rollout_cap: float = 2.0
    """C of 6.7."""


class _TokenMeans:
    """A micro-batch's ``[sum, count]`` metric pairs over its masked-in tokens (count n_i, the same for each)."""

    def __init__(self, mask: torch.Tensor, n: torch.Tensor, dtype: torch.dtype):
        self.mask, self.n, self.dtype = mask, n, dtype
        self.metrics: dict[str, torch.Tensor] = {}

    def add(self, name: str, x: torch.Tensor) -> None:
        """``metrics[name] = [sum_t m_t x_t, n_i]`` (detached)."""
        self.metrics[name] = torch.stack([(x.detach().to(self.dtype) * self.mask).sum(), self.n])


def _check_loss_inputs(cfg: AlgorithmConfig, options: LossOptions, **tensors: torch.Tensor | None) -> None:
    """One common [T] shape, and every tensor the configured terms need."""
    _check_same_shape(**tensors)
    if cfg.kl_coef > 0 and tensors["ref_logp"] is None:
        raise ValueError("kl_coef > 0 needs ref_logp")
    if cfg.entropy_coef > 0 and tensors["entropy"] is None:
        raise ValueError("entropy_coef > 0 needs entropy")
    if options.rollout_correction != "none" and tensors["rollout_logp"] is None:
        raise ValueError(f"rollout correction {options.rollout_correction!r} needs rollout_logp")


def _surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, cfg: AlgorithmConfig, options: LossOptions
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The configured per-token policy loss (6.2 - 6.4): ``(loss [T], clipped [T], dual-clipped [T] or None)``."""
    eps = {"eps_low": cfg.clip_eps_low, "eps_high": cfg.clip_eps_high}
    if cfg.policy_loss in ("rec", "is"):
        per_token, clipped = rec_loss(
            logp, old_logp, advantages, **eps, clip_mode=options.clip_mode, importance_weight=cfg.policy_loss == "is"
        )
        return per_token, clipped, None
    if cfg.policy_loss == "ppo":
        return ppo_loss(logp, old_logp, advantages, **eps, dual_clip=options.dual_clip)
    raise ValueError(f"unknown policy_loss {cfg.policy_loss!r}")


def _regularised(
    per_token: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    entropy: torch.Tensor | None,
    cfg: AlgorithmConfig,
    means: _TokenMeans,
) -> torch.Tensor:
    """``per_token + kl_coef k - entropy_coef H`` (6.5, 6.6) for the terms whose inputs are given."""
    total = per_token
    if ref_logp is not None:
        kl = kl_penalty(logp, ref_logp.detach(), cfg.kl_estimator)
        total = total + cfg.kl_coef * kl
        means.add("kl", kl)
    if entropy is not None:
        total = total + entropy_bonus(entropy, cfg.entropy_coef)
        means.add("entropy", entropy)
    return total


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    sample_ids: torch.Tensor,
    denom: LossDenominators,
    cfg: AlgorithmConfig,
    *,
    entropy: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    rollout_logp: torch.Tensor | None = None,
    options: LossOptions = LossOptions(),  # noqa: B008 (frozen, immutable)
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One micro-batch's share of ``AGG(w l) + kl_coef AGG(k) - entropy_coef AGG(H)`` (6.9), megatron-scaled.

    All tensors are [T]; ``advantages`` is already broadcast to tokens. Returns ``(loss, num_tokens, metrics)``:

    - ``num_tokens`` = this micro-batch's masked-in tokens n_i (int), so ``sum_i n_i = N = denom.num_tokens``;
    - ``loss`` = ``N * sum_t w_t (...)`` with the global aggregation weights w_t. Megatron (per-token mode) adds the
      gradients of all micro-batches, DDP sums them over DP x CP, and ``finalize_model_grads`` divides once by
      ``max(sum_i n_i, 1) = max(N, 1)``, leaving exactly ``grad`` of the spec's aggregated loss. For token_mean
      this is the plain masked token sum.
    - ``metrics``: ``[sum, count]`` pairs with count n_i; reducing ``sum / count`` over the step gives the total
      loss for "loss" and token means for the rest.
    """
    tensors = {"logp": logp, "old_logp": old_logp, "advantages": advantages, "loss_mask": loss_mask}
    tensors |= {"sample_ids": sample_ids, "entropy": entropy, "ref_logp": ref_logp, "rollout_logp": rollout_logp}
    _check_loss_inputs(cfg, options, **tensors)

    old_logp, advantages = old_logp.detach(), advantages.detach().to(logp.dtype)
    per_token, clipped, dual = _surrogate(logp, old_logp, advantages, cfg, options)

    mask = (loss_mask != 0).to(logp.dtype)
    n = mask.sum().detach()
    means = _TokenMeans(mask, n, logp.dtype)
    if rollout_logp is not None:  # 6.7
        weight, corrected = rollout_correction(
            old_logp, rollout_logp, loss_mask, sample_ids, mode=options.rollout_correction, cap=options.rollout_cap
        )
        per_token = per_token * weight.to(logp.dtype)
        mis_kl, mis_abs = rollout_mismatch(old_logp, rollout_logp)
        means.add("rollout_weight", weight)
        means.add("rollout_corrected_frac", corrected)
        means.add("mismatch_kl", mis_kl)
        means.add("mismatch_abs_logp_diff", mis_abs)
    total = _regularised(per_token, logp, ref_logp, entropy, cfg, means)

    scale = max(denom.num_tokens, 1)
    w = (aggregation_weights(loss_mask, sample_ids, denom, cfg.loss_agg) * scale).to(logp.dtype)
    loss = (w * total).sum()

    means.metrics["loss"] = torch.stack([loss.detach(), n])
    means.add("pg_loss", per_token)
    means.add("logprob", logp)
    means.add("clip_frac", clipped)
    means.add("ratio", _ratio(logp.detach(), old_logp))
    log_ratio = (logp.detach() - old_logp) * mask
    means.add("old_kl", log_ratio.exp() - 1 - log_ratio)  # k3 estimate of KL(old || current): 0 before any update
    if dual is not None:
        means.add("dual_clip_frac", dual)
    return loss, n.to(torch.int), means.metrics
