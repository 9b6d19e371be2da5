"""On-policy distillation's measure (cod.md 8): the reverse KL of the student's samples to their domain's teacher.

The OPD advantage itself, ``A_t = logp_teacher_t - sg(logp_theta_t)`` (the staleness fix), is formed inside the
forward from the current log-probs: ``cod_megatron.cod.token_advantages`` (``algorithm.teacher_coef``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cod_megatron.cod.episode import Episode


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
