"""The adapter registry: a plain dict filled by the ``@register`` decorator.

``get(kind)`` imports the built-in module of that kind on first use (``_BUILTIN_KINDS``),
so a process polling only feeds never loads the HTML parser, the calendar library or the
portal adapters (tens of milliseconds and megabytes at every start); ``kinds()`` and
``all_adapters()`` import every built-in module.

It is also where config is checked against the adapters. ``watcher.config`` sits below the
adapters (they import it), so it keeps each source's ``options`` as a raw table;
``check_options`` validates those tables with each adapter's ``Options`` model, and
``load_config`` / ``validate_config`` are the config loaders for use: the structure and the
options, every problem in one ``ConfigError`` with its key path.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from watcher import config as config_mod
from watcher.config import Config
from watcher.exceptions import ConfigProblem

if TYPE_CHECKING:
    from sources.base import Adapter

_ADAPTERS: dict[str, type[Adapter]] = {}
# Each built-in kind and the module that registers it (tests/test_sources_native.py holds
# this equal to what the modules register).
_BUILTIN_KINDS = {
    "rss": "sources.rss",
    "html": "sources.html",
    "page": "sources.page",
    "ical": "sources.ical",
    "ft-portal": "sources.ft_portal",
    "esf": "sources.esf",
    "tillvaxtverket": "sources.tillvaxtverket",
    "haveyoursay": "sources.haveyoursay",
}
_loaded = False

A = TypeVar("A", bound="type[Adapter]")


def register(cls: A) -> A:
    """Class decorator: make an adapter available under its ``kind``."""
    kind = cls.kind
    if kind in _ADAPTERS and _ADAPTERS[kind] is not cls:
        raise RuntimeError(f"adapter kind {kind!r} registered twice")
    _ADAPTERS[kind] = cls
    return cls


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:  # a real import error inside the module
            raise


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_KINDS.values():
        _import(module)


def get(kind: str) -> type[Adapter]:
    """The adapter of ``kind``; KeyError for a kind nobody registered."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        module = _BUILTIN_KINDS.get(kind)
        if module is not None:
            _import(module)
        else:
            _load_builtins()  # a kind registered by a module that imports another's
        adapter = _ADAPTERS[kind]
    return adapter


def kinds() -> list[str]:
    _load_builtins()
    return sorted(_ADAPTERS)


def all_adapters() -> dict[str, type[Adapter]]:
    _load_builtins()
    return dict(sorted(_ADAPTERS.items()))


# -- config checked against the adapters ----------------------------------------------------


def check_options(data: Mapping[str, Any]) -> list[ConfigProblem]:
    """Each source's kind is known and its options fit the adapter's schema. A
    ``watcher.config.ConfigCheck``: it reads the raw data, so these problems are reported
    along with any others (a source the model rejects still has its options checked)."""
    sources = data.get("sources")
    problems: list[ConfigProblem] = []
    if not isinstance(sources, list | tuple):
        return problems  # the model reports the wrong type
    for i, src in enumerate(sources):
        if not isinstance(src, Mapping) or not isinstance(src.get("kind"), str):
            continue
        try:
            adapter_cls = get(src["kind"])
        except KeyError:
            problems.append(
                ConfigProblem(
                    f"sources[{i}].kind",
                    f"unknown adapter kind {src['kind']!r}; known: {', '.join(kinds())}",
                )
            )
            continue
        options = src.get("options", {})
        if not isinstance(options, Mapping):
            continue  # the model reports the wrong type
        try:
            adapter_cls.Options.model_validate(options)
        except ValidationError as e:
            for p in config_mod.problems_from(e):
                problems.append(
                    ConfigProblem(
                        f"sources[{i}].options" + ("." + p.path if p.path else ""), p.message
                    )
                )
    return problems


def validate_config(data: Mapping[str, Any], path: str | None = None) -> Config:
    """Validate parsed TOML data for use: structure and adapter options (the admin's edits
    are checked with this before they are written)."""
    return config_mod.validate_data(data, path, checks=(check_options,))


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file for use (``App``, ``watcher check-config``): the
    structure and every source's options. A missing default file means all defaults."""
    return config_mod.load(path, checks=(check_options,))
