"""Lazy ``make_rows`` for domain packages: a package exports its rows generator without importing ``data`` early."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_make_rows(package: str, default_setting: str) -> Callable[..., list[dict[str, Any]]]:
    """``<package>.data.make_rows``, imported on first call.

    Importing ``data`` from the package's ``__init__`` would load it twice under ``python -m <package>.data``
    (runpy warns); the registry and the tests call this wrapper instead.
    """

    def make_rows(
        n: int, seed: int = 42, split: str = "train", setting: str = default_setting, **options: Any
    ) -> list[dict[str, Any]]:
        return importlib.import_module(f"{package}.data").make_rows(n, seed, split, setting, **options)

    make_rows.__doc__ = (
        f"Rows of ``{package}``: see ``{package}.data.make_rows`` (default setting {default_setting!r})."
    )
    return make_rows
