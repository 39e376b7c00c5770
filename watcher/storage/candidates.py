"""An in-memory index of stored items for cross-source duplicate matching.

Every poll with new items asks "which stored calls could these be?". Scanning the items
table for each poll costs more than the rest of a first poll cycle together, so the index is
kept in memory. What this process writes goes into it at once (``note``); what other
processes write is read incrementally, at most every ``refresh_interval`` seconds: rows with
ids above the last seen ones (new items, new source links) and items changed since (a merge
may fill in an identifier; an update may move a deadline). An item deleted meanwhile makes
the next refresh reload everything.

On PostgreSQL ids are handed out before commit, so a row with a lower id may commit after
a refresh has read past it. Each refresh therefore looks again at every id above the highest
ones seen ``late_window`` seconds earlier (longer than any write transaction lasts) and
reads what it has not seen yet. SQLite has one writer, ids commit in order, and the window
is 0.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from watcher.dates import utc_day
from watcher.pipeline.track import TitleKey, identifier_key, numbers_key
from watcher.storage.schema import item_changes, item_sources, items
from watcher.text import identifier_tokens, title_numbers, title_words
from watcher.types import DupCandidate

_NONE: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Entry:
    """One stored item in the index: kept small (an entry per stored item, for years of
    items), so a title's words are made only for the candidates a lookup returns, its
    numbers are kept as their key (``numbers_key``), and days and sources are tuples (a set
    costs 216 bytes even with one member) shared between entries (``CandidateCache._shared``:
    most items have one source and one deadline day, which thousands of items share)."""

    identifier: str | None
    title: str
    days: tuple[str, ...]
    sources: tuple[str, ...] = ()
    numbers: str = ""  # numbers_key(title_numbers(title words)): "" for none
    named: frozenset[str] = _NONE
    # The entry as a candidate, made on the first lookup that finds it; dropped when its
    # sources change.
    candidate: DupCandidate | None = None

    def __post_init__(self) -> None:
        self.days = tuple(sorted({sys.intern(d) for d in self.days})) if self.days else ()
        self.numbers = numbers_key(title_numbers(title_words(self.title)))
        # Identifiers the title of an item without one names (a news item announcing a
        # call): the call, arriving later from its own source, finds the news item by them.
        # A call's title naming another call (a second stage naming the first) is no
        # mention: the two are different calls.
        if not self.identifier:
            self.named = frozenset(identifier_tokens(self.title)) or _NONE

    def as_candidate(self, item_id: int) -> DupCandidate:
        if self.candidate is None:
            self.candidate = DupCandidate(
                item_id,
                frozenset(self.sources),
                self.identifier,
                self.title,
                frozenset(self.days),
                numbers=tuple(self.numbers.split(" ")) if self.numbers else (),
                named=self.named,
            )
        return self.candidate


# Shared tuples kept before the first sweep of those no entry holds (``_shared``).
_TUPLES_MIN = 1024


# The keyed indexes hold, per key, one item id or, for a key several items share, a set of
# them: most keys (a call identifier, a deadline day with a title's numbers) name one item.
_Ids = int | set[int]


def _add(index: dict[Any, _Ids], key: Any, item_id: int) -> None:
    held = index.get(key)
    if held is None:
        index[key] = item_id
    elif isinstance(held, set):
        held.add(item_id)
    elif held != item_id:
        index[key] = {held, item_id}


def _discard(index: dict[Any, _Ids], key: Any, item_id: int) -> None:
    held = index.get(key)
    if held is None:
        return
    if isinstance(held, set):
        held.discard(item_id)
        if len(held) == 1:
            index[key] = next(iter(held))
        elif not held:
            del index[key]
    elif held == item_id:
        del index[key]


def _ids(index: dict[Any, _Ids], key: Any) -> Iterable[int]:
    held = index.get(key)
    if held is None:
        return ()
    return held if isinstance(held, set) else (held,)


class CandidateCache:
    """Stored items by identifier and by deadline day, refreshed incrementally."""

    def __init__(self, refresh_interval: float = 5.0, late_window: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.refresh_interval = refresh_interval
        self.late_window = late_window
        self._refreshed_at: float | None = None  # time.monotonic() of the last refresh
        self._reset()

    def _reset(self) -> None:
        self._entries: dict[int, _Entry] = {}
        # One tuple for each set of days or sources the entries hold (``_shared``), and
        # the size at which those no entry holds any more are dropped.
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._tuples_cap = _TUPLES_MIN
        self._by_identifier: dict[str, _Ids] = {}
        self._by_day: dict[str, _Ids] = {}
        # By day, then numbers_key of the title: what a title with numbers can match. (A
        # dict per day rather than (day, numbers) keys: a tuple per stored item, 1.6 MiB
        # for 30,000 items, while the days are few.)
        self._by_day_numbers: dict[str, dict[str, _Ids]] = {}
        self._max_item = 0
        self._max_link = 0
        self._max_change = 0
        # With a late window: the highest ids at each refresh, (monotonic time, item, link,
        # change), the highest ids of a refresh at least the window ago (the floor below
        # which nothing can still arrive), and the ids above that floor already seen.
        self._marks: deque[tuple[float, int, int, int]] = deque()
        self._floor = (0, 0, 0)
        self._seen_links: set[int] = set()
        self._seen_changes: set[int] = set()

    def _shared(self, values: tuple[str, ...]) -> tuple[str, ...]:
        """The one tuple of these values that entries share: 30,000 items of 2,000
        sources hold 2,000 tuples of sources instead of 30,000 (1.4 MiB), and as few
        tuples of days as there are deadline days. Tuples that no entry holds any more
        (the days before a deadline moved, the sources before one more linked) are
        dropped whenever the kept ones have doubled since."""
        found = self._tuples.get(values)
        if found is not None:
            return found
        if len(self._tuples) >= self._tuples_cap:
            live: dict[tuple[str, ...], tuple[str, ...]] = {}
            for entry in self._entries.values():
                live.setdefault(entry.days, entry.days)
                live.setdefault(entry.sources, entry.sources)
            self._tuples = live
            self._tuples_cap = max(_TUPLES_MIN, 2 * len(live))
        self._tuples[values] = values
        return values

    def _add_source(self, entry: _Entry, source_id: str) -> None:
        if source_id not in entry.sources:
            # In order: items linked to the same sources share one tuple, however linked.
            sid = sys.intern(source_id)
            linked = tuple(sorted((*entry.sources, sid))) if entry.sources else (sid,)
            entry.sources = self._shared(linked)
            entry.candidate = None

    def _index(self, item_id: int, entry: _Entry) -> None:
        entry.days = self._shared(entry.days)
        old = self._entries.get(item_id)
        if old is not None:
            entry.sources = old.sources
            for ident in (old.identifier, *old.named):
                if ident:
                    _discard(self._by_identifier, identifier_key(ident), item_id)
            for day in old.days:
                _discard(self._by_day, day, item_id)
                by_numbers = self._by_day_numbers.get(day)
                if by_numbers is not None:
                    _discard(by_numbers, old.numbers, item_id)
                    if not by_numbers:
                        del self._by_day_numbers[day]
        self._entries[item_id] = entry
        # Keyed in one case: identifiers are stored as their sources write them.
        for ident in (entry.identifier, *entry.named):
            if ident:
                _add(self._by_identifier, identifier_key(ident), item_id)
        for day in entry.days:
            _add(self._by_day, day, item_id)
            _add(self._by_day_numbers.setdefault(day, {}), entry.numbers, item_id)

    def _load_items(self, conn: Connection, where: object, skip_known: bool = False) -> None:
        """Index the items ``where`` selects (``skip_known``: not those already in the
        index, which this process noted as it wrote them; their later changes come through
        ``item_changes``)."""
        for r in conn.execute(
            select(items.c.id, items.c.identifier, items.c.title, items.c.deadlines).where(where)  # type: ignore[arg-type]
        ):
            if skip_known and r.id in self._entries:
                self._max_item = max(self._max_item, r.id)
                continue
            days = tuple(utc_day(x) for x in (r.deadlines or ()))
            self._index(r.id, _Entry(r.identifier, r.title, days))
            self._max_item = max(self._max_item, r.id)

    def refresh(self, conn: Connection, mono: float | None = None) -> None:
        """Read what other processes stored since the last refresh (``mono``: now, from
        ``time.monotonic``)."""
        mono = time.monotonic() if mono is None else mono
        count, max_change = conn.execute(
            select(
                select(func.count()).select_from(items).scalar_subquery(),
                select(func.coalesce(func.max(item_changes.c.id), 0)).scalar_subquery(),
            )
        ).one()
        if count < len(self._entries):
            self._reset()  # items were deleted: start over
        late = self.late_window > 0
        if late:
            while self._marks and mono - self._marks[0][0] >= self.late_window:
                self._floor = self._marks.popleft()[1:]
            floor_item, floor_link, floor_change = self._floor
        else:
            floor_item, floor_link, floor_change = self._max_item, self._max_link, self._max_change
        # Items updated or merged since (their identifier or deadlines may have moved).
        if max_change > floor_change:
            changed: set[int] = set()
            for change_id, item_id in conn.execute(
                select(item_changes.c.id, item_changes.c.item_id).where(
                    item_changes.c.id > floor_change,
                    item_changes.c.kind.in_(("updated", "merged")),
                )
            ):
                if change_id not in self._seen_changes:
                    changed.add(item_id)
                    if late:
                        self._seen_changes.add(change_id)
            self._load_ids(conn, sorted(changed))
            self._max_change = max(self._max_change, max_change)
        if late:  # items below the highest seen that committed late
            unseen = [
                r[0]
                for r in conn.execute(
                    select(items.c.id).where(items.c.id > floor_item, items.c.id <= self._max_item)
                )
                if r[0] not in self._entries
            ]
            self._load_ids(conn, unseen)
        self._load_items(conn, items.c.id > self._max_item, skip_known=True)
        for link_id, item_id, source_id in conn.execute(
            select(item_sources.c.id, item_sources.c.item_id, item_sources.c.source_id).where(
                item_sources.c.id > floor_link
            )
        ):
            if link_id in self._seen_links:
                continue
            entry = self._entries.get(item_id)
            if entry is not None:
                self._add_source(entry, source_id)
            if late:
                self._seen_links.add(link_id)
            self._max_link = max(self._max_link, link_id)
        if late:
            self._seen_links = {i for i in self._seen_links if i > floor_link}
            self._seen_changes = {i for i in self._seen_changes if i > floor_change}
            self._marks.append((mono, self._max_item, self._max_link, self._max_change))

    def _load_ids(self, conn: Connection, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), 500):
            self._load_items(conn, items.c.id.in_(ids[start : start + 500]))

    def invalidate(self) -> None:
        """Forget everything: the next lookup reads the index from the database again."""
        with self._lock:
            self._reset()
            self._refreshed_at = None

    def note(
        self,
        source_id: str,
        written: Iterable[tuple[int, str | None, str, Iterable[str]]],
        linked: Iterable[int] = (),
    ) -> None:
        """What this process just stored: items ``(id, identifier, title, deadline days)``
        written or rewritten by ``source_id``, and items it was linked to as a duplicate."""
        with self._lock:
            for item_id, identifier, title, days in written:
                self._index(item_id, _Entry(identifier, title, tuple(days)))
                self._add_source(self._entries[item_id], source_id)
            for item_id in linked:
                entry = self._entries.get(item_id)
                if entry is not None:
                    self._add_source(entry, source_id)

    def lookup(
        self,
        conn: Connection,
        source_id: str,
        identifiers: Iterable[str],
        title_keys: Iterable[TitleKey],
    ) -> list[DupCandidate]:
        """Items of other sources with one of ``identifiers``, or a deadline on the day of
        one of ``title_keys`` and a title with its numbers (or none), as of now."""
        with self._lock:
            # An interval timer, not domain time: how stale other processes' writes may be.
            mono = time.monotonic()
            if self._refreshed_at is None or mono - self._refreshed_at >= self.refresh_interval:
                self.refresh(conn, mono)
                self._refreshed_at = mono
            ids: set[int] = set()
            for ident in identifiers:
                ids.update(_ids(self._by_identifier, identifier_key(ident)))
            for day, numbers in title_keys:
                if numbers is None:  # a title without numbers: any title of the day
                    ids.update(_ids(self._by_day, day))
                else:
                    by_numbers = self._by_day_numbers.get(day, {})
                    ids.update(_ids(by_numbers, numbers))
                    ids.update(_ids(by_numbers, ""))
            out = []
            for item_id in sorted(ids):
                e = self._entries[item_id]
                if source_id not in e.sources:
                    out.append(e.as_candidate(item_id))
            return out
