"""Writes of polls: batches of write jobs in one transaction, a poll's intents executed as
``merge`` decided them, and statuses brought up to date with the calendar."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypedDict, TypeVar

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from typing_extensions import Unpack

from watcher.calls import effective_status, kind_for
from watcher.dates import from_iso
from watcher.pipeline.merge import RecordWrite, Retag, StoredRecord, merge
from watcher.pipeline.track import TitleKey
from watcher.storage import base, rows
from watcher.storage.items import ItemsRoom
from watcher.storage.schema import item_changes, item_sources, items
from watcher.storage.sources import Deferred, SourcesRoom
from watcher.storage.tags import TagsRoom
from watcher.types import (
    Classification,
    DupCandidate,
    Intent,
    Kind,
    Linked,
    NewItem,
    PollResult,
    Status,
    StoredItem,
    StoredSlice,
    Unchanged,
    Updated,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ApplyOutcome:
    new_ids: tuple[int, ...]
    updated_ids: tuple[int, ...]
    merged_ids: tuple[int, ...]
    # Items whose record now combines what several sources gave (a call that took over a
    # news item, or an update of a call other sources filled in): the poll's tags of one
    # source's entry do not describe them; they are tagged from the stored record.
    merged_records: tuple[int, ...] = ()


class ApplyOptions(TypedDict, total=False):
    """How ``Storage.apply`` writes a poll: the source's new cache validators, its warning
    and field profile, when the poll started, and the version of the rules that made the
    tags the intents carry. (Whether a new item is silent or held is the intent's.)"""

    cache: tuple[str | None, str | None]
    warning: str | None
    field_profile: Mapping[str, float] | None
    started_at: datetime | None
    rules_version: str | None


class Transaction:
    """One write transaction of ``Storage.run_batch``: what a poll reads and writes in it.
    Its reads see the transaction's own writes, and those of the jobs before it, except
    each poll's source state and poll log row: those are written together when the
    transaction ends (``flush``; nothing a poll reads in it depends on them), a few
    statements for the batch instead of two per source."""

    def __init__(self, storage: WritesRoom, conn: Connection) -> None:
        self._storage = storage
        self._conn = conn
        self._deferred = Deferred()

    def flush(self) -> None:
        """Write what was deferred (``run_batch`` calls this before it commits)."""
        if self._deferred:
            self._storage._write_deferred(self._conn, self._deferred)
            self._deferred = Deferred()

    def duplicate_candidates(
        self, source_id: str, identifiers: Iterable[str], title_keys: Iterable[TitleKey]
    ) -> list[DupCandidate]:
        return self._storage._candidates_in(self._conn, source_id, identifiers, title_keys)

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
        return self._storage._apply_in(
            self._conn, source_id, intents, result, now, deferred=self._deferred, **options
        )

    def record_not_modified(
        self,
        source_id: str,
        result: PollResult,
        now: datetime,
        cache: tuple[str | None, str | None],
        started_at: datetime | None = None,
    ) -> None:
        self._storage._not_modified_in(
            self._conn, source_id, result, now, cache, started_at, deferred=self._deferred
        )

    def get_items(self, ids: Sequence[int]) -> list[StoredItem]:
        return self._storage._get_items_in(self._conn, ids)

    def set_tags_many(
        self, results: Mapping[int, Classification], now: datetime, rules_version: str | None
    ) -> None:
        self._storage._write_tags(self._conn, results, now, rules_version)


class WritesRoom(SourcesRoom, TagsRoom, ItemsRoom):
    """Write jobs in batches, polls' intents, and statuses that follow the calendar."""

    def _write_deferred(self, conn: Connection, deferred: Deferred) -> None:
        """A batch's deferred writes: its new items into the full-text index, then the
        sources' states and poll log (``SourcesRoom``)."""
        self._index_deferred(conn, deferred)
        super()._write_deferred(conn, deferred)

    def _index_deferred(self, conn: Connection, deferred: Deferred) -> None:
        """The new items a batch has made so far into the full-text index, now."""
        if deferred.search:
            self._index_for_search(conn, deferred.search)
            deferred.search.clear()

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
                    done: list[T | Exception] = [job(txn) for job in jobs]
                    txn.flush()
                    return done
            except Exception as e:
                if isinstance(e, OperationalError) and base.unavailable(e):
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
                    txn = Transaction(self, conn)
                    result = job(txn)
                    txn.flush()
                out.append(result)
            except SQLAlchemyError as e:
                out.append(base.storage_error("run_batch", e))
            except Exception as e:
                out.append(e)
        return out

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
        and the source's health (the options: see ``ApplyOptions``)."""
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
        warning: str | None = None,
        field_profile: Mapping[str, float] | None = None,
        started_at: datetime | None = None,
        rules_version: str | None = None,
        deferred: Deferred | None = None,
    ) -> ApplyOutcome:
        """``apply`` in a transaction of the caller's. What to write for each intent is
        ``merge``'s decision; this only executes it."""
        fresh_all = [i for i in intents if isinstance(i, NewItem)]
        inserted = self._insert_new(conn, [merge(None, i, now) for i in fresh_all], deferred)
        # A record another process stored under the same key meanwhile is not this poll's.
        fresh = [i for i, (item_id, _w) in zip(fresh_all, inserted, strict=True) if item_id]
        new_ids = [item_id for item_id, _w in inserted if item_id]
        new_writes = [w for item_id, w in inserted if item_id]
        to_tag: dict[int, Classification] = {
            item_id: i.classification
            for item_id, i in zip(new_ids, fresh, strict=True)
            if i.classification is not None
        }
        index: list[tuple[int, str | None, str, Sequence[str]]] = [
            (item_id, e.identifier, e.title, e.days)
            for item_id, w in zip(new_ids, new_writes, strict=True)
            if (e := w.index_entry) is not None
        ]
        updated_ids: list[int] = []
        merged_ids: list[int] = []
        by_record: list[int] = []  # records several sources made: tagged from the record
        touched = [i for i in intents if isinstance(i, Linked | Updated)]
        if touched and deferred is not None:
            # An update of a record's title or text takes its old words out of the
            # full-text index (a trigger): a record this batch made must be in it first.
            self._index_deferred(conn, deferred)
        records = self._records_in(conn, [i.item_id for i in touched])
        for intent in touched:
            stored = records[intent.item_id]
            w = merge(stored, intent, now)
            self._execute(conn, source_id, stored.id, w, now)
            # A later intent of this poll on the same record sees this write.
            records[stored.id] = replace(
                stored,
                values={**stored.values, **w.values},
                source_ids=stored.source_ids | {source_id},
            )
            (merged_ids if isinstance(intent, Linked) else updated_ids).append(stored.id)
            if w.index_entry is not None:
                e = w.index_entry
                index.append((stored.id, e.identifier, e.title, e.days))
            if w.retag is Retag.RECORD:
                by_record.append(stored.id)
            elif w.retag is Retag.ITEM and intent.classification is not None:
                to_tag[stored.id] = intent.classification
        self._touch_unchanged(
            conn, source_id, [i for i in intents if isinstance(i, Unchanged)], now
        )
        for item_id in by_record:
            to_tag.pop(item_id, None)
        if to_tag:
            self._write_tags(conn, to_tag, now, rules_version, frozenset(new_ids))
        state = {
            **rows.success(cache, now),
            "last_parsed": result.parsed,
            "warning": warning,
            "baseline_done": True,
            "field_profile": dict(field_profile or {}),
        }
        poll = self._poll_row(result, started_at or now, now)
        self._record_poll(conn, source_id, state, poll, deferred)
        # The duplicate index learns of this poll's items at once, so that the next poll of
        # a batch sees them; a transaction rolled back rebuilds it (``begin``).
        self._noted.flag = True
        self.candidates.note(source_id, index, merged_ids)
        return ApplyOutcome(
            tuple(new_ids),
            tuple(updated_ids),
            tuple(merged_ids),
            tuple(sorted(set(by_record))),
        )

    def _insert_new(
        self, conn: Connection, writes: Sequence[RecordWrite], deferred: Deferred | None = None
    ) -> list[tuple[int | None, RecordWrite]]:
        """New records, their links and "new" history rows in a few executemany calls (a
        first poll of a big source is thousands of rows); each write with its new id, or
        None when a record with its key was already there (a poll of the same source in
        another process got there first: the statements skip it rather than fail). With
        ``deferred`` (a batch's), the records enter the full-text index when the batch
        ends, in one statement for all its polls, not one each."""
        if not writes:
            return []
        # Rows whose keys are taken are skipped and return nothing (``insert_rows``: on
        # PostgreSQL INSERT … ON CONFLICT DO NOTHING RETURNING, on SQLite an executemany
        # between reads of the keys).
        inserted = base.insert_rows(
            conn, items, [w.values for w in writes], skip_taken=["uid"], returning=["id", "uid"]
        )
        id_by_uid: dict[str, int] = {uid: item_id for item_id, uid in inserted}
        todo = [w for w in writes if w.values["uid"] in id_by_uid]
        if not todo:
            return [(None, w) for w in writes]
        ids = [id_by_uid[w.values["uid"]] for w in todo]
        if deferred is not None:
            deferred.search.extend(ids)
        else:
            self._index_for_search(conn, ids)
        base.insert_rows(
            conn,
            item_sources,
            [{"item_id": i, **w.link.values} for i, w in zip(ids, todo, strict=True)],
            skip_taken=["source_id", "key"],
        )
        base.insert_rows(
            conn,
            item_changes,
            [
                {
                    "item_id": i,
                    "source_id": w.values["source_id"],
                    "at": w.values["first_seen"],
                    "kind": "new",
                    "changes": [],
                    "notable": False,
                }
                for i, w in zip(ids, todo, strict=True)
            ],
        )
        return [(id_by_uid.get(w.values["uid"]), w) for w in writes]

    def _records_in(self, conn: Connection, ids: Iterable[int]) -> dict[int, StoredRecord]:
        """Stored records as ``merge`` takes them, with the sources linked to each."""
        wanted = sorted(set(ids))
        found: dict[int, Any] = {}  # item id: its row
        linked: dict[int, set[str]] = {}
        for chunk in rows.chunks(wanted, 500):
            for r in conn.execute(select(items).where(items.c.id.in_(chunk))).mappings():
                found[r["id"]] = r
            for item_id, sid in conn.execute(
                select(item_sources.c.item_id, item_sources.c.source_id).where(
                    item_sources.c.item_id.in_(chunk)
                )
            ):
                linked.setdefault(item_id, set()).add(sid)
        return {i: StoredRecord(i, row, frozenset(linked.get(i, ()))) for i, row in found.items()}

    def _execute(
        self, conn: Connection, source_id: str, item_id: int, w: RecordWrite, now: datetime
    ) -> None:
        """One ``RecordWrite`` of a stored record: its link, its columns, its history."""
        if w.link.insert:
            conn.execute(insert(item_sources).values(item_id=item_id, **w.link.values))
        else:
            conn.execute(
                update(item_sources)
                .where(
                    item_sources.c.source_id == source_id, item_sources.c.key == w.link.match_key
                )
                .values(**w.link.values)
            )
        if w.values:
            conn.execute(update(items).where(items.c.id == item_id).values(**w.values))
        if w.history is not None:
            conn.execute(
                insert(item_changes).values(
                    item_id=item_id,
                    source_id=source_id,
                    at=now,
                    kind=w.history.kind,
                    changes=list(w.history.changes),
                    notable=w.history.notable,
                )
            )

    def _touch_unchanged(
        self, conn: Connection, source_id: str, seen: Sequence[Unchanged], now: datetime
    ) -> None:
        """Items seen again as they were: when, in bulk; keys that changed (guid churn
        matched by link and title) are kept current."""
        ids = [u.item_id for u in seen]
        for chunk in rows.chunks(ids, 500):
            conn.execute(update(items).where(items.c.id.in_(chunk)).values(last_seen=now))
            conn.execute(
                update(item_sources)
                .where(item_sources.c.item_id.in_(chunk), item_sources.c.source_id == source_id)
                .values(last_seen=now)
            )
        for u in seen:
            if u.stored_key is not None:
                conn.execute(
                    update(item_sources)
                    .where(
                        item_sources.c.source_id == source_id, item_sources.c.key == u.stored_key
                    )
                    .values(key=u.item.key)
                )

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
                items.c.deadline <= now,
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
