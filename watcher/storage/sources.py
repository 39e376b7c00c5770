"""Sources and their health: what is remembered between polls, the poll log, what the
tracker needs of a source's stored items, duplicate candidates."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from watcher.pipeline.track import TitleKey
from watcher.storage import base, rows
from watcher.storage.core import StorageCore
from watcher.storage.schema import item_sources, items, poll_log, sources_state
from watcher.types import (
    DupCandidate,
    PollResult,
    SourceError,
    SourceState,
    SourceTrouble,
    StoredSlice,
)

# What a source has stored, built once: a poll reads it in every write (thousands in a
# first round), and building the statement each time cost more than running it.
_KNOWN_SLICES = (
    select(
        item_sources.c.item_id,
        item_sources.c.key,
        item_sources.c.content_hash,
        item_sources.c["values"],
    )
    .where(item_sources.c.source_id == bindparam("source_id"))
    .order_by(item_sources.c.id)
)


# Up to this many source ids a read names them (IN); above, it reads every row and keeps
# theirs (a cycle over most sources).
_FEW_IDS = 500


@dataclass(frozen=True)
class DailyPolls:
    """One day of a source's poll log: polls, failed polls, new items."""

    polls: int = 0
    failures: int = 0
    new: int = 0


@dataclass
class Deferred:
    """Writes of a batch's polls that nothing in the batch reads back: each source's state
    row and its poll log row, and (SQLite) the new items' entries in the full-text index.
    ``_write_deferred`` writes them together when the batch's transaction ends: a few
    statements instead of two or three per source."""

    states: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    polls: list[dict[str, Any]] = field(default_factory=list)
    search: list[int] = field(default_factory=list)  # new items not yet in the index

    def __bool__(self) -> bool:
        return bool(self.states or self.polls or self.search)


