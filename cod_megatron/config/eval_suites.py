"""``eval.suites`` entries: ``[NAME=]DOMAIN[:SETTING][/OPTION...]``, parsed once (cod.md 10: the paper's suites).

Options, each at most once: ``s<N>`` pack size (default: the run's ``rollout.pack_size``), a packing (``cod``, the
default; ``ralph_sample``; ``ralph_full``), ``hidden`` (every solve prompt shows the initial hint: the control),
``n<N>`` packs (default ``eval.packs``), ``r<N>`` rollouts per pack (rollout seeds 0..N-1, default 1). Examples:
``frozenlake_obscure:hard/s8`` (in-domain, harder, packs of 8), ``alchemy_random/s8/ralph_sample`` (cross-domain,
the Ralph loop), ``hk_blind=hidden_key/hidden/r3``. The default name joins the domain, a non-default setting, the
size and every other option given (``frozenlake_obscure_hard_s8``); metrics are ``eval/<name>/...``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cod_megatron.config.base import ConfigError
from cod_megatron.config.train_domains import SETTINGS

PACKINGS = ("cod", "ralph_sample", "ralph_full")


@dataclass(frozen=True)
class EvalSuite:
    """One evaluation suite: a domain and setting, how its packs are formed and shown, how many, how often."""

    name: str
    domain: str
    setting: str
    pack_size: int
    packing: str = "cod"
    hints_visible: bool = True
    packs: int = 64
    rollouts: int = 1


def _count(option: str, prefix: str, entry: str, field: str) -> int:
    text = option[len(prefix) :]
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(field, f"{entry!r}: option {option!r} needs a positive integer after {prefix!r}")
    return int(text)


def parse_eval_suite(entry: str, *, setting: str, pack_size: int, packs: int, field: str) -> EvalSuite:
    """One entry -> :class:`EvalSuite`; a :class:`ConfigError` naming ``field`` for anything malformed."""
    name, eq, spec = entry.partition("=")
    if not eq:
        name, spec = "", entry
    head, *options = spec.split("/")
    domain, colon, chosen = head.partition(":")
    if not domain or (eq and not name):
        raise ConfigError(field, f"{entry!r}: expected [NAME=]DOMAIN[:SETTING][/OPTION...]")
    if colon and chosen not in SETTINGS:
        raise ConfigError(field, f"{entry!r}: setting must be one of {', '.join(SETTINGS)}, got {chosen!r}")
    values: dict[str, object] = {}
    for option in options:
        if option in PACKINGS:
            key, value = "packing", option
        elif option == "hidden":
            key, value = "hints_visible", False
        elif option[:1] in "snr" and option[1:].isdigit():
            key = {"s": "pack_size", "n": "packs", "r": "rollouts"}[option[0]]
            value = _count(option, option[0], entry, field)
        else:
            raise ConfigError(field, f"{entry!r}: unknown option {option!r} (s<N>, n<N>, r<N>, hidden, {PACKINGS})")
        if key in values:
            raise ConfigError(field, f"{entry!r}: {key} given twice")
        values[key] = value
    size = values.get("pack_size", pack_size)
    if isinstance(size, int) and size < 2:
        raise ConfigError(field, f"{entry!r}: a pack holds at least 2 tasks")
    suite = EvalSuite(name=name, domain=domain, setting=chosen if colon else setting, pack_size=pack_size, packs=packs)
    suite = replace(suite, **values)
    if not name:
        rest = [o for o in options if not (o[:1] == "s" and o[1:].isdigit())]
        parts = [domain, chosen if colon else "", f"s{suite.pack_size}", *rest]
        suite = replace(suite, name="_".join(p for p in parts if p))
    return suite


def parse_eval_suites(
    entries: list[str], *, setting: str, pack_size: int, packs: int, field: str = "eval.suites"
) -> list[EvalSuite]:
    """Every entry parsed; two suites with one name are refused (their metrics would collide)."""
    suites = [
        parse_eval_suite(e, setting=setting, pack_size=pack_size, packs=packs, field=f"{field}[{i}]")
        for i, e in enumerate(entries)
    ]
    names = [s.name for s in suites]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(field, f"suite names {', '.join(twice)} appear twice; name them (NAME=...)")
    return suites
