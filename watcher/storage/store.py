"""The storage facade: the only writer of the database.

Every public method translates database errors into ``StorageError``. Items leave this
module as ``StoredItem`` values, never as rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from typing_extensions import Unpack

from watcher.calls import effective_status, kind_for
from watcher.dates import from_iso
from watcher.exceptions import StorageError
from watcher.storage import base
from watcher.storage.candidates import CandidateCache, utc_day
from watcher.storage.schema import (
    audit_log,
    item_changes,
    item_sources,
    items,
    locks,
    meta,
    poll_log,
    sources_state,
    tag_changes,
    tags,
)
from watcher.text import search_text
from watcher.types import (
    NOTABLE_FIELDS,
    TRACKED_FIELDS,
    Classification,
    DupCandidate,
    Intent,
    IntentKind,
    Item,
    ItemChange,
    Kind,
    PollResult,
    SourceError,
    SourceLink,
    SourceState,
    Status,
    StoredItem,
    StoredSlice,
    StoredTag,
    tracked_values,
)


@dataclass(frozen=True)
class ItemFilter:
    """Filters for listing items (CLI, web, API, digests)."""

    source: str | None = None
    since: datetime | None = None  # first seen at or after
    changed_since: datetime | None = None
    area: str | None = None
    theme: str | None = None
    status: str | None = None
    programme: str | None = None
    kind: str | None = None
    text: str | None = None
    deadline_from: datetime | None = None
    deadline_to: datetime | None = None
    relevant: bool | None = None
    include_held: bool = True
    order: str = "newest"  # newest | deadline
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class ApplyOutcome:
    new_ids: tuple[int, ...]
    updated_ids: tuple[int, ...]
    merged_ids: tuple[int, ...]
    # Items whose record now combines what several sources gave (a call that took over a
    # news item, or an update of a call other sources filled in): the poll's tags of one
    # source's entry do not describe them; they are tagged from the stored record.
    merged_records: tuple[int, ...] = ()


def _row_to_state(row: RowMapping | None, source_id: str, count: int = 0) -> SourceState:
    if row is None:
        return SourceState(source_id=source_id, item_count=count)
    return SourceState(
        source_id=row["source_id"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        last_poll_at=row["last_poll_at"],
        last_success_at=row["last_success_at"],
        last_error_at=row["last_error_at"],
        last_error_code=row["last_error_code"],
        last_error_message=row["last_error_message"],
        consecutive_failures=row["consecutive_failures"] or 0,
        next_attempt_at=row["next_attempt_at"],
        last_parsed=row["last_parsed"],
        warning=row["warning"],
        baseline_done=bool(row["baseline_done"]),
        field_profile=row["field_profile"] or {},
        item_count=count,
    )


_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # primary result codes (the low byte)


def _unavailable(e: OperationalError) -> bool:
    """The database, not one statement, failed: busy or locked by another writer, or the
    connection gone (by the driver's error codes, not its wording)."""
    if e.connection_invalidated:
        return True
    code = getattr(e.orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    state = getattr(e.orig, "sqlstate", None) or ""
    # PostgreSQL: no state at all (the server could not be reached), connection exceptions
    # (08…), shutdown (57P01–03), lock not available.
    return not state or state.startswith("08") or state in ("57P01", "57P02", "57P03", "55P03")


# Item columns that follow a tracked field: written with it, kept with it.
_FOLLOWS = {"deadline": "deadlines", "budget_amount": "budget", "currency": "budget"}
_EMPTY: tuple[Any, ...] = (None, "", [], {})


def _field_of(col: str) -> str:
    return _FOLLOWS.get(col, col)


def _with_search_text(row: RowMapping, values: dict[str, Any]) -> dict[str, Any]:
    merged = {**row, **values}
    values["search_text"] = search_text(
        merged["title"], merged["summary"], merged["identifier"], merged["programme"]
    )
    return values


def _dated(row: RowMapping, values: dict[str, Any], now: datetime) -> dict[str, Any]:
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


def _takeover_values(row: RowMapping, it: Item, now: datetime) -> dict[str, Any]:
    """A call's record over a stored item that only named it: the call's values, the stored
    ones where the call has none (a budget or a programme only the news page gave). A
    budget keeps its amount and currency, deadlines their last one: never half of each."""
    values = _item_values(it)
    del values["search_text"]
    for col in list(values):
        field = _field_of(col)
        if values.get(field) in _EMPTY and row[field] not in _EMPTY:
            values[col] = row[col]
    return _with_search_text(row, _dated(row, values, now))


def _update_values(
    row: RowMapping, it: Item, changed: Iterable[str], now: datetime
) -> dict[str, Any]:
    """What the call's own source rewrites on an update: the tracked fields it changed
    (``changed``, against its own last values), and the other columns unless it lost a
    value another source gave. Gaps other sources filled in stay filled."""
    fields = set(changed)
    values = _item_values(it)
    del values["search_text"]
    out: dict[str, Any] = {}
    for col, value in values.items():
        field = _field_of(col)
        if field in TRACKED_FIELDS:
            if field in fields:
                out[col] = value
        elif value not in _EMPTY or row[col] in _EMPTY:
            out[col] = value
    return _with_search_text(row, _dated(row, out, now))


def _index_entry(item_id: int, record: Mapping[str, Any]) -> tuple[int, str | None, str, list[str]]:
    """A stored record as the duplicate index takes it: id, identifier, title, deadline days."""
    return (
        item_id,
        record["identifier"],
        record["title"],
        [utc_day(d) for d in record["deadlines"] or ()],
    )


def _record_changes(row: RowMapping, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tracked fields a takeover changed, old and new, for the item's history."""

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


def _item_values(item: Item) -> dict[str, Any]:
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
    }


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


log = logging.getLogger(__name__)
T = TypeVar("T")


class ApplyOptions(TypedDict, total=False):
    """How ``Storage.apply`` writes a poll: the source's new cache validators, whether this
    is its silent first poll (``baseline``), whether new items are held for the admin
    (``hold_new``), its warning and field profile, when the poll started, and the tags
    (``classifications``, aligned with the intents) with the rules version that made them."""

    cache: tuple[str | None, str | None]
    baseline: bool
    hold_new: bool
    warning: str | None
    field_profile: Mapping[str, float] | None
    started_at: datetime | None
    classifications: Sequence[Classification | None] | None
    rules_version: str | None


class Transaction:
    """One write transaction of ``Storage.run_batch``: what a poll reads and writes in it.
    Its reads see the transaction's own writes, and those of the jobs before it."""

    def __init__(self, storage: Storage, conn: Connection) -> None:
        self._storage = storage
        self._conn = conn

    def duplicate_candidates(
        self, source_id: str, identifiers: Iterable[str], deadlines: Iterable[datetime]
    ) -> list[DupCandidate]:
        return self._storage._candidates_in(self._conn, source_id, identifiers, deadlines)

    def known_slices(self, source_id: str) -> dict[str, StoredSlice]:
        return self._storage._known_slices_in(self._conn, source_id)

    def apply(
        self,
        source_id: str,
        intents: Sequence[Intent],
        result: PollResult,
        now: datetime,
        **options: Unpack[ApplyOptions],
    ) -> ApplyOutcome:
        return self._storage._apply_in(self._conn, source_id, intents, result, now, **options)

    def record_not_modified(
        self,
        source_id: str,
        result: PollResult,
        now: datetime,
        cache: tuple[str | None, str | None],
        started_at: datetime | None = None,
    ) -> None:
        self._storage._not_modified_in(self._conn, source_id, result, now, cache, started_at)

    def get_items(self, ids: Sequence[int]) -> list[StoredItem]:
        return self._storage._get_items_in(self._conn, ids)

    def set_tags_many(
        self, results: Mapping[int, Classification], now: datetime, rules_version: str | None
    ) -> None:
        self._storage._write_tags(self._conn, results, now, rules_version)


class Storage:
    """All database reads and writes of the service."""

    def __init__(
        self, url: str, base_dir: Path | None = None, *, candidate_refresh: float = 5.0
    ) -> None:
        """``candidate_refresh``: how often (seconds) the duplicate index reads what other
        processes stored; this process's own writes are in it at once."""
        self.url = url
        self.engine: Engine = base.make_engine(url, base_dir)
        # PostgreSQL hands out ids before commit: the index looks back two minutes (far
        # longer than any write transaction here) for rows that committed late.
        late_window = 0.0 if self.engine.dialect.name == "sqlite" else 120.0
        self.candidates = CandidateCache(candidate_refresh, late_window)
        # One write transaction at a time in this process. SQLite has one writer anyway,
        # and threads queue here rather than in its busy handler, which sleeps in steps of
        # up to 100 ms. On any database, the duplicate index holds a transaction's items
        # before it commits (the next write of a batch must see them): no other write of
        # this process may see them meanwhile.
        self._write_lock = threading.RLock()
        self._noted = threading.local()  # .flag: this thread's transaction fed the index

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction (committed on leaving, rolled back on an error)."""
        with self._write_lock:
            outer = getattr(self._noted, "flag", None) is None
            if outer:
                self._noted.flag = False
            try:
                with self.engine.begin() as conn:
                    yield conn
            except BaseException:
                if self._noted.flag:
                    # Rolled back after feeding the duplicate index: it is read again.
                    self.candidates.invalidate()
                raise
            finally:
                if outer:
                    self._noted.flag = None

    def run_batch(self, jobs: Sequence[Callable[[Transaction], T]]) -> list[T | Exception]:
        """Run write jobs in order, all in one transaction; each job's result or error, in
        order. When the shared transaction fails, each job runs again in a transaction of
        its own, so one bad job fails alone, unless the database itself failed (locked,
        gone): then every job fails with that error. Database errors come back as
        ``StorageError``; jobs must be safe to run again (they decide from what they read
        in the transaction)."""
        if len(jobs) > 1:
            try:
                with self.begin() as conn:
                    txn = Transaction(self, conn)
                    return [job(txn) for job in jobs]
            except Exception as e:
                if isinstance(e, OperationalError) and _unavailable(e):
                    # The database itself (locked past the busy timeout, gone): running
                    # each job again would only wait as long again, job after job.
                    return [base.storage_error("run_batch", e) for _ in jobs]
                log.warning(
                    "a batch of %d writes failed (%s: %s); writing them one by one",
                    len(jobs),
                    type(e).__name__,
                    e,
                )
        out: list[T | Exception] = []
        for job in jobs:
            try:
                with self.begin() as conn:
                    out.append(job(Transaction(self, conn)))
            except SQLAlchemyError as e:
                out.append(base.storage_error("run_batch", e))
            except Exception as e:
                out.append(e)
        return out

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------------

    def upgrade(self) -> None:
        base.upgrade(self.engine)

    @base.translate_errors
    def revision(self) -> str | None:
        return base.current_revision(self.engine)

    def ensure_schema(self) -> None:
        """Migrate when behind (the embedded default upgrades itself on start)."""
        if self.revision() != base.head_revision():
            self.upgrade()

    @base.translate_errors
    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(select(1))
        return True

    # -- sources ----------------------------------------------------------------------------

    @base.translate_errors
    def source_state(self, source_id: str, *, with_count: bool = True) -> SourceState:
        """A source's remembered state; ``with_count`` adds its number of items."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(sources_state).where(sources_state.c.source_id == source_id))
                .mappings()
                .first()
            )
            count = 0
            if with_count:
                count = conn.execute(
                    select(func.count())
                    .select_from(item_sources)
                    .where(item_sources.c.source_id == source_id)
                ).scalar_one()
        return _row_to_state(row, source_id, count)

    @base.translate_errors
    def source_states(self, *, with_counts: bool = True) -> dict[str, SourceState]:
        """Every source's remembered state; ``with_counts`` adds their numbers of items."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(sources_state)).mappings().all()
            counts: dict[str, int] = {}
            if with_counts:
                counts = dict(
                    conn.execute(
                        select(item_sources.c.source_id, func.count()).group_by(
                            item_sources.c.source_id
                        )
                    ).all()
                )
        out = {
            r["source_id"]: _row_to_state(r, r["source_id"], counts.get(r["source_id"], 0))
            for r in rows
        }
        for sid, n in counts.items():
            out.setdefault(sid, SourceState(source_id=sid, item_count=n))
        return out

    @base.translate_errors
    def recent_item_counts(self, since: datetime) -> dict[str, int]:
        """Items first seen per source since a time (health: 'items in the last 30 days')."""
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    select(item_sources.c.source_id, func.count())
                    .where(item_sources.c.first_seen >= since)
                    .group_by(item_sources.c.source_id)
                ).all()
            )

    @base.translate_errors
    def poll_history(self, source_id: str, limit: int = 30) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(poll_log)
                    .where(poll_log.c.source_id == source_id)
                    .order_by(poll_log.c.started_at.desc(), poll_log.c.id.desc())
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def _upsert_state(self, conn: Connection, source_id: str, values: Mapping[str, Any]) -> None:
        # The values as parameters, not in the statement: every poll writes this, and a
        # statement with its values built in costs more to make than to run.
        res = conn.execute(
            update(sources_state).where(sources_state.c.source_id == bindparam("state_of")),
            {"state_of": source_id, **values},
        )
        if res.rowcount == 0:
            defaults = {"consecutive_failures": 0, "baseline_done": False}
            conn.execute(insert(sources_state), {"source_id": source_id, **defaults, **values})

    @base.translate_errors
    def known_slices(self, source_id: str) -> dict[str, StoredSlice]:
        """This source's stored items, as the tracker needs them."""
        with self.engine.connect() as conn:
            return self._known_slices_in(conn, source_id)

    def _known_slices_in(self, conn: Connection, source_id: str) -> dict[str, StoredSlice]:
        rows = conn.execute(
            select(
                item_sources.c.item_id,
                item_sources.c.key,
                item_sources.c.content_hash,
                item_sources.c["values"],
            )
            .where(item_sources.c.source_id == source_id)
            .order_by(item_sources.c.id)
        ).all()
        return {
            r.key: StoredSlice(r.item_id, source_id, r.key, r.content_hash, r.values or {})
            for r in rows
        }

    @base.translate_errors
    def known_statuses(self, source_id: str) -> dict[str, str | None]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(item_sources.c.key, items.c.status)
                .join(items, items.c.id == item_sources.c.item_id)
                .where(item_sources.c.source_id == source_id)
            ).all()
        return {r.key: r.status for r in rows}

    @base.translate_errors
    def duplicate_candidates(
        self, source_id: str, identifiers: Iterable[str], deadlines: Iterable[datetime]
    ) -> list[DupCandidate]:
        """Stored items of other sources with one of these call identifiers or a deadline
        on the same day (from an in-memory index kept up to date incrementally)."""
        with self.engine.connect() as conn:
            return self._candidates_in(conn, source_id, identifiers, deadlines)

    def _candidates_in(
        self,
        conn: Connection,
        source_id: str,
        identifiers: Iterable[str],
        deadlines: Iterable[datetime],
    ) -> list[DupCandidate]:
        days = {d.astimezone(UTC).date().isoformat() for d in deadlines}
        return self.candidates.lookup(conn, source_id, identifiers, days)

    # -- applying a poll -------------------------------------------------------------------

    @base.translate_errors
    def apply(
        self,
        source_id: str,
        intents: Sequence[Intent],
        result: PollResult,
        now: datetime,
        **options: Unpack[ApplyOptions],
    ) -> ApplyOutcome:
        """Write one successful poll in one transaction: items, links, history, tags
        and the source's health (the options: see ``_apply_in``)."""
        with self.begin() as conn:
            return self._apply_in(conn, source_id, intents, result, now, **options)

    def _apply_in(
        self,
        conn: Connection,
        source_id: str,
        intents: Sequence[Intent],
        result: PollResult,
        now: datetime,
        *,
        cache: tuple[str | None, str | None] = (None, None),
        baseline: bool = False,
        hold_new: bool = False,
        warning: str | None = None,
        field_profile: Mapping[str, float] | None = None,
        started_at: datetime | None = None,
        classifications: Sequence[Classification | None] | None = None,
        rules_version: str | None = None,
    ) -> ApplyOutcome:
        """``apply`` in a transaction of the caller's. ``classifications``: aligned with
        ``intents``, the tags to write with the items."""
        new_ids: list[int] = []
        updated_ids: list[int] = []
        merged_ids: list[int] = []
        unchanged: list[tuple[int, str, str | None]] = []
        # Stored items whose record a merge changed, as the duplicate index needs them.
        reindexed: list[tuple[int, str | None, str, list[str]]] = []
        taken_over: set[int] = set()  # stored items this poll's calls took over
        fresh_at = [
            n for n, i in enumerate(intents) if i.kind == IntentKind.NEW and i.duplicate_of is None
        ]
        fresh = [intents[n].item for n in fresh_at]
        if fresh:
            # All new items, their links and history rows in a few executemany calls:
            # a first poll of a big source is thousands of rows. A new item's relevance
            # comes with it (its tags are written below).
            relevant = (
                [
                    cls.relevant if (cls := classifications[n]) is not None else True
                    for n in fresh_at
                ]
                if classifications is not None
                else [True] * len(fresh)
            )
            rows = [
                {
                    "uid": f"{source_id}:{it.key}",
                    "source_id": source_id,
                    "relevant": is_relevant,
                    "first_seen": now,
                    "last_seen": now,
                    "changed_at": None,
                    "baseline": baseline,
                    "held": hold_new,
                    **_item_values(it),
                }
                for it, is_relevant in zip(fresh, relevant, strict=True)
            ]
            # A plain executemany, then the ids by uid: INSERT … RETURNING with many
            # rows runs row by row on SQLite, ten times slower.
            conn.execute(insert(items), rows)
            id_by_uid: dict[str, int] = {}
            uids = [r["uid"] for r in rows]
            for chunk in _chunks(uids, 500):
                for uid, item_id in conn.execute(
                    select(items.c.uid, items.c.id).where(items.c.uid.in_(chunk))
                ):
                    id_by_uid[uid] = item_id
            new_ids = [id_by_uid[u] for u in uids]
            conn.execute(
                insert(item_sources),
                [
                    self._link_row(item_id, it, now)
                    for item_id, it in zip(new_ids, fresh, strict=True)
                ],
            )
            conn.execute(
                insert(item_changes),
                [
                    {
                        "item_id": item_id,
                        "source_id": source_id,
                        "at": now,
                        "kind": "new",
                        "changes": [],
                        "notable": False,
                    }
                    for item_id in new_ids
                ],
            )
        updated = [i.item_id for i in intents if i.kind == IntentKind.UPDATED and i.item_id]
        stored_rows: dict[int, RowMapping] = {}
        for chunk in _chunks(updated, 500):
            for stored in conn.execute(select(items).where(items.c.id.in_(chunk))).mappings():
                stored_rows[stored["id"]] = stored
        secondary: set[int] = set()
        for intent in intents:
            it = intent.item
            if intent.kind == IntentKind.NEW and intent.duplicate_of is None:
                continue
            elif intent.kind == IntentKind.NEW:
                item_id = intent.duplicate_of
                assert item_id is not None
                self._link(conn, item_id, it, now)
                row = conn.execute(select(items).where(items.c.id == item_id)).mappings().one()
                merge_changes: list[dict[str, Any]] = [
                    {"field": "sources", "old": None, "new": it.link, "reason": intent.reason}
                ]
                # Decided on the duplicate index; the row itself must agree (it may have
                # got an identifier since, from a merge in another process).
                if intent.takes_over and row["identifier"] in (None, it.identifier):
                    # The call itself, where the stored item only named it: the call's
                    # record and source from now on (the news item stays a source link),
                    # with what only the stored item knew kept.
                    record = _takeover_values(row, it, now)
                    conn.execute(
                        update(items)
                        .where(items.c.id == item_id)
                        .values(**record, source_id=source_id, last_seen=now)
                    )
                    merge_changes[0]["reason"] += f"; the record now comes from {source_id}"
                    merge_changes += _record_changes(row, record)
                    taken_over.add(item_id)
                else:
                    record = {**row, **self._fill_missing(conn, row, it)}
                # The index learns the record as it is now (filled in, or taken over).
                reindexed.append(_index_entry(item_id, record))
                conn.execute(
                    insert(item_changes).values(
                        item_id=item_id,
                        source_id=source_id,
                        at=now,
                        kind="merged",
                        changes=merge_changes,
                        notable=False,
                    )
                )
                merged_ids.append(item_id)
            elif intent.kind == IntentKind.UPDATED:
                assert intent.item_id is not None
                changes = [{"field": c.field, "old": c.old, "new": c.new} for c in intent.changes]
                # This source's own row, by its key: one source may have linked two of
                # its entries to the same call.
                conn.execute(
                    update(item_sources)
                    .where(
                        item_sources.c.source_id == source_id,
                        item_sources.c.key == (intent.stored_key or it.key),
                    )
                    .values(
                        key=it.key,
                        link=it.link,
                        last_seen=now,
                        content_hash=it.content_hash,
                        values=tracked_values(it),
                    )
                )
                row = stored_rows[intent.item_id]
                primary = row["source_id"] == source_id
                # Only the source that first stored the call rewrites its record; a
                # secondary source (a news page naming the call) may only fill gaps,
                # and its changes are history, not news.
                notable = False
                if primary:
                    values = _update_values(row, it, (c.field for c in intent.changes), now)
                    record = {**row, **values}
                    # What the record shows changed (a status the kept dates contradict
                    # does not): the history and the news follow the record.
                    moved = {c["field"] for c in _record_changes(row, record)}
                    changes = [c for c in changes if c["field"] in moved]
                    notable = bool(moved & NOTABLE_FIELDS)
                    extra: dict[str, Any] = {"last_seen": now}
                    if notable:
                        extra["changed_at"] = now
                    conn.execute(
                        update(items).where(items.c.id == intent.item_id).values(**values, **extra)
                    )
                    reindexed.append(_index_entry(intent.item_id, record))
                else:
                    secondary.add(intent.item_id)
                    fill = self._fill_missing(conn, row, it)
                    if fill:
                        record = {**row, **fill}
                        reindexed.append(_index_entry(intent.item_id, record))
                    conn.execute(
                        update(items).where(items.c.id == intent.item_id).values(last_seen=now)
                    )
                if changes or not primary:
                    conn.execute(
                        insert(item_changes).values(
                            item_id=intent.item_id,
                            source_id=source_id,
                            at=now,
                            kind="updated",
                            changes=changes,
                            notable=notable,
                        )
                    )
                updated_ids.append(intent.item_id)
            else:
                assert intent.item_id is not None
                unchanged.append((intent.item_id, it.key, intent.stored_key))
        if unchanged:
            ids = [u[0] for u in unchanged]
            for chunk in _chunks(ids, 500):
                conn.execute(update(items).where(items.c.id.in_(chunk)).values(last_seen=now))
                conn.execute(
                    update(item_sources)
                    .where(item_sources.c.item_id.in_(chunk), item_sources.c.source_id == source_id)
                    .values(last_seen=now)
                )
            # Keys that changed (guid churn matched by link and title) are kept current.
            for _item_id, key, stored_key in unchanged:
                if stored_key is not None:
                    conn.execute(
                        update(item_sources)
                        .where(
                            item_sources.c.source_id == source_id,
                            item_sources.c.key == stored_key,
                        )
                        .values(key=key)
                    )
        # Records several sources made: taken over, or updated by their owner while other
        # sources are linked (their gaps filled by those).
        owned_updates = [i for i in updated_ids if i not in secondary]
        shared: set[int] = set(taken_over)
        for chunk in _chunks(owned_updates, 500):
            shared.update(
                r[0]
                for r in conn.execute(
                    select(item_sources.c.item_id)
                    .where(item_sources.c.item_id.in_(chunk), item_sources.c.source_id != source_id)
                    .distinct()
                )
            )
        if classifications is not None:
            ids_for = iter(new_ids)
            to_tag: dict[int, Classification] = {}
            for intent, cls in zip(intents, classifications, strict=True):
                fresh_item = intent.kind == IntentKind.NEW and intent.duplicate_of is None
                item_id = next(ids_for) if fresh_item else intent.item_id
                if cls is None or item_id is None or item_id in secondary or item_id in shared:
                    continue
                if intent.kind == IntentKind.NEW and not fresh_item:
                    continue  # linked to a stored call: that call's tags stand
                to_tag[item_id] = cls
            self._write_tags(conn, to_tag, now, rules_version, frozenset(new_ids))
        self._upsert_state(
            conn,
            source_id,
            {
                **_success(cache, now),
                "last_parsed": result.parsed,
                "warning": warning,
                "baseline_done": True,
                "field_profile": dict(field_profile or {}),
            },
        )
        self._log_poll(conn, result, started_at or now, now)
        # The duplicate index learns of this poll's items at once, so that the next poll of
        # a batch sees them; a transaction rolled back rebuilds it (``begin``).
        new_iter = iter(new_ids)
        written: list[tuple[int, str | None, str, list[str]]] = []
        for intent in intents:
            if intent.kind == IntentKind.NEW and intent.duplicate_of is None:
                it = intent.item
                days = [d.astimezone(UTC).date().isoformat() for d in it.deadlines]
                written.append((next(new_iter), it.identifier, it.title, days))
        self._noted.flag = True
        self.candidates.note(source_id, [*written, *reindexed], merged_ids)
        return ApplyOutcome(
            tuple(new_ids), tuple(updated_ids), tuple(merged_ids), tuple(sorted(shared))
        )

    @staticmethod
    def _link_row(item_id: int, it: Item, now: datetime) -> dict[str, Any]:
        return {
            "item_id": item_id,
            "source_id": it.source_id,
            "key": it.key,
            "link": it.link,
            "first_seen": now,
            "last_seen": now,
            "content_hash": it.content_hash,
            "values": tracked_values(it),
        }

    def _link(self, conn: Connection, item_id: int, it: Item, now: datetime) -> None:
        conn.execute(insert(item_sources).values(**self._link_row(item_id, it, now)))

    def _fill_missing(self, conn: Connection, row: RowMapping, it: Item) -> dict[str, Any]:
        """A second source may know what the first did not (budget, identifier, dates).
        ``row``: the stored item; returns what was filled in."""
        item_id = row["id"]
        fill: dict[str, Any] = {}
        for col, value in (
            ("identifier", it.identifier),
            ("programme", it.programme),
            ("budget", it.budget),
            ("budget_amount", it.budget_amount),
            ("opening", it.opening),
        ):
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
        if fill:
            conn.execute(update(items).where(items.c.id == item_id).values(**fill))
        return fill

    def _log_poll(
        self, conn: Connection, result: PollResult, started: datetime, now: datetime
    ) -> None:
        conn.execute(
            insert(poll_log),
            {
                "source_id": result.source_id,
                "started_at": started,
                "finished_at": now,
                "status": result.status.value,
                "new": result.new,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "parsed": result.parsed,
                "error_code": result.error.code if result.error else None,
                "error_message": result.error.message if result.error else None,
                "warnings": list(result.warnings),
            },
        )

    @base.translate_errors
    def record_not_modified(
        self,
        source_id: str,
        result: PollResult,
        now: datetime,
        cache: tuple[str | None, str | None],
        started_at: datetime | None = None,
    ) -> None:
        with self.begin() as conn:
            self._not_modified_in(conn, source_id, result, now, cache, started_at)

    def _not_modified_in(
        self,
        conn: Connection,
        source_id: str,
        result: PollResult,
        now: datetime,
        cache: tuple[str | None, str | None],
        started_at: datetime | None = None,
    ) -> None:
        self._upsert_state(conn, source_id, _success(cache, now))
        self._log_poll(conn, result, started_at or now, now)

    @base.translate_errors
    def record_failure(
        self,
        source_id: str,
        error: SourceError,
        result: PollResult,
        now: datetime,
        next_attempt_at: datetime | None,
        started_at: datetime | None = None,
    ) -> int:
        """Record a failed poll; returns the number of consecutive failures."""
        with self.begin() as conn:
            prev = conn.execute(
                select(sources_state.c.consecutive_failures).where(
                    sources_state.c.source_id == source_id
                )
            ).scalar()
            failures = (prev or 0) + 1
            self._upsert_state(
                conn,
                source_id,
                {
                    "last_poll_at": now,
                    "last_error_at": now,
                    "last_error_code": error.code,
                    "last_error_message": error.message[:2000],
                    "consecutive_failures": failures,
                    "next_attempt_at": next_attempt_at,
                },
            )
            self._log_poll(conn, result, started_at or now, now)
        return failures

    @base.translate_errors
    def set_source_warning(self, source_id: str, warning: str | None) -> None:
        with self.begin() as conn:
            self._upsert_state(conn, source_id, {"warning": warning})

    @base.translate_errors
    def set_tags(
        self,
        item_id: int,
        result: Classification,
        now: datetime,
        rules_version: str | None = None,
    ) -> tuple[list[str], list[str]]:
        """Replace an item's tags; record what was added and removed. Returns (added, removed)."""
        return self.set_tags_many({item_id: result}, now, rules_version)[item_id]

    @base.translate_errors
    def set_tags_many(
        self,
        results: Mapping[int, Classification],
        now: datetime,
        rules_version: str | None = None,
    ) -> dict[int, tuple[list[str], list[str]]]:
        """Replace the tags of many items in one transaction, recording every change
        (``tag_changes``). Returns, per item, the tags added and removed."""
        with self.begin() as conn:
            return self._write_tags(conn, results, now, rules_version)

    def _write_tags(
        self,
        conn: Connection,
        results: Mapping[int, Classification],
        now: datetime,
        rules_version: str | None,
        fresh: frozenset[int] = frozenset(),
    ) -> dict[int, tuple[list[str], list[str]]]:
        """Replace tags and record changes; ``fresh`` items are known to have no tags yet,
        and were stored with their relevance."""
        out: dict[int, tuple[list[str], list[str]]] = {}
        ids = list(results)
        old: dict[int, set[str]] = {i: set() for i in ids}
        existing = [i for i in ids if i not in fresh]
        for chunk in _chunks(existing, 500):
            for r in conn.execute(
                select(tags.c.item_id, tags.c.kind, tags.c.tag).where(tags.c.item_id.in_(chunk))
            ).all():
                old[r.item_id].add(f"{r.kind}:{r.tag}")
        tag_rows: list[dict[str, Any]] = []
        change_rows: list[dict[str, Any]] = []
        relevant: dict[bool, list[int]] = {True: [], False: []}
        for item_id, result in results.items():
            seen: set[tuple[str, str]] = set()
            for t in result.tags:
                if (t.kind, t.tag) in seen:
                    continue
                seen.add((t.kind, t.tag))
                tag_rows.append(
                    {
                        "item_id": item_id,
                        "kind": t.kind,
                        "tag": t.tag,
                        "rule_id": t.rule_id,
                        "evidence": [{"field": e.field, "matched": e.matched} for e in t.evidence],
                        "score": t.score,
                    }
                )
            new = {f"{k}:{tag}" for k, tag in seen}
            added, removed = sorted(new - old[item_id]), sorted(old[item_id] - new)
            out[item_id] = (added, removed)
            if added or removed:
                change_rows.append(
                    {
                        "item_id": item_id,
                        "at": now,
                        "added": added,
                        "removed": removed,
                        "rules_version": rules_version,
                    }
                )
            if item_id not in fresh:  # new items were stored with their relevance
                relevant[result.relevant].append(item_id)
        for chunk in _chunks(existing, 500):
            conn.execute(delete(tags).where(tags.c.item_id.in_(chunk)))
        if tag_rows:
            conn.execute(insert(tags), tag_rows)
        if change_rows:
            conn.execute(insert(tag_changes), change_rows)
        for flag, flagged in relevant.items():
            for chunk in _chunks(flagged, 500):
                conn.execute(update(items).where(items.c.id.in_(chunk)).values(relevant=flag))
        return out

    @base.translate_errors
    def tag_history(self, item_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(tag_changes)
                    .where(tag_changes.c.item_id == item_id)
                    .order_by(tag_changes.c.id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    # -- meta ------------------------------------------------------------------------------

    @base.translate_errors
    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()

    @base.translate_errors
    def set_meta(self, key: str, value: str | None) -> None:
        with self.begin() as conn:
            res = conn.execute(update(meta).where(meta.c.key == key).values(value=value))
            if res.rowcount == 0:
                conn.execute(insert(meta).values(key=key, value=value))

    # -- reading items ---------------------------------------------------------------------

    def _filtered(self, f: ItemFilter) -> Any:
        q = select(items)
        if f.source:
            q = q.where(
                items.c.id.in_(
                    select(item_sources.c.item_id).where(item_sources.c.source_id == f.source)
                )
            )
        if f.since:
            q = q.where(items.c.first_seen >= f.since)
        if f.changed_since:
            q = q.where(items.c.changed_at >= f.changed_since)
        for kind, tag in (("area", f.area), ("theme", f.theme)):
            if tag:
                q = q.where(
                    items.c.id.in_(
                        select(tags.c.item_id).where(tags.c.kind == kind, tags.c.tag == tag)
                    )
                )
        if f.status:
            q = q.where(items.c.status == f.status)
        if f.programme:
            q = q.where(
                func.lower(items.c.programme).contains(f.programme.lower(), autoescape=True)
            )
        if f.kind:
            q = q.where(items.c.kind == f.kind)
        if f.text:
            for word in f.text.split()[:8]:
                q = q.where(items.c.search_text.contains(word.casefold(), autoescape=True))
        if f.deadline_from:
            q = q.where(items.c.deadline >= f.deadline_from)
        if f.deadline_to:
            q = q.where(items.c.deadline <= f.deadline_to)
        if f.relevant is not None:
            q = q.where(items.c.relevant == f.relevant)
        if not f.include_held:
            q = q.where(items.c.held.is_(False))
        return q

    @base.translate_errors
    def list_items(
        self, f: ItemFilter = ItemFilter(), *, with_tags: bool = True
    ) -> list[StoredItem]:
        q = self._filtered(f)
        if f.order == "deadline":
            q = q.order_by(items.c.deadline.asc().nulls_last(), items.c.id.desc())
        else:
            q = q.order_by(items.c.first_seen.desc(), items.c.id.desc())
        q = q.limit(f.limit).offset(f.offset)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
            return self._hydrate(conn, rows, with_tags=with_tags, with_sources=with_tags)

    @base.translate_errors
    def count_items(self, f: ItemFilter = ItemFilter()) -> int:
        q = select(func.count()).select_from(self._filtered(f).subquery())
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    @base.translate_errors
    def get_item(self, item_id: int) -> StoredItem | None:
        with self.engine.connect() as conn:
            rows = conn.execute(select(items).where(items.c.id == item_id)).mappings().all()
            found = self._hydrate(conn, rows)
        return found[0] if found else None

    @base.translate_errors
    def get_items(self, ids: Sequence[int]) -> list[StoredItem]:
        with self.engine.connect() as conn:
            return self._get_items_in(conn, ids)

    def _get_items_in(self, conn: Connection, ids: Sequence[int]) -> list[StoredItem]:
        out: list[StoredItem] = []
        for chunk in _chunks(list(ids), 500):
            rows = conn.execute(select(items).where(items.c.id.in_(chunk))).mappings().all()
            out.extend(self._hydrate(conn, rows))
        order = {i: n for n, i in enumerate(ids)}
        return sorted(out, key=lambda it: order.get(it.id, 0))

    def _hydrate(
        self,
        conn: Connection,
        rows: Sequence[RowMapping],
        *,
        with_tags: bool = True,
        with_sources: bool = True,
    ) -> list[StoredItem]:
        ids = [r["id"] for r in rows]
        tag_map: dict[int, list[StoredTag]] = {}
        src_map: dict[int, list[SourceLink]] = {}
        for chunk in _chunks(ids, 500):
            if with_tags:
                for t in conn.execute(
                    select(tags).where(tags.c.item_id.in_(chunk)).order_by(tags.c.kind, tags.c.tag)
                ).mappings():
                    tag_map.setdefault(t["item_id"], []).append(
                        StoredTag(
                            t["kind"],
                            t["tag"],
                            t["rule_id"],
                            tuple(t["evidence"] or ()),
                            t["score"],
                        )
                    )
            if with_sources:
                # Not the tracked values (a JSON document per link): pages never show them.
                for s in conn.execute(
                    select(
                        item_sources.c.item_id,
                        item_sources.c.source_id,
                        item_sources.c.key,
                        item_sources.c.link,
                        item_sources.c.first_seen,
                        item_sources.c.last_seen,
                    )
                    .where(item_sources.c.item_id.in_(chunk))
                    .order_by(item_sources.c.id)
                ).mappings():
                    src_map.setdefault(s["item_id"], []).append(
                        SourceLink(
                            s["source_id"], s["key"], s["link"], s["first_seen"], s["last_seen"]
                        )
                    )
        return [
            StoredItem(
                id=r["id"],
                uid=r["uid"],
                source_id=r["source_id"],
                title=r["title"],
                link=r["link"],
                summary=r["summary"],
                language=r["language"],
                kind=Kind(r["kind"]),
                status=Status(r["status"]) if r["status"] else None,
                programme=r["programme"],
                identifier=r["identifier"],
                published=r["published"],
                opening=r["opening"],
                deadline=r["deadline"],
                deadlines=tuple(d for d in (from_iso(x) for x in (r["deadlines"] or [])) if d),
                budget=r["budget"],
                budget_amount=r["budget_amount"],
                currency=r["currency"],
                regions=tuple(r["regions"] or ()),
                topics=tuple(r["topics"] or ()),
                relevant=bool(r["relevant"]),
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
                changed_at=r["changed_at"],
                baseline=bool(r["baseline"]),
                held=bool(r["held"]),
                extra=r["extra"] or {},
                released_at=r["released_at"],
                tags=tuple(tag_map.get(r["id"], ())),
                sources=tuple(src_map.get(r["id"], ())),
            )
            for r in rows
        ]

    @base.translate_errors
    def item_history(self, item_id: int) -> list[ItemChange]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(item_changes)
                    .where(item_changes.c.item_id == item_id)
                    .order_by(item_changes.c.id)
                )
                .mappings()
                .all()
            )
        return [
            ItemChange(
                r["at"], r["source_id"], r["kind"], tuple(r["changes"] or ()), bool(r["notable"])
            )
            for r in rows
        ]

    @base.translate_errors
    def all_item_ids(self, since: datetime | None = None) -> list[int]:
        q = select(items.c.id).order_by(items.c.id)
        if since is not None:
            q = q.where(items.c.first_seen >= since)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(q).all()]

    @base.translate_errors
    def refresh_statuses(self, now: datetime) -> list[int]:
        """Bring stored statuses up to date with their dates: a call whose last deadline has
        passed is closed, a forthcoming call whose opening has come is open, even while its
        source answers "not modified". Each change is recorded in the item's history; a call
        opening is news for the digests, one closing is not. Returns the changed item ids."""
        q = select(
            items.c.id, items.c.status, items.c.kind, items.c.opening, items.c.deadlines
        ).where(
            or_(items.c.status.is_(None), items.c.status != "closed"),
            or_(
                items.c.deadline < now,
                and_(items.c.opening <= now, items.c.status == "forthcoming"),
            ),
        )
        changed: list[int] = []
        with self.begin() as conn:
            for r in conn.execute(q).all():
                old = Status(r.status) if r.status else None
                deadlines = [d for d in (from_iso(x) for x in (r.deadlines or ())) if d]
                new = effective_status(old, r.opening, deadlines, now)
                if new == old or new is None:
                    continue
                kind = kind_for(new, Kind(r.kind)).value
                notable = new == Status.OPEN
                values: dict[str, Any] = {"status": new.value, "kind": kind}
                if notable:
                    values["changed_at"] = now
                conn.execute(update(items).where(items.c.id == r.id).values(**values))
                # Each source's remembered values follow, so its next full poll finds
                # nothing new to report about the status.
                for link_id, link_values in conn.execute(
                    select(item_sources.c.id, item_sources.c["values"]).where(
                        item_sources.c.item_id == r.id
                    )
                ).all():
                    conn.execute(
                        update(item_sources)
                        .where(item_sources.c.id == link_id)
                        .values(values={**(link_values or {}), "status": new.value, "kind": kind})
                    )
                change = {"field": "status", "old": r.status, "new": new.value}
                conn.execute(
                    insert(item_changes).values(
                        item_id=r.id,
                        source_id="",
                        at=now,
                        kind="updated",
                        changes=[change],
                        notable=notable,
                    )
                )
                changed.append(r.id)
        return changed

    @base.translate_errors
    def release_held(
        self,
        source_id: str | None = None,
        *,
        discard: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Let held items go out in the next digests, as new at ``now`` (or, with
        ``discard``, mark them as baseline: never mailed)."""
        q = update(items).where(items.c.held.is_(True))
        if source_id:
            q = q.where(items.c.source_id == source_id)
        values: dict[str, Any] = {"held": False}
        if discard:
            values["baseline"] = True
        else:
            values["released_at"] = now or datetime.now(UTC)
        with self.begin() as conn:
            return conn.execute(q.values(**values)).rowcount

    @base.translate_errors
    def held_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    select(items.c.source_id, func.count())
                    .where(items.c.held.is_(True))
                    .group_by(items.c.source_id)
                ).all()
            )

    # -- audit -----------------------------------------------------------------------------

    @base.translate_errors
    def audit(
        self, actor: str, action: str, target: str, details: Mapping[str, Any], now: datetime
    ) -> None:
        with self.begin() as conn:
            conn.execute(
                insert(audit_log).values(
                    at=now,
                    actor=actor,
                    action=action,
                    target=target,
                    details=_jsonable(dict(details)),
                )
            )

    @base.translate_errors
    def audit_entries(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    # -- locks -----------------------------------------------------------------------------

    @base.translate_errors
    def acquire_lock(self, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
        """Take or renew a named lock; False when another live holder has it."""
        with self.begin() as conn:
            res = conn.execute(
                update(locks)
                .where(
                    locks.c.name == name, or_(locks.c.holder == holder, locks.c.expires_at < now)
                )
                .values(holder=holder, acquired_at=now, expires_at=now + ttl)
            )
            if res.rowcount:
                return True
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(locks).values(
                            name=name, holder=holder, acquired_at=now, expires_at=now + ttl
                        )
                    )
            except IntegrityError:
                return False
            return True

    @base.translate_errors
    def release_lock(self, name: str, holder: str) -> None:
        with self.begin() as conn:
            conn.execute(delete(locks).where(locks.c.name == name, locks.c.holder == holder))

    @base.translate_errors
    def lock_holder(self, name: str, now: datetime) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(locks.c.holder).where(locks.c.name == name, locks.c.expires_at >= now)
            ).scalar()


def _success(cache: tuple[str | None, str | None], now: datetime) -> dict[str, Any]:
    """A source's state after a successful poll (changed or not)."""
    return {
        "etag": cache[0],
        "last_modified": cache[1],
        "last_poll_at": now,
        "last_success_at": now,
        "consecutive_failures": 0,
        "next_attempt_at": None,
    }


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


__all__ = [
    "ApplyOutcome",
    "ItemChange",
    "ItemFilter",
    "SourceLink",
    "SourceState",
    "Storage",
    "StorageError",
    "StoredItem",
    "StoredTag",
]
