"""On-policy distillation advantage (cod.md 8): per-token reverse KL to a domain teacher.

``A_t = kl_coef * (logp_teacher_t - logp_old_t)``; with ``fix_opd_advantage`` the stale ``logp_old`` is replaced
by the current ``sg(logp_theta)``, so ``A_t = logp_teacher_t - sg(logp_theta_t)`` for ``kl_coef = 1``. Used with
REC, clip none, weight none: ``l_t = -A_t * logp_theta_t``. Shapes: ``[T]``.
"""

from __future__ import annotations

import torch


def opd_advantages(
    teacher_logp: torch.Tensor,
    old_logp: torch.Tensor,
    *,
    kl_coef: float = 1.0,
    current_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token OPD advantage; pass ``current_logp`` for the staleness-corrected (``fix_opd_advantage``) form."""
    if teacher_logp.shape != old_logp.shape or (current_logp is not None and current_logp.shape != old_logp.shape):
        raise ValueError(
            f"opd_advantages: shapes differ: teacher {list(teacher_logp.shape)}, old "
            f"{list(old_logp.shape)}, current {None if current_logp is None else list(current_logp.shape)}"
        )
    adv = kl_coef * (teacher_logp - old_logp)
    if current_logp is not None:
        adv = adv + (old_logp - current_logp.detach())
    return adv
