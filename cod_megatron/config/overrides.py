"""Dotted ``section.field=value`` overrides, parsed by the field's annotated type."""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any, Literal, Union, get_args, get_origin

from cod_megatron.config.base import ConfigError, field_types, matches, type_name

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse(text: str, tp: Any, name: str) -> Any:
    """Turn the command-line text into a value of annotation ``tp``."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and text.lower() in {"none", "null"}:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse(text, a, name)
            except ConfigError as e:
                errors.append(e.reason)
        raise ConfigError(name, f"expected {type_name(tp)}, got {text!r}")
    if origin is Literal:
        for a in get_args(tp):
            if str(a) == text:
                return a
        raise ConfigError(name, f"expected one of {type_name(tp)}, got {text!r}")
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(name, f"expected a boolean (true/false), got {text!r}")
    if tp in (int, float):
        try:
            value = tp(text) if tp is float else int(text.replace("_", ""))
        except ValueError:
            raise ConfigError(name, f"expected {tp.__name__}, got {text!r}") from None
        return value
    if tp is str:
        return text
    if origin in (list, tuple, dict):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            if origin is dict:
                raise ConfigError(name, f"expected a JSON object, got {text!r}") from None
            bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text  # [a,b] as Hydra writes it
            value = [v.strip() for v in bare.split(",") if v.strip()]
        if origin is tuple and isinstance(value, list):
            value = tuple(value)
        if not matches(value, tp):
            raise ConfigError(name, f"expected {type_name(tp)}, got {text!r}")
        return value
    raise ConfigError(name, f"cannot be overridden from the command line (type {type_name(tp)})")


def apply_override(cfg: Any, item: str) -> None:
    """Apply one ``a.b.c=value`` to a config tree in place."""
    if "=" not in item:
        raise ConfigError(item, "an override must look like section.field=value")
    path, text = item.split("=", 1)
    keys = path.strip().split(".")
    node: Any = cfg
    for i, key in enumerate(keys):
        name = ".".join(keys[: i + 1])
        if not dataclasses.is_dataclass(node) or key not in {f.name for f in dataclasses.fields(node)}:
            known = ", ".join(f.name for f in dataclasses.fields(node)) if dataclasses.is_dataclass(node) else ""
            raise ConfigError(name, f"unknown field (known here: {known})" if known else "unknown field")
        if i == len(keys) - 1:
            tp = field_types(type(node))[key]
            if dataclasses.is_dataclass(getattr(node, key)):
                raise ConfigError(name, "is a section; override one of its fields")
            setattr(node, key, _parse(text, tp, name))
        else:
            node = getattr(node, key)


def apply_overrides(cfg: Any, items: list[str]) -> Any:
    """Apply several overrides in order; returns ``cfg`` for chaining."""
    for item in items:
        apply_override(cfg, item)
    return cfg
