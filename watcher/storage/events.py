"""Admin events: what the admin is told, kept as rows, each row sent once.

Recording is idempotent by ``key``: an open problem (a failing source, a layout warning, a
held flood) has the key ``"<kind>:<subject>"`` while it is open, so a second report of the
same problem, from this process or another, inserts nothing; resolving it clears the key,
so the next failure opens a new row. A one-off event (a delivery failed for good, a missed
digest) keeps its key, so it is never recorded twice.

Sending follows the digests' exactly-once design (``deliveries.py``), with the event as the
unit: a sender *claims* a due row (``pending`` → ``sending``, with a lease in
``next_send_at``), records each target it reached in ``sent_to`` as it goes, and ends the
row ``sent`` or ``failed``, or gives it back ``pending`` for a retry. A retry skips the
targets already reached, so nobody is told twice (a crash between a send and its record
is the one gap, as for digests; the Message-ID is deterministic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import RowMapping

from watcher.storage import base
from watcher.storage.core import StorageCore
from watcher.storage.schema import admin_events

# send_status values
PENDING, SENDING, SENT, FAILED, NONE = "pending", "sending", "sent", "failed", "none"


@dataclass(frozen=True)
class NewEvent:
    """An event to record. ``key``: see the module docstring (None: never deduplicated).
    ``resolves``: the key of an open event this one closes (a recovery)."""

    kind: str
    subject: str
    key: str | None
    message: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    resolves: str | None = None


@dataclass(frozen=True)
class AdminEvent:
    id: int
    kind: str
    subject: str
    key: str | None
    message: str | None
    details: Mapping[str, Any]
    at: datetime
    resolved_at: datetime | None
    resolves: int | None
    send_status: str
    send_attempts: int
    send_error: str | None
    next_send_at: datetime | None
    sent_to: tuple[str, ...]
    sent_at: datetime | None

    @property
    def is_open(self) -> bool:
        """An open problem: not resolved, and of a kind that can be (it has its open key)."""
        return self.resolved_at is None and self.key == f"{self.kind}:{self.subject}"


def _event(r: RowMapping) -> AdminEvent:
    return AdminEvent(
        id=r["id"],
        kind=r["kind"],
        subject=r["subject"],
        key=r["key"],
        message=r["message"],
        details=dict(r["details"] or {}),
        at=r["at"],
        resolved_at=r["resolved_at"],
        resolves=r["resolves"],
        send_status=r["send_status"],
        send_attempts=r["send_attempts"] or 0,
        send_error=r["send_error"],
        next_send_at=r["next_send_at"],
        sent_to=tuple(r["sent_to"] or ()),
        sent_at=r["sent_at"],
    )


class EventsRoom(StorageCore):
    """The admin's events: record, resolve, claim and mark sent, list."""

    @base.translate_errors
    def record_events(
        self,
        new: Sequence[NewEvent],
        now: datetime,
        *,
        resolve: Sequence[str] = (),
        send: bool = True,
    ) -> list[AdminEvent]:
        """In one transaction: resolve the open events with the keys in ``resolve`` (and
        each ``NewEvent.resolves``), then insert the new events whose key is free. A
        recovery (an event with ``resolves``) is recorded only when it closed an open
        event. ``send``: whether anyone is to be told (else ``send_status`` is ``none``).
        Returns the events recorded."""
        out: list[AdminEvent] = []
        with self.begin() as conn:
            closed: dict[str, int] = {}
            for key in {*resolve, *(e.resolves for e in new if e.resolves)}:
                found = conn.execute(
                    select(admin_events.c.id).where(
                        admin_events.c.key == key, admin_events.c.resolved_at.is_(None)
                    )
                ).scalar()
                if found is None:
                    continue
                res = conn.execute(
                    update(admin_events)
                    .where(admin_events.c.id == found, admin_events.c.resolved_at.is_(None))
                    .values(resolved_at=now, key=None)
                )
                if res.rowcount:
                    closed[key] = found
            for e in new:
                if e.resolves is not None and e.resolves not in closed:
                    continue
                values: dict[str, Any] = {
                    "kind": e.kind,
                    "subject": e.subject,
                    "key": e.key,
                    "message": e.message[:4000] if e.message else None,
                    "details": dict(e.details),
                    "at": now,
                    "resolves": closed.get(e.resolves) if e.resolves else None,
                    "send_status": PENDING if send else NONE,
                    "send_attempts": 0,
                    "sent_to": [],
                }
                stmt = (
                    insert(admin_events)
                    if e.key is None
                    else base.insert_ignoring(conn, admin_events, ["key"])
                )
                new_id = conn.execute(stmt.values(**values).returning(admin_events.c.id)).scalar()
                if new_id is None:
                    continue  # recorded already (by this process or another)
                row = conn.execute(select(admin_events).where(admin_events.c.id == new_id))
                out.append(_event(row.mappings().one()))
        return out

    @base.translate_errors
    def open_events(self, subjects: Sequence[str] | None = None) -> list[AdminEvent]:
        """The open problems (of these subjects, or all), oldest first."""
        q = select(admin_events).where(
            admin_events.c.resolved_at.is_(None), admin_events.c.key.is_not(None)
        )
        if subjects is not None:
            q = q.where(admin_events.c.subject.in_(list(subjects)))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(admin_events.c.id)).mappings().all()
        return [e for e in map(_event, rows) if e.is_open]

    @base.translate_errors
    def admin_events(self, limit: int = 300, kind: str | None = None) -> list[AdminEvent]:
        """The latest events, newest first (the admin's "Händelser")."""
        q = select(admin_events)
        if kind is not None:
            q = q.where(admin_events.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(admin_events.c.id.desc()).limit(limit)).mappings()
            return [_event(r) for r in rows]

    @base.translate_errors
    def get_admin_event(self, event_id: int) -> AdminEvent | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(admin_events).where(admin_events.c.id == event_id))
            row = r.mappings().first()
        return _event(row) if row is not None else None

    # -- sending ---------------------------------------------------------------------------

    @base.translate_errors
    def due_events(self, now: datetime) -> list[int]:
        """Events to send now: pending and due, or claimed by a sender whose lease ran
        out; oldest first."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(admin_events.c.id).where(_claimable(now)).order_by(admin_events.c.id)
                ).scalars()
            )

    @base.translate_errors
    def claim_event(self, event_id: int, now: datetime, lease: timedelta) -> AdminEvent | None:
        """Take an event for sending (only one sender wins); None when it is not due or
        another sender has it. Counts the attempt."""
        with self.begin() as conn:
            res = conn.execute(
                update(admin_events)
                .where(admin_events.c.id == event_id, _claimable(now))
                .values(
                    send_status=SENDING,
                    next_send_at=now + lease,
                    send_attempts=admin_events.c.send_attempts + 1,
                )
            )
            if not res.rowcount:
                return None
            row = (
                conn.execute(select(admin_events).where(admin_events.c.id == event_id))
                .mappings()
                .one()
            )
        return _event(row)

    @base.translate_errors
    def mark_event_target(self, event_id: int, target: str) -> None:
        """One target was told: a retry skips it."""
        with self.begin() as conn:
            done = conn.execute(
                select(admin_events.c.sent_to).where(admin_events.c.id == event_id)
            ).scalar()
            targets = list(done or [])
            if target not in targets:
                targets.append(target)
                conn.execute(
                    update(admin_events)
                    .where(admin_events.c.id == event_id)
                    .values(sent_to=targets)
                )

    @base.translate_errors
    def finish_event(self, event_id: int, status: str, error: str | None, now: datetime) -> None:
        """The end of sending: ``sent`` or ``failed`` (with the error kept)."""
        with self.begin() as conn:
            conn.execute(
                update(admin_events)
                .where(admin_events.c.id == event_id)
                .values(
                    send_status=status,
                    send_error=error[:2000] if error else None,
                    next_send_at=None,
                    sent_at=now if status == SENT else None,
                )
            )

    @base.translate_errors
    def retry_event(
        self, event_id: int, error: str, next_send_at: datetime, *, count: bool = True
    ) -> None:
        """Back to pending after a transient failure; ``count=False`` gives the attempt
        back (nothing left: the mail server could not be reached)."""
        values: dict[str, Any] = {
            "send_status": PENDING,
            "send_error": error[:2000],
            "next_send_at": next_send_at,
        }
        if not count:
            values["send_attempts"] = admin_events.c.send_attempts - 1
        with self.begin() as conn:
            conn.execute(update(admin_events).where(admin_events.c.id == event_id).values(**values))


def _claimable(now: datetime) -> Any:
    c = admin_events.c
    return or_(
        and_(c.send_status == PENDING, or_(c.next_send_at.is_(None), c.next_send_at <= now)),
        and_(c.send_status == SENDING, c.next_send_at < now),
    )
