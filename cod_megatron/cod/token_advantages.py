"""Per-token advantages: the part known before the forward, plus one term formed from the current log-probs.

Shapes ``[T]``. For every loss (REC, IS, PPO) the advantage of target token t is

    A_t = fixed_t + c * (teacher_t - sg(logp_theta_t))

``fixed_t`` is data: the segment's (episode's) advantage spread to its tokens, plus an optional per-token term
(per-turn credit inside an episode). The second term needs this forward's log-probs: with c = 1 it is cod.md 8's
staleness-fixed on-policy distillation advantage, ``A_t = logp_teacher_t - sg(logp_theta_t)`` (any ``kl_coef`` k of
8 fits too: ``fixed_t = (k - 1)(teacher_t - old_t)``).

Why this shape and not a free callback ``advantage(logp)``: the fused ``pg_head`` differentiates the loss one chunk
of rows at a time, which is exact only while token t's loss reads token t's log-prob alone. Data plus one per-token
coefficient keeps every advantage token-separable by construction, splits with the tokens under any micro-batch,
DP or CP split, and crosses process boundaries as plain tensors. The term is detached: an advantage never carries
gradient, so ``l_t = -A_t logp_t`` has ``dl/dlogp_t = -A_t``, evaluated at the current log-prob.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenAdvantages:
    """``A_t = fixed_t + teacher_coef * (teacher_logp_t - sg(logp_t))``; see the module docstring."""

    fixed: torch.Tensor
    """[T] segment advantage spread to tokens, plus the per-token term where there is one (no gradient)."""
    teacher_logp: torch.Tensor | None = None
    """[T] log-probs the current ones are compared with (OPD: the teacher's); None: no such term."""
    teacher_coef: float = 0.0
    """c; 0 turns the term off (and ``teacher_logp`` is then not read)."""

    def at(self, logp: torch.Tensor) -> torch.Tensor:
        """[T] the advantages given this forward's log-probs (read detached). Without the current-log-prob term this
        is ``fixed`` itself: segment advantages pass through bit for bit."""
        if self.teacher_coef == 0 or self.teacher_logp is None:
            return self.fixed
        if self.teacher_logp.shape != logp.shape:
            raise ValueError(f"teacher log-probs {list(self.teacher_logp.shape)} and log-probs {list(logp.shape)}")
        return self.fixed + self.teacher_coef * (self.teacher_logp.detach() - logp.detach())