class SourcesRoom(StorageCore):
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
        return rows.state_of(row, source_id, count)

    @base.translate_errors
    def source_states(self, *, with_counts: bool = True) -> dict[str, SourceState]:
        """Every source's remembered state; ``with_counts`` adds their numbers of items."""
        with self.engine.connect() as conn:
            found_rows = conn.execute(select(sources_state)).mappings().all()
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
            r["source_id"]: rows.state_of(r, r["source_id"], counts.get(r["source_id"], 0))
            for r in found_rows
        }
        for sid, n in counts.items():
            out.setdefault(sid, SourceState(source_id=sid, item_count=n))
        return out

    @base.translate_errors
    def source_troubles(self, source_ids: Collection[str]) -> dict[str, SourceTrouble]:
        """What the stored states of these sources say of their problems (failures in a
        row, the last error, the warning), for the sources with a stored state. Four
        columns, not the whole state: the admin alerts read it for every source a cycle
        polled, and the whole state of 2,000 sources took 12 to 25 ms to read (its times
        and field profiles decoded). A cycle over many sources reads every row, without
        thousands of bound ids."""
        wanted = set(source_ids)
        if not wanted:
            return {}
        c = sources_state.c
        q = select(
            c.source_id, c.consecutive_failures, c.last_error_code, c.last_error_message, c.warning
        )
        if len(wanted) <= _FEW_IDS:
            q = q.where(c.source_id.in_(sorted(wanted)))
        with self.engine.connect() as conn:
            found = conn.execute(q).all()
        return {
            sid: SourceTrouble(failures or 0, code, message, warning)
            for sid, failures, code, message, warning in found
            if sid in wanted
        }

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
            found_rows = (
                conn.execute(
                    select(poll_log)
                    .where(poll_log.c.source_id == source_id)
                    .order_by(poll_log.c.started_at.desc(), poll_log.c.id.desc())
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in found_rows]

    @base.translate_errors
    def daily_poll_counts(
        self, source_id: str, since: datetime, tz: tzinfo
    ) -> dict[date, DailyPolls]:
        """A source's polls since a time, counted per local day (``tz``): polls, failed
        polls and new items. Days without a poll are absent. Read-only (the admin's
        source chart); counted here rather than in SQL, whose date functions differ per
        database and know no time zones on SQLite."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(poll_log.c.started_at, poll_log.c.status, poll_log.c.new).where(
                    poll_log.c.source_id == source_id, poll_log.c.started_at >= since
                )
            ).all()
        out: dict[date, DailyPolls] = {}
        for started_at, status, new in found:
            day = started_at.astimezone(tz).date()
            seen = out.get(day, DailyPolls())
            out[day] = DailyPolls(
                polls=seen.polls + 1,
                failures=seen.failures + (status == "error"),
                new=seen.new + int(new or 0),
            )
        return out

    @base.translate_errors
    def known_slices(self, source_id: str) -> dict[str, StoredSlice]:
        """This source's stored items, as the tracker needs them."""
        with self.engine.connect() as conn:
            return self._known_slices_in(conn, source_id)

    def _known_slices_in(self, conn: Connection, source_id: str) -> dict[str, StoredSlice]:
        found: Iterable[tuple[int, str, str, Any]]
        if conn.dialect.name == "sqlite":
            # The statement's text straight to the driver (``base.sqlite_run``): every
            # poll that parses asks, and a first poll of 2,000 sources spent a few per
            # cent of its writer's time in SQLAlchemy's execution of it, for no rows.
            found = [
                (item_id, key, content_hash, values and json.loads(values))
                for item_id, key, content_hash, values in base.sqlite_run(
                    conn, base.sqlite_text(_KNOWN_SLICES, conn), (source_id,)
                )
            ]
        else:
            found = conn.execute(_KNOWN_SLICES, {"source_id": source_id}).all()
        return {
            key: StoredSlice(item_id, source_id, key, content_hash, values or {})
            for item_id, key, content_hash, values in found
        }

    @base.translate_errors
    def known_statuses(self, source_id: str) -> dict[str, str | None]:
        with self.engine.connect() as conn:
            found_rows = conn.execute(
                select(item_sources.c.key, items.c.status)
                .join(items, items.c.id == item_sources.c.item_id)
                .where(item_sources.c.source_id == source_id)
            ).all()
        return {r.key: r.status for r in found_rows}

    @base.translate_errors
    def duplicate_candidates(
        self, source_id: str, identifiers: Iterable[str], title_keys: Iterable[TitleKey]
    ) -> list[DupCandidate]:
        """Stored items of other sources with one of these call identifiers or a deadline
        on the same day and a title that could be close (``candidate_keys`` makes both;
        from an in-memory index kept up to date incrementally)."""
        with self.engine.connect() as conn:
            return self._candidates_in(conn, source_id, identifiers, title_keys)

    def _candidates_in(
        self,
        conn: Connection,
        source_id: str,
        identifiers: Iterable[str],
        title_keys: Iterable[TitleKey],
    ) -> list[DupCandidate]:
        return self.candidates.lookup(conn, source_id, identifiers, title_keys)

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
        deferred: Deferred | None = None,
    ) -> None:
        """Record a poll answered "not modified" (into ``deferred`` when given)."""
        poll = self._poll_row(result, started_at or now, now)
        self._record_poll(conn, source_id, rows.success(cache, now), poll, deferred)

    def _record_poll(
        self,
        conn: Connection,
        source_id: str,
        state: dict[str, Any],
        poll: dict[str, Any],
        deferred: Deferred | None,
    ) -> None:
        """A poll's source state and log row: into ``deferred`` (written with the rest of
        its batch), or written now."""
        now_or_later = deferred if deferred is not None else Deferred()
        now_or_later.states.append((source_id, state))
        now_or_later.polls.append(poll)
        if deferred is None:
            self._write_deferred(conn, now_or_later)

    def _write_deferred(self, conn: Connection, deferred: Deferred) -> None:
        """Write ``deferred``: state rows grouped by the columns they set, one UPDATE
        executemany per group (the rows of sources polled for the first time, which the
        update missed, inserted in one more), then the poll log."""
        groups: dict[tuple[str, ...], list[tuple[str, dict[str, Any]]]] = {}
        for source_id, values in deferred.states:
            groups.setdefault(tuple(sorted(values)), []).append((source_id, values))
        for group in groups.values():
            res = conn.execute(
                update(sources_state).where(sources_state.c.source_id == bindparam("state_of")),
                [{"state_of": source_id, **values} for source_id, values in group],
            )
            if res.rowcount != len(group):  # sources polled for the first time
                have = set(
                    conn.execute(
                        select(sources_state.c.source_id).where(
                            sources_state.c.source_id.in_([source_id for source_id, _ in group])
                        )
                    ).scalars()
                )
                # The columns a write leaves out take the table's defaults (no failures
                # yet, no baseline).
                missing = [
                    {"source_id": source_id, **values}
                    for source_id, values in group
                    if source_id not in have
                ]
                if missing:
                    conn.execute(insert(sources_state), missing)
        if deferred.polls:
            conn.execute(insert(poll_log), deferred.polls)

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
            state = {
                "last_poll_at": now,
                "last_error_at": now,
                "last_error_code": error.code,
                "last_error_message": error.message[:2000],
                "consecutive_failures": failures,
                "next_attempt_at": next_attempt_at,
            }
            poll = self._poll_row(result, started_at or now, now)
            self._record_poll(conn, source_id, state, poll, None)
        return failures

    @base.translate_errors
    def set_source_warning(self, source_id: str, warning: str | None) -> None:
        with self.begin() as conn:
            self._write_deferred(conn, Deferred(states=[(source_id, {"warning": warning})]))

    @staticmethod
    def _poll_row(result: PollResult, started: datetime, now: datetime) -> dict[str, Any]:
        return {
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
            "announced": result.announced,
            "baselined": result.baselined,
        }
