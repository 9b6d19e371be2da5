"""``env.train_domains`` entries: ``NAME[:SETTING][@WEIGHT]`` (e.g. ``alchemy_random:hard@2``), parsed once.

A run's training domains and their share of every step's packs (setting B of the paper trains FrozenLake-Obscure and
Alchemy-Random 1:1, cod.md 7.2). The setting defaults to ``env.setting``, the weight to 1; a weight is relative (the
step's packs are split by ``rollout.pack_source.pack_quotas``), so it must be a positive finite number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cod_megatron.config.base import ConfigError

SETTINGS = ("easy", "hard")


@dataclass(frozen=True)
class TrainDomain:
    """One training domain of the run, its setting and its relative weight."""

    name: str
    setting: str
    weight: float = 1.0

    def __str__(self) -> str:
        return f"{self.name}:{self.setting}@{self.weight:g}"


def parse_train_domain(entry: str, default_setting: str, field: str) -> TrainDomain:
    """``NAME[:SETTING][@WEIGHT]`` -> :class:`TrainDomain`; a :class:`ConfigError` naming ``field`` otherwise."""
    head, at, weight_text = entry.partition("@")
    name, colon, setting = head.partition(":")
    if not name or any(c in name for c in " :@"):
        raise ConfigError(field, f"{entry!r}: expected NAME[:SETTING][@WEIGHT], e.g. alchemy_random:easy@1")
    setting = setting if colon else default_setting
    if setting not in SETTINGS:
        raise ConfigError(field, f"{entry!r}: setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    weight = 1.0
    if at:
        try:
            weight = float(weight_text)
        except ValueError:
            raise ConfigError(field, f"{entry!r}: weight {weight_text!r} is not a number") from None
        if not (math.isfinite(weight) and weight > 0):
            raise ConfigError(field, f"{entry!r}: weight must be a positive number (a domain not trained is left out)")
    return TrainDomain(name, setting, weight)


def parse_train_domains(
    entries: list[str], default_setting: str, field: str = "env.train_domains"
) -> list[TrainDomain]:
    """Every entry parsed; a domain named twice is refused (its packs could not be told apart)."""
    if not entries:
        raise ConfigError(field, "must name at least one domain")
    domains = [parse_train_domain(e, default_setting, f"{field}[{i}]") for i, e in enumerate(entries)]
    names = [d.name for d in domains]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(field, f"names {', '.join(twice)} more than once; give each domain one entry")
    return domains
