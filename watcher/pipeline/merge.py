"""What a poll writes for one intent: a pure merge of the stored record, the fresh item and
the decision (``track.decide``), at ``now``.

``merge`` returns a ``RecordWrite``: the item columns to write, this source's link, the
history entry, whether the change is news for the digests, how the item is tagged, and the
record as the duplicate index takes it. Storage only executes it (as lemon24/reader's
update intents carry every value). ``Unchanged`` intents write nothing but "seen again";
storage does that in bulk.

The cross-source rules (the table in ``docs/design.md`` states them beside this module):

=====================  ==========================================  ===================
intent                 what is written                             tags
=====================  ==========================================  ===================
NewItem                the item as a new record, its link, "new"   its own
Linked                 a link of this source; gaps of the record   the stored ones stand
                       filled from the item (identifier,
                       programme, budget, opening, deadlines);
                       "merged" (not news)
Linked, takes over     the call's record and source over a record  from the merged record
                       that only named it; what only the stored
                       record knew is kept (a budget with its
                       amount and currency, deadlines with the
                       last one); "merged" with the changes
Updated, the owner     the tracked fields it changed against its   its own; from the
                       own last values; the other columns unless   record when other
                       it lost a value another source gave;        sources are linked
                       "updated", news when a notable field of
                       the record moved
Updated, another       gaps filled, as for Linked; "updated"       the stored ones stand
source                 (history, never news)
=====================  ==========================================  ===================

Whatever a source says, the record's status and kind follow its own dates
(``calls.effective_status``): a record that kept another source's deadline closes with it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from watcher.calls import effective_status, kind_for
from watcher.dates import from_iso, utc_day
from watcher.pipeline.track import identifier_key
from watcher.text import search_text
from watcher.types import (
    NOTABLE_FIELDS,
    TRACKED_FIELDS,
    Item,
    Kind,
    Linked,
    NewItem,
    Status,
    Updated,
    tracked_values,
)

# Item columns that follow a tracked field: written with it, kept with it.
_FOLLOWS = {"deadline": "deadlines", "budget_amount": "budget", "currency": "budget"}
_EMPTY: tuple[Any, ...] = (None, "", [], {})
# What a second source may fill in where the record has nothing.
_FILLABLE = ("identifier", "programme", "budget", "budget_amount", "opening")
# Columns the writing source's own word decides, never kept from the stored record: what
# the record lacks is what its own source could not give this time.
_OWN = frozenset({"incomplete"})


class Retag(enum.Enum):
    """How an item is tagged after a write."""

    KEEP = "keep"  # its tags stand (another source's entry does not describe the record)
    ITEM = "item"  # with the intent's own classification (one source's entry is the record)
    RECORD = "record"  # several sources made the record: tag it from what is stored


@dataclass(frozen=True)
class StoredRecord:
    """A stored item as ``merge`` needs it: its columns as stored (deadlines as ISO
    strings), and the sources linked to it."""

    id: int
    values: Mapping[str, Any]
    source_ids: frozenset[str]


@dataclass(frozen=True)
class IndexEntry:
    """A record as the duplicate index takes it."""

    identifier: str | None
    title: str
    days: tuple[str, ...]  # deadline days as UTC ISO dates


@dataclass(frozen=True)
class LinkWrite:
    """This source's entry of the item: inserted (a new item, or a new source of a stored
    call), or updated where its key is ``match_key``."""

    insert: bool
    match_key: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class History:
    kind: str  # "new" | "merged" | "updated"
    changes: tuple[Mapping[str, Any], ...]
    notable: bool


@dataclass(frozen=True)
class RecordWrite:
    """Everything one intent writes. ``item_id`` is None for a new item (storage assigns
    it); ``values`` is then the whole row, else the columns that change."""

    item_id: int | None
    values: Mapping[str, Any]
    link: LinkWrite
    history: History | None
    notable: bool
    retag: Retag
    index_entry: IndexEntry | None
    takes_over: bool = False


def merge(
    stored: StoredRecord | None, intent: NewItem | Linked | Updated, now: datetime
) -> RecordWrite:
    """What to write for ``intent`` (see the module docstring). ``stored``: the record the
    intent applies to, as of the write transaction (None for a ``NewItem``)."""
    if isinstance(intent, NewItem):
        return _new(intent, now)
    if stored is None:
        raise ValueError(f"{type(intent).__name__} needs the stored record")
    if isinstance(intent, Linked):
        return _linked(stored, intent, now)
    return _updated(stored, intent, now)


def _new(intent: NewItem, now: datetime) -> RecordWrite:
    it = intent.item
    cls = intent.classification
    values = {
        "uid": f"{it.source_id}:{it.key}",
        "source_id": it.source_id,
        "relevant": cls.relevant if cls is not None else True,
        "first_seen": now,
        "last_seen": now,
        "changed_at": None,
        "baseline": intent.baseline,
        "held": intent.held,
        **item_values(it),
    }
    return RecordWrite(
        None,
        values,
        LinkWrite(True, it.key, link_values(it, now, first=True)),
        History("new", (), False),
        False,
        Retag.ITEM,
        IndexEntry(it.identifier, it.title, tuple(utc_day(d) for d in values["deadlines"])),
    )


def _linked(stored: StoredRecord, intent: Linked, now: datetime) -> RecordWrite:
    it = intent.item
    row = stored.values
    changes: list[dict[str, Any]] = [
        {"field": "sources", "old": None, "new": it.link, "reason": intent.reason}
    ]
    # Decided on the duplicate index; the record itself must agree (it may have got an
    # identifier since, from a merge in another process).
    takes_over = intent.takes_over and (
        row["identifier"] is None
        or (
            it.identifier is not None
            and identifier_key(row["identifier"]) == identifier_key(it.identifier)
        )
    )
    if takes_over:
        values = takeover_values(row, it, now)
        values["source_id"] = it.source_id
        values["last_seen"] = now
        changes[0]["reason"] += f"; the record now comes from {it.source_id}"
        changes += record_changes(row, values)
    else:
        values = fill_missing(row, it)
    record = {**row, **values}
    return RecordWrite(
        stored.id,
        values,
        LinkWrite(True, it.key, link_values(it, now, first=True)),
        History("merged", tuple(changes), False),
        False,
        Retag.RECORD if takes_over else Retag.KEEP,
        index_entry(record),
        takes_over=takes_over,
    )


def _updated(stored: StoredRecord, intent: Updated, now: datetime) -> RecordWrite:
    it = intent.item
    row = stored.values
    changes = [{"field": c.field, "old": c.old, "new": c.new} for c in intent.changes]
    # This source's own link, by its key: one source may have linked two of its entries
    # to the same call.
    link = LinkWrite(False, intent.stored_key or it.key, link_values(it, now, first=False))
    if row["source_id"] != it.source_id:
        # A secondary source (a news page naming the call) may only fill gaps; its changes
        # are history, not news.
        fill = fill_missing(row, it)
        return RecordWrite(
            stored.id,
            {**fill, "last_seen": now},
            link,
            History("updated", tuple(changes), False),
            False,
            Retag.KEEP,
            index_entry({**row, **fill}) if fill else None,
        )
    # Only the source that first stored the call rewrites its record.
    values = update_values(row, it, (c.field for c in intent.changes), now)
    record = {**row, **values}
    # What the record shows changed (a status the kept dates contradict does not): the
    # history and the news follow the record.
    moved = {c["field"] for c in record_changes(row, record)}
    changes = [c for c in changes if c["field"] in moved]
    notable = bool(moved & NOTABLE_FIELDS)
    values["last_seen"] = now
    if notable:
        values["changed_at"] = now
    others = bool(stored.source_ids - {it.source_id})
    return RecordWrite(
        stored.id,
        values,
        link,
        History("updated", tuple(changes), notable) if changes else None,
        notable,
        # A record other sources filled in is tagged from the record, not from this entry.
        Retag.RECORD if others else Retag.ITEM,
        index_entry(record),
    )


# -- the values -------------------------------------------------------------------------------


def item_values(item: Item) -> dict[str, Any]:
    """An item's record columns (JSON-ready where the column is JSON)."""
    return {
        "search_text": search_text(item.title, item.summary, item.identifier, item.programme),
        "title": item.title,
        "link": item.link,
        "summary": item.summary,
        "language": item.language,
        "kind": item.kind.value,
        "status": item.status.value if item.status else None,
        "programme": item.programme,
        "identifier": item.identifier,
        "published": item.published,
        "opening": item.opening,
        "deadline": item.deadline,
        "deadlines": [d.isoformat() for d in item.deadlines],
        "budget": item.budget,
        "budget_amount": item.budget_amount,
        "currency": item.currency,
        "regions": list(item.regions),
        "topics": list(item.topics),
        "content_hash": item.content_hash,
        "extra": _jsonable(item.extra),
        "incomplete": incomplete_value(item),
    }


