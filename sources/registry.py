"""The adapter registry: a plain dict filled by the ``@register`` decorator.

Importing this module imports every built-in adapter module, so ``get(kind)`` always sees
all of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from sources.base import Adapter

_ADAPTERS: dict[str, type[Adapter]] = {}
_BUILTIN_MODULES = (
    "sources.rss",
    "sources.html",
    "sources.page",
    "sources.ical",
    "sources.ft_portal",
    "sources.esf",
    "sources.tillvaxtverket",
    "sources.haveyoursay",
)
_loaded = False

A = TypeVar("A", bound="type[Adapter]")


def register(cls: A) -> A:
    """Class decorator: make an adapter available under its ``kind``."""
    kind = cls.kind
    if kind in _ADAPTERS and _ADAPTERS[kind] is not cls:
        raise RuntimeError(f"adapter kind {kind!r} registered twice")
    _ADAPTERS[kind] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real import error inside the module
                raise


def get(kind: str) -> type[Adapter]:
    _load_builtins()
    return _ADAPTERS[kind]


def kinds() -> list[str]:
    _load_builtins()
    return sorted(_ADAPTERS)


def all_adapters() -> dict[str, type[Adapter]]:
    _load_builtins()
    return dict(sorted(_ADAPTERS.items()))
