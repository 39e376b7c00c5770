"""The CPU work of a poll: parse, normalise and classify. Pure, so it can run anywhere.

``process`` runs in a worker thread of the service, or in a worker process when
``[watcher] workers`` asks for some (a poll cycle over hundreds of sources is mostly this
work, and a second core halves it). Everything it takes and returns pickles; in a worker
process the rules are loaded once and reloaded when the service's rules version moves on.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import spawn
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol
from zoneinfo import ZoneInfo

from watcher.pipeline.normalise import normalise
from watcher.types import Classification, Fetched, Item

if TYPE_CHECKING:
    from rules.engine import ClassifiableItem
    from watcher.config import SourceConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RulesSpec:
    """Which rules a worker process should classify with."""

    paths: tuple[str, ...]
    defaults: bool
    version: str


class Classifier(Protocol):
    """What polling needs from the rules engine."""

    @property
    def version(self) -> str: ...

    def __call__(self, item: ClassifiableItem, source: SourceConfig | None) -> Classification: ...

    def spec(self) -> RulesSpec: ...


@dataclass(frozen=True)
class Processed:
    items: list[Item]
    bad: int  # items that could not be normalised (skipped)
    classifications: list[Classification] | None  # aligned with items


def process(
    source: SourceConfig,
    fetched: Fetched,
    tz_name: str,
    now: datetime,
    classifier: Classifier | None = None,
    rules: RulesSpec | None = None,
) -> Processed:
    """Parse a fetch, normalise its items and classify them (with ``classifier`` in this
    process, or with the rules ``rules`` names in a worker process). Raises ``ParseError``."""
    from sources import registry

    adapter = registry.get(source.kind)(source)
    raws = adapter.parse_fetched(fetched)
    tz = ZoneInfo(tz_name)
    items: list[Item] = []
    bad = 0
    for raw in raws:
        try:
            items.append(normalise(raw, source, now, tz))
        except Exception:  # one malformed item never stops the rest
            log.warning(
                "skipping an item of %s that could not be normalised", source.id, exc_info=True
            )
            bad += 1
    classifications: list[Classification] | None = None
    if classifier is not None:
        classifications = [classifier(it, source) for it in items]
    elif rules is not None:
        classifications = _classify_in_worker(items, source, rules)
    return Processed(items, bad, classifications)


def process_packed(
    source: SourceConfig, fetched: Fetched, tz_name: str, now: datetime, rules: RulesSpec
) -> bytes:
    """``process`` in a worker process, its outcome pickled here. The poll keeps the bytes
    until its turn to write (``unpack``): a few kilobytes a source instead of the tens of
    kilobytes its items take as objects, for every poll waiting for the writer (hundreds
    in a first poll of thousands of sources)."""
    return pickle.dumps(process(source, fetched, tz_name, now, None, rules), _PROTOCOL)


def unpack(processed: Processed | bytes) -> Processed:
    """What ``process`` or ``process_packed`` gave, as ``Processed``."""
    if isinstance(processed, bytes):
        found = pickle.loads(processed)
        assert isinstance(found, Processed)
        return found
    return processed


_PROTOCOL = pickle.HIGHEST_PROTOCOL
_worker_store: dict[tuple[tuple[str, ...], bool], object] = {}

# Allocations between young-generation collections in a polling process (Python's default
# is 700). See ``settle_heap``.
GC_THRESHOLDS = (50_000, 20, 20)


def settle_heap(*, freeze: bool = False) -> None:
    """Garbage collection for a process that polls: collections run after 50,000
    allocations instead of 700, and with ``freeze`` (a process that ends after its polls,
    `watcher poll`) what is alive now (modules, config, rules) is moved out of the
    collector's reach (``gc.freeze``). A first poll of 2,000 sources allocates tens of
    millions of objects in the main process, and with the defaults the collector ran 1,500
    times there, 12 of them over the whole heap (the duplicate index grows with the items
    stored): 1.1 s of its 9 s of CPU, 0.15 s after this. Cycles among the objects a poll
    drops are still collected, a little later. A service that runs for months does not
    freeze: a config or rule reload would leave what it replaced out of reach for good."""
    if freeze:
        gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def start_worker() -> None:
    """The initializer of a worker process: ``settle_heap``, and an end that skips the
    interpreter's teardown (``_exit_at_once``). A worker holds nothing that needs it (no
    files or connections of its own; its results are sent before it is told to stop), and
    tearing down the modules and objects of its parsers and rules took it 40 to 100 ms,
    which `watcher poll` waits for at its end: the pool joins its workers before the
    process may exit."""
    settle_heap()
    sys.exit = _exit_at_once


def _exit_at_once(status: object = None) -> NoReturn:
    """``sys.exit`` in a worker process. multiprocessing ends a spawned process with
    ``sys.exit(exitcode)`` once it has run its own exit function (``spawn_main``): that
    call flushes the log handlers and the standard streams and ends the process with the
    same status (1 for a worker that crashed). Called from anywhere else, it raises
    ``SystemExit`` as ``sys.exit`` does."""
    if sys._getframe(1).f_code is not spawn.spawn_main.__code__:
        raise SystemExit(status)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os._exit(status if isinstance(status, int) else 0 if status is None else 1)


def warm_up(spec: RulesSpec | None) -> bool:
    """Load the adapters and the rules in a fresh worker process, ahead of the first poll."""
    from sources import registry

    registry.kinds()
    if spec is not None:
        _classify_in_worker([], _NO_SOURCE, spec)
    return True


class _NoSource:
    areas: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()


_NO_SOURCE: SourceConfig = _NoSource()  # type: ignore[assignment]


def _classify_in_worker(
    items: Sequence[Item], source: SourceConfig, spec: RulesSpec
) -> list[Classification]:
    from rules.engine import classify
    from rules.loader import RuleStore

    key = (spec.paths, spec.defaults)
    store = _worker_store.get(key)
    if not isinstance(store, RuleStore):
        store = RuleStore([Path(p) for p in spec.paths], defaults=spec.defaults)
        _worker_store[key] = store
    if store.version != spec.version:
        store.reload()
    return [
        classify(it, store.rules, source_areas=source.areas, source_themes=source.themes)
        for it in items
    ]
