"""Shared pieces of the typed config tree: the error type and the generic type check.

Every section is a ``@dataclass(kw_only=True)``; a field's docstring (the string literal under it) is its help
text. Values are checked once, after overrides, by :func:`cod_megatron.config.root.finalize`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin


class ConfigError(ValueError):
    """A bad config value; ``field`` is its dotted name (``parallel.tp``)."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def require(cond: bool, field: str, reason: str) -> None:
    """Raise :class:`ConfigError` for ``field`` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(field, reason)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a config dataclass (handles ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def type_name(tp: Any) -> str:
    """Human-readable name of an annotation, for error messages."""
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` is a valid instance of annotation ``tp`` (the subset of typing the configs use)."""
    if tp is Any:
        return True
    origin = get_origin(tp)
    if _is_union(tp):
        return any(matches(value, a) for a in get_args(tp))
    if origin is Literal:
        return value in get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        if not isinstance(value, origin):
            return False
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
        return all(matches(v, args[0]) for v in value) if args else True
    if origin is dict:
        kt, vt = get_args(tp) or (Any, Any)
        return isinstance(value, dict) and all(matches(k, kt) and matches(v, vt) for k, v in value.items())
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    return isinstance(value, tp)


def check_types(obj: Any, prefix: str) -> None:
    """Recursively check every field of a config dataclass against its annotation."""
    hints = field_types(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_types(value, name)
            continue
        require(matches(value, tp), name, f"expected {type_name(tp)}, got {value!r}")