def incomplete_value(item: Item) -> dict[str, Any] | None:
    """What the record lacks, as stored: only fields that are really unknown."""
    inc = item.incomplete
    return inc.as_dict() if inc is not None and inc.missing else None


def link_values(item: Item, now: datetime, *, first: bool) -> dict[str, Any]:
    """This source's link row: what it last said of the item (its tracked values, and
    whether some of them were unknown)."""
    said = tracked_values(item)
    if incomplete_value(item) is not None:
        said["incomplete"] = True
    values: dict[str, Any] = {
        "key": item.key,
        "link": item.link,
        "last_seen": now,
        "content_hash": item.content_hash,
        "values": said,
    }
    if first:
        values |= {"source_id": item.source_id, "first_seen": now}
    return values


def index_entry(record: Mapping[str, Any]) -> IndexEntry:
    """A record as the duplicate index takes it: identifier, title, deadline days."""
    return IndexEntry(
        record["identifier"],
        record["title"],
        tuple(utc_day(d) for d in record["deadlines"] or ()),
    )


def _field_of(col: str) -> str:
    return _FOLLOWS.get(col, col)


def _with_search_text(row: Mapping[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    merged = {**row, **values}
    values["search_text"] = search_text(
        merged["title"], merged["summary"], merged["identifier"], merged["programme"]
    )
    return values


def dated(row: Mapping[str, Any], values: dict[str, Any], now: datetime) -> dict[str, Any]:
    """``values`` with the status (and kind) the merged record's own dates support: a
    record that kept another source's deadline closes with it, whatever the source that
    rewrites it says (it may know no dates at all)."""
    merged = {**row, **values}
    old = Status(merged["status"]) if merged["status"] else None
    deadlines = [d for d in (from_iso(x) for x in merged["deadlines"] or ()) if d]
    status = effective_status(old, merged["opening"], deadlines, now)
    if status != old:
        values["status"] = status.value if status else None
    kind = kind_for(status, Kind(merged["kind"]))
    if kind != merged["kind"]:
        values["kind"] = kind.value
    return values


def takeover_values(row: Mapping[str, Any], it: Item, now: datetime) -> dict[str, Any]:
    """A call's record over a stored item that only named it: the call's values, the stored
    ones where the call has none (a budget or a programme only the news page gave). A
    budget keeps its amount and currency, deadlines their last one: never half of each."""
    values = item_values(it)
    del values["search_text"]
    for col in list(values):
        field = _field_of(col)
        if col not in _OWN and values.get(field) in _EMPTY and row[field] not in _EMPTY:
            values[col] = row[col]
    return _with_search_text(row, dated(row, values, now))


def update_values(
    row: Mapping[str, Any], it: Item, changed: Iterable[str], now: datetime
) -> dict[str, Any]:
    """What the call's own source rewrites on an update: the tracked fields it changed
    (``changed``, against its own last values), and the other columns unless it lost a
    value another source gave. Gaps other sources filled in stay filled."""
    fields = set(changed)
    values = item_values(it)
    del values["search_text"]
    out: dict[str, Any] = {}
    for col, value in values.items():
        field = _field_of(col)
        if field in TRACKED_FIELDS:
            if field in fields:
                out[col] = value
        elif col in _OWN or value not in _EMPTY or row[col] in _EMPTY:
            out[col] = value
    return _with_search_text(row, dated(row, out, now))


def fill_missing(row: Mapping[str, Any], it: Item) -> dict[str, Any]:
    """What a second source knows that the record does not (budget, identifier, dates)."""
    fill: dict[str, Any] = {}
    for col in _FILLABLE:
        value = getattr(it, col)
        if row[col] is None and value is not None:
            fill[col] = value
    if not row["deadlines"] and it.deadlines:
        fill["deadlines"] = [d.isoformat() for d in it.deadlines]
        fill["deadline"] = it.deadline
    if "identifier" in fill or "programme" in fill:
        fill["search_text"] = search_text(
            row["title"],
            row["summary"],
            fill.get("identifier", row["identifier"]),
            fill.get("programme", row["programme"]),
        )
    return fill


def record_changes(row: Mapping[str, Any], record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tracked fields that differ between two records, old and new, for the history."""

    def shown(col: str, value: Any) -> Any:
        # Instants compare in UTC: stored ones come back in UTC, new ones in local time,
        # and two sources may give one deadline with different offsets.
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat()
        if col == "deadlines":
            return [(d.astimezone(UTC).isoformat() if (d := from_iso(x)) else x) for x in value]
        return list(value) if isinstance(value, list | tuple) else value

    return [
        {"field": col, "old": old, "new": new}
        for col in TRACKED_FIELDS
        if col in record and (old := shown(col, row[col])) != (new := shown(col, record[col]))
    ]


def _jsonable(value: Any) -> Any:
    if not value and isinstance(value, dict):
        return {}  # most items have no extra fields
    return json.loads(json.dumps(value, default=str))
