"""On-policy distillation advantage (cod.md 8): per-token reverse KL to a domain teacher.

``A_t = kl_coef * (logp_teacher_t - logp_old_t)``; with ``fix_opd_advantage`` the stale ``logp_old`` is replaced
by the current ``sg(logp_theta)``, so ``A_t = logp_teacher_t - sg(logp_theta_t)`` for ``kl_coef = 1``. Used with
REC, clip none, weight none: ``l_t = -A_t * logp_theta_t``. Shapes: ``[T]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cod_megatron.cod.episode import Episode


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


def reverse_kl_metrics(samples: Sequence[tuple[str, Episode]], teacher: Sequence[Sequence[float]]) -> dict[str, float]:
    """Per-sequence reverse KL to the teacher, ``sum_t (log p_student - log p_teacher)`` over an episode's generated
    tokens at the student's sampled tokens (the k1 estimate of ``KL(student || teacher)``, what OPD minimises),
    averaged per domain and per domain, episode kind and pack position: ``opd/<domain>/reverse_kl`` and
    ``opd/<domain>/reverse_kl_<kind>_pos<j>``. The student's log-probs are the engine's (``rollout_logprobs``)."""
    groups: dict[str, list[float]] = {}
    for (domain, ep), values in zip(samples, teacher, strict=True):
        kl = sum(s - t for s, t, g in zip(ep.rollout_logprobs, values, ep.generated, strict=True) if g)
        for key in (f"opd/{domain}/reverse_kl", f"opd/{domain}/reverse_kl_{ep.kind}_pos{ep.position}"):
            groups.setdefault(key, []).append(kl)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}
