"""Digests, deliveries and opt-outs: the storage side of exactly-once email.

The state machine of one member's delivery of one digest::

    pending ──claim──▶ sending ──250──▶ sent
       ▲                  │  ├──5xx / too many attempts──▶ failed
       └──4xx (backoff)───┘  └──opted out / no longer a member──▶ opted_out | cancelled

A digest and all its deliveries are written in one transaction *before* anything is sent.
A sender claims one delivery at a time (``pending`` → ``sending`` with a lease in
``next_attempt_at``); only one claimant can win, so two senders never mail the same member.
A claim whose lease ran out belongs to a sender that died: it may be claimed again.

What a network's digests have looked at is kept as ids, not times (``Seen``, stored with
each digest): the items and changes the digest saw, as ranges of ids, and the items it saw
held for the admin. The next digest looks only at what is not in there, so a wall clock
set back or forward never makes a digest skip or repeat an item. On PostgreSQL ids are
handed out before commit, so an id below the highest one seen may still commit later: the
ids a digest did not see are kept out of the ranges (holes) until a digest built at least
``LATE_COMMITS`` after one that saw past them fills them (nothing can commit that late);
SQLite has one writer and ids commit in order, so there each digest fills up to what it saw.

Every method translates database errors into ``StorageError``.
"""

from __future__ import annotations

import hashlib
import secrets
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from watcher.dates import from_iso
from watcher.storage import base, rows
from watcher.storage.core import StorageCore
from watcher.storage.items import links_of, tags_without_evidence
from watcher.storage.schema import (
    deliveries,
    digest_schedule,
    digests,
    item_changes,
    item_sources,
    items,
    meta,
    optouts,
    tags,
)
from watcher.types import StoredItem

# Delivery statuses.
PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
OPTED_OUT = "opted_out"
CANCELLED = "cancelled"
OPEN_STATUSES = (PENDING, SENDING)

# Digest statuses.
DIGEST_SENDING = "sending"
DIGEST_DONE = "done"
DIGEST_EMPTY = "empty"

# Longer than any write transaction lasts (a poll's write takes seconds; the candidate index
# allows 2 minutes): an id handed out before a digest read the items has committed, or never
# will, by a digest built this much later.
LATE_COMMITS = timedelta(minutes=10)
# Digests recorded before ids were kept (schema revision 0005 and earlier) selected by time;
# their history is read with their rules once (``_legacy_seen``).
_LEGACY_NEW_LOOKBACK = timedelta(hours=1)
_LEGACY_CHANGE_LOOKBACK = timedelta(days=2)


@dataclass(frozen=True)
class IdSet:
    """A set of database ids as sorted, disjoint, inclusive ranges: small when ids come in
    runs, as they do. Immutable; ``with_ids`` and ``filled_to`` make new sets."""

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, ids: Iterable[int]) -> IdSet:
        return cls().with_ids(ids)

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, int):
            return False
        k = bisect_right(self.ranges, item_id, key=lambda r: r[0]) - 1
        return k >= 0 and self.ranges[k][1] >= item_id

    @property
    def floor(self) -> int:
        """Every id from 1 to this one is in the set (0: not even 1)."""
        return self.ranges[0][1] if self.ranges and self.ranges[0][0] <= 1 else 0

    def with_ids(self, ids: Iterable[int]) -> IdSet:
        runs: list[tuple[int, int]] = []
        for i in sorted(set(ids)):
            if runs and i == runs[-1][1] + 1:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))
        return IdSet(_merged([*self.ranges, *runs])) if runs else self

    def filled_to(self, last: int) -> IdSet:
        """The set with every id from 1 to ``last``."""
        return IdSet(_merged([*self.ranges, (1, last)])) if last >= 1 else self

    def to_json(self) -> list[list[int]]:
        return [[lo, hi] for lo, hi in self.ranges]

    @classmethod
    def from_json(cls, data: Iterable[Sequence[int]] | None) -> IdSet:
        return cls(_merged([(int(r[0]), int(r[1])) for r in data or ()]))


def _merged(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


@dataclass(frozen=True)
class Seen:
    """What a network's digests have looked at, up to and including one digest: the items
    (ids, whatever was decided about each) and changes (``item_changes`` ids), the items seen
    while held for the admin (they are looked at again once released), and the highest ids
    the digest saw (``item_mark``, ``change_mark``)."""

    items: IdSet = IdSet()
    changes: IdSet = IdSet()
    held: frozenset[int] = frozenset()
    item_mark: int = 0
    change_mark: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "items": self.items.to_json(),
            "changes": self.changes.to_json(),
            "held": sorted(self.held),
            "item_mark": self.item_mark,
            "change_mark": self.change_mark,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Seen:
        return cls(
            IdSet.from_json(data.get("items")),
            IdSet.from_json(data.get("changes")),
            frozenset(int(i) for i in data.get("held", ())),
            int(data.get("item_mark", 0)),
            int(data.get("change_mark", 0)),
        )


@dataclass(frozen=True)
class NetworkHistory:
    """What a network's earlier digests say about the next one.

    ``epoch`` is the end of the network's first digest window (None: no digest yet, and
    ``seen`` is None too); ``seen`` is what its digests have looked at; ``settled`` the
    highest item and change ids below which nothing can still commit (the marks of a digest
    built ``LATE_COMMITS`` ago), or None when ids commit in order (SQLite: whatever the next
    digest sees is settled)."""

    network_id: str
    epoch: datetime | None
    last_window_end: datetime | None
    seen: Seen | None = None
    settled: tuple[int, int] | None = None


@dataclass(frozen=True)
class Visible:
    """Items and changes as the database holds them now, by id: every item above a floor
    (and the ones named) with whether it is held and whether it is relevant, and every
    change id above a floor."""

    held: Mapping[int, bool] = field(default_factory=dict)  # item id → held now
    relevant: frozenset[int] = frozenset()
    changes: tuple[int, ...] = ()


@dataclass(frozen=True)
class NotableChange:
    """One recorded notable update of an item (what a digest reports as 'updated')."""

    id: int
    item_id: int
    at: datetime
    source_id: str
    changes: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class DigestRecord:
    id: int
    network_id: str
    window_start: datetime | None
    window_end: datetime
    created_at: datetime
    status: str
    subject: str | None
    item_ids: tuple[int, ...]
    payload: Mapping[str, Any]
    counts: Mapping[str, int]  # deliveries by status


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    digest_id: int
    address: str
    message_id: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True)
class DeliveryLogEntry:
    """One member's delivery of one digest, for the admin's delivery log."""

    delivery_id: int
    digest_id: int
    network_id: str
    window_end: datetime
    subject: str | None
    address: str
    message_id: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True)
class OptOut:
    network_id: str
    address: str
    at: datetime


@dataclass(frozen=True)
class DigestPlan:
    """A network's next scheduled digest as kept across restarts, and the latest slots
    missed beyond the grace (``missed_count`` 0: none)."""

    network_id: str
    schedule: str
    next_run_at: datetime
    last_run_at: datetime | None = None
    missed_from: datetime | None = None
    missed_until: datetime | None = None
    missed_count: int = 0
    missed_noted_at: datetime | None = None

    def recent_miss(self, now: datetime, within: timedelta = timedelta(days=14)) -> bool:
        """A miss noticed within ``within`` of ``now``: the admin is shown it."""
        return (
            self.missed_count > 0
            and self.missed_noted_at is not None
            and now - within <= self.missed_noted_at
        )


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to record with its digest."""

    address: str
    message_id: str
    status: str = PENDING
    last_error: str | None = None


def _delivery(r: RowMapping) -> DeliveryRecord:
    return DeliveryRecord(
        id=r["id"],
        digest_id=r["digest_id"],
        address=r["address"],
        message_id=r["message_id"],
        status=r["status"],
        attempts=r["attempts"] or 0,
        last_error=r["last_error"],
        next_attempt_at=r["next_attempt_at"],
        sent_at=r["sent_at"],
    )


# The items columns a digest's selection reads (``DeliveryStore.candidates``).
_CANDIDATE_COLUMNS = (
    "id",
    "uid",
    "source_id",
    "title",
    "link",
    "summary",
    "language",
    "kind",
    "status",
    "programme",
    "opening",
    "deadline",
    "deadlines",
    "relevant",
    "first_seen",
    "last_seen",
    "changed_at",
    "baseline",
    "held",
    "released_at",
)


def lock_name(network_id: str) -> str:
    """The name of a network's digest lock (the locks table allows 64 characters)."""
    name = f"digest:{network_id}"
    if len(name) > 64:
        name = "digest:" + hashlib.sha256(network_id.encode()).hexdigest()[:32]
    return name


class DeliveryStore:
    """All SQL of digests, deliveries and opt-outs, over the service's ``Storage``."""

    def __init__(self, storage: StorageCore) -> None:
        self.storage = storage
        self.engine = storage.engine

    # -- what the next digest builds on ----------------------------------------------------

    @property
    def ids_commit_in_order(self) -> bool:
        """SQLite has one writer: an id is visible only after every lower one committed."""
        return self.storage.dialect == "sqlite"

    @base.translate_errors
    def network_history(self, network_id: str, now: datetime) -> NetworkHistory:
        """The network's first and last digest windows, what its digests have looked at,
        and the ids settled at ``now`` (see ``NetworkHistory``)."""
        mine = digests.c.network_id == network_id
        with self.engine.connect() as conn:
            epoch = conn.execute(
                select(digests.c.window_end).where(mine).order_by(digests.c.id).limit(1)
            ).scalar()
            if epoch is None:
                return NetworkHistory(network_id, None, None)
            last = conn.execute(
                select(digests.c.id, digests.c.window_end, digests.c.selection)
                .where(mine)
                .order_by(digests.c.id.desc())
                .limit(1)
            ).one()
            if isinstance(last.selection, Mapping):
                seen = Seen.from_json(last.selection)
            else:
                seen = self._legacy_seen(conn, network_id, epoch, last.window_end)
            settled: tuple[int, int] | None = None
            if not self.ids_commit_in_order:
                settled = (0, 0)
                for (sel,) in conn.execute(
                    select(digests.c.selection)
                    .where(mine, digests.c.created_at <= now - LATE_COMMITS)
                    .order_by(digests.c.id.desc())
                    .limit(5)
                ):
                    if isinstance(sel, Mapping):
                        marks = Seen.from_json(sel)
                        settled = (marks.item_mark, marks.change_mark)
                        break
        return NetworkHistory(network_id, epoch, last.window_end, seen, settled)

    def _legacy_seen(
        self, conn: Connection, network_id: str, epoch: datetime, last_end: datetime
    ) -> Seen:
        """What a network's digests recorded before ids were kept had looked at, by their
        own rules: items that arrived (first seen or released) before the last window's end
        less an hour, or that a digest of that last hour sent; changes recorded before the
        last window's end less two days, or that a digest of that last hour reported."""
        recent = conn.execute(
            select(digests.c.item_ids, digests.c.payload).where(
                digests.c.network_id == network_id,
                digests.c.window_end > last_end - _LEGACY_NEW_LOOKBACK,
            )
        ).all()
        sent = {int(i) for r in recent for i in r.item_ids or ()}
        reported = {int(i) for r in recent for i in (r.payload or {}).get("change_ids", ())}
        bound = max(epoch, last_end - _LEGACY_NEW_LOOKBACK)
        arrived_before = conn.execute(
            select(items.c.id).where(
                items.c.held.is_(False),
                items.c.first_seen <= bound,
                or_(items.c.released_at.is_(None), items.c.released_at <= bound),
            )
        ).scalars()
        held = frozenset(conn.execute(select(items.c.id).where(items.c.held.is_(True))).scalars())
        change_bound = max(epoch, last_end - _LEGACY_CHANGE_LOOKBACK)
        changes_before = conn.execute(
            select(item_changes.c.id).where(item_changes.c.at <= change_bound)
        ).scalars()
        return Seen(
            IdSet.of([*arrived_before, *sent]),
            IdSet.of([*changes_before, *reported]),
            held,
        )

    @base.translate_errors
    def visible(self, item_floor: int, change_floor: int, also: Collection[int] = ()) -> Visible:
        """The items with ids above ``item_floor`` or in ``also`` (held? relevant?) and the
        ids of the changes above ``change_floor``, as committed now."""
        held: dict[int, bool] = {}
        relevant: set[int] = set()
        with self.engine.connect() as conn:
            q = select(items.c.id, items.c.held, items.c.relevant).where(items.c.id > item_floor)
            rows = list(conn.execute(q))
            wanted = sorted(i for i in also if i <= item_floor)
            for start in range(0, len(wanted), 500):
                rows.extend(
                    conn.execute(
                        select(items.c.id, items.c.held, items.c.relevant).where(
                            items.c.id.in_(wanted[start : start + 500])
                        )
                    )
                )
            change_ids = tuple(
                conn.execute(
                    select(item_changes.c.id)
                    .where(item_changes.c.id > change_floor)
                    .order_by(item_changes.c.id)
                ).scalars()
            )
        for item_id, is_held, is_relevant in rows:
            held[item_id] = bool(is_held)
            if is_relevant:
                relevant.add(item_id)
        return Visible(held, frozenset(relevant), change_ids)

    @base.translate_errors
    def current_item_ids(self, now: datetime) -> list[int]:
        """Relevant, not held items that may still be open or forthcoming at ``now`` (what a
        first digest and "closing soon" look at)."""
        q = select(items.c.id).where(
            items.c.relevant.is_(True),
            items.c.held.is_(False),
            or_(items.c.deadline > now, items.c.status.in_(("open", "forthcoming"))),
        )
        with self.engine.connect() as conn:
            return list(conn.execute(q.order_by(items.c.id)).scalars())

    @base.translate_errors
    def candidates(self, ids: Sequence[int]) -> list[StoredItem]:
        """Items by id (in id order) as a digest's selection reads them: what matching a
        network or a person's choices, a call's status and deadlines, and sorting need;
        their tags without the evidence, and without their regions, topics, budget,
        ``extra`` and ``incomplete`` (empty here). Decoding those was most of reading
        8,000 calls closing soon, or 75,000 current ones; ``Storage.get_items`` reads the
        shown ones in full."""
        out: list[StoredItem] = []
        wanted = sorted(set(ids))
        cols = [items.c[name] for name in _CANDIDATE_COLUMNS]
        with self.engine.connect() as conn:
            for chunk in rows.chunks(wanted, 500):
                found = conn.execute(select(*cols).where(items.c.id.in_(chunk))).mappings().all()
                tag_map = tags_without_evidence(conn, chunk)
                src_map = links_of(conn, chunk)
                out.extend(
                    rows.item_of(r, tag_map.get(r["id"], ()), src_map.get(r["id"], ()))
                    for r in found
                )
        out.sort(key=lambda it: it.id)
        return out

    @base.translate_errors
    def closing_soon_ids(self, now: datetime, horizon: datetime) -> list[int]:
        """Relevant, not held, not closed items with a deadline in ``(now, horizon]`` (what
        "closing soon" looks at once a network had its first digest): only their ids and
        deadlines are read, not whole items, and only those whose last deadline is in the
        window or that have several (an earlier one may be): at 100,000 items, parsing every
        open call's deadlines was most of a digest's reading."""
        q = select(items.c.id, items.c.deadlines).where(
            items.c.relevant.is_(True),
            items.c.held.is_(False),
            items.c.deadline > now,  # the last deadline: an index range
            or_(items.c.deadline <= horizon, func.json_array_length(items.c.deadlines) > 1),
            or_(items.c.status.is_(None), items.c.status != "closed"),
        )
        lo, hi = now.astimezone(UTC), horizon.astimezone(UTC)
        out: list[int] = []
        with self.engine.connect() as conn:
            for item_id, deadlines in conn.execute(q.order_by(items.c.id)):
                for d in deadlines or ():
                    when = from_iso(d)
                    if when is not None and lo < when <= hi:
                        out.append(item_id)
                        break
        return out

    @base.translate_errors
    def notable_changes(self, after_id: int) -> list[NotableChange]:
        """Notable updates with ids above ``after_id``, in id order."""
        q = (
            select(item_changes)
            .where(
                item_changes.c.id > after_id,
                item_changes.c.kind == "updated",
                item_changes.c.notable.is_(True),
            )
            .order_by(item_changes.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            NotableChange(r["id"], r["item_id"], r["at"], r["source_id"], tuple(r["changes"] or ()))
            for r in rows
        ]

    @base.translate_errors
    def feed_item_ids(
        self,
        *,
        areas: Sequence[str] | None = None,
        themes: Sequence[str] | None = None,
        sources: Sequence[str] = (),
        kinds: Sequence[str] = (),
        deadline_after: datetime | None = None,
        limit: int = 100,
    ) -> list[int]:
        """Relevant, not held, tagged items for a feed or calendar: with one of ``areas``
        and one of ``themes`` (None: any), newest change first; with ``deadline_after``
        only items whose last deadline is after it, soonest first."""
        q = select(items.c.id).where(
            items.c.relevant.is_(True),
            items.c.held.is_(False),
            items.c.id.in_(select(tags.c.item_id)),
        )
        for kind, wanted in (("area", areas), ("theme", themes)):
            if wanted is not None:
                q = q.where(
                    items.c.id.in_(
                        select(tags.c.item_id).where(tags.c.kind == kind, tags.c.tag.in_(wanted))
                    )
                )
        if sources:
            q = q.where(
                or_(
                    items.c.source_id.in_(sources),
                    items.c.id.in_(
                        select(item_sources.c.item_id).where(item_sources.c.source_id.in_(sources))
                    ),
                )
            )
        if kinds:
            q = q.where(items.c.kind.in_(kinds))
        if deadline_after is not None:
            q = q.where(items.c.deadline > deadline_after).order_by(items.c.deadline, items.c.id)
        else:
            q = q.order_by(
                func.coalesce(items.c.changed_at, items.c.first_seen).desc(), items.c.id.desc()
            )
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(q.limit(limit)).all()]

    # -- recording -------------------------------------------------------------------------

    @base.translate_errors
    def record_digest(
        self,
        network_id: str,
        *,
        window_start: datetime | None,
        window_end: datetime,
        created_at: datetime,
        subject: str | None,
        item_ids: Sequence[int],
        payload: Mapping[str, Any],
        recipients: Sequence[NewDelivery],
        seen: Seen | None = None,
    ) -> tuple[int, bool]:
        """Write a digest and every delivery in one transaction, before anything is sent.
        ``seen``: what the network's digests have looked at, this one included.

        Returns ``(digest_id, created)``. When this network's digest for the same window
        end already exists (triggered twice) nothing is written and its id comes back with
        ``created=False``."""
        status = DIGEST_SENDING if any(r.status == PENDING for r in recipients) else DIGEST_DONE
        if not recipients:
            status = DIGEST_EMPTY if not item_ids else DIGEST_DONE
        try:
            with self.storage.begin() as conn:
                digest_id = conn.execute(
                    insert(digests)
                    .values(
                        network_id=network_id,
                        window_start=window_start,
                        window_end=window_end,
                        created_at=created_at,
                        status=status,
                        subject=subject,
                        item_ids=list(item_ids),
                        payload=dict(payload),
                        **({"selection": seen.to_json()} if seen is not None else {}),
                    )
                    .returning(digests.c.id)
                ).scalar_one()
                if recipients:
                    conn.execute(
                        insert(deliveries),
                        [
                            {
                                "digest_id": digest_id,
                                "address": r.address,
                                "message_id": r.message_id,
                                "status": r.status,
                                "attempts": 0,
                                "last_error": r.last_error,
                                "next_attempt_at": None,
                                "sent_at": None,
                            }
                            for r in recipients
                        ],
                    )
        except IntegrityError:
            with self.engine.connect() as conn:
                existing = conn.execute(
                    select(digests.c.id).where(
                        digests.c.network_id == network_id, digests.c.window_end == window_end
                    )
                ).scalar()
            if existing is None:
                raise
            return int(existing), False
        return int(digest_id), True

    # -- sending ---------------------------------------------------------------------------

    @base.translate_errors
    def unfinished_digests(self, network_id: str | None = None) -> list[DigestRecord]:
        """Digests with deliveries still to send (oldest first)."""
        q = select(digests).where(digests.c.status == DIGEST_SENDING)
        if network_id is not None:
            q = q.where(digests.c.network_id == network_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(digests.c.window_end, digests.c.id)).mappings().all()
            return self._digest_records(conn, rows)

    @base.translate_errors
    def deliveries(self, digest_id: int) -> list[DeliveryRecord]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(deliveries)
                    .where(deliveries.c.digest_id == digest_id)
                    .order_by(deliveries.c.id)
                )
                .mappings()
                .all()
            )
        return [_delivery(r) for r in rows]

    @base.translate_errors
    def claim(
        self,
        delivery_id: int,
        now: datetime,
        lease: timedelta,
        *,
        sent: int | None = None,
    ) -> DeliveryRecord | None:
        """Take one delivery for sending. Only one caller wins; a delivery is claimable when
        pending and due, or when a previous claim's lease ran out (its sender died).
        ``sent``: a delivery this sender has just sent, marked sent in the same transaction
        (first), so that sending 100 members' copies takes one write each, not two, and
        the one sent is written before anything else is sent."""
        due = or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now)
        with self.storage.begin() as conn:
            if sent is not None:
                self._mark_sent(conn, sent, now)
            row = (
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.id == delivery_id,
                        or_(
                            and_(deliveries.c.status == PENDING, due),
                            and_(
                                deliveries.c.status == SENDING,
                                deliveries.c.next_attempt_at <= now,
                            ),
                        ),
                    )
                    .values(
                        status=SENDING,
                        attempts=deliveries.c.attempts + 1,
                        next_attempt_at=now + lease,
                    )
                    .returning(*deliveries.c)
                )
                .mappings()
                .first()
            )
        return _delivery(row) if row is not None else None

    @base.translate_errors
    def mark_sent(self, delivery_id: int, now: datetime) -> None:
        with self.storage.begin() as conn:
            self._mark_sent(conn, delivery_id, now)

    @staticmethod
    def _mark_sent(conn: Connection, delivery_id: int, now: datetime) -> None:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(status=SENT, sent_at=now, next_attempt_at=None, last_error=None)
        )

    @base.translate_errors
    def mark_retry(
        self, delivery_id: int, error: str, next_attempt_at: datetime, *, count: bool = True
    ) -> None:
        """Back to pending after a transient failure; ``count=False`` gives the attempt back
        (the message never left: the server was unreachable)."""
        values: dict[str, Any] = {
            "status": PENDING,
            "last_error": error[:2000],
            "next_attempt_at": next_attempt_at,
        }
        if not count:
            values["attempts"] = case(
                (deliveries.c.attempts > 0, deliveries.c.attempts - 1), else_=0
            )
        with self.storage.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))

    @base.translate_errors
    def mark_final(self, delivery_id: int, status: str, error: str | None) -> None:
        """A final status other than sent: failed, opted_out or cancelled."""
        with self.storage.begin() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(
                    status=status,
                    last_error=error[:2000] if error else None,
                    next_attempt_at=None,
                )
            )

    @base.translate_errors
    def finish_if_done(self, digest_id: int) -> bool:
        """Mark the digest done when none of its deliveries is pending or sending."""
        with self.storage.begin() as conn:
            open_count = conn.execute(
                select(func.count())
                .select_from(deliveries)
                .where(deliveries.c.digest_id == digest_id, deliveries.c.status.in_(OPEN_STATUSES))
            ).scalar_one()
            if open_count:
                return False
            conn.execute(
                update(digests)
                .where(digests.c.id == digest_id, digests.c.status == DIGEST_SENDING)
                .values(status=DIGEST_DONE)
            )
        return True

    @base.translate_errors
    def next_due(self, now: datetime, network_id: str | None = None) -> datetime | None:
        """When the earliest open delivery may be tried (again): ``now`` when one is due
        already, None when nothing is left to send."""
        q = (
            select(deliveries.c.next_attempt_at)
            .select_from(deliveries.join(digests, digests.c.id == deliveries.c.digest_id))
            .where(deliveries.c.status.in_(OPEN_STATUSES))
        )
        if network_id is not None:
            q = q.where(digests.c.network_id == network_id)
        with self.engine.connect() as conn:
            times = [r[0] for r in conn.execute(q).all()]
        if not times:
            return None
        return max(now, min(t or now for t in times))

    # -- the admin's view ------------------------------------------------------------------

    @base.translate_errors
    def get_digest(self, digest_id: int) -> DigestRecord | None:
        with self.engine.connect() as conn:
            rows = conn.execute(select(digests).where(digests.c.id == digest_id)).mappings().all()
            found = self._digest_records(conn, rows)
        return found[0] if found else None

    @base.translate_errors
    def digests(self, network_id: str | None = None, limit: int = 50) -> list[DigestRecord]:
        """Recorded digests, newest first, with their deliveries counted by status."""
        q = select(digests)
        if network_id is not None:
            q = q.where(digests.c.network_id == network_id)
        q = q.order_by(digests.c.window_end.desc(), digests.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
            return self._digest_records(conn, rows)

    def _digest_records(self, conn: Connection, rows: Sequence[RowMapping]) -> list[DigestRecord]:
        ids = [r["id"] for r in rows]
        counts: dict[int, dict[str, int]] = {}
        if ids:
            for digest_id, status, n in conn.execute(
                select(deliveries.c.digest_id, deliveries.c.status, func.count())
                .where(deliveries.c.digest_id.in_(ids))
                .group_by(deliveries.c.digest_id, deliveries.c.status)
            ).all():
                counts.setdefault(digest_id, {})[status] = int(n)
        return [
            DigestRecord(
                id=r["id"],
                network_id=r["network_id"],
                window_start=r["window_start"],
                window_end=r["window_end"],
                created_at=r["created_at"],
                status=r["status"],
                subject=r["subject"],
                item_ids=tuple(int(i) for i in r["item_ids"] or ()),
                payload=r["payload"] or {},
                counts=counts.get(r["id"], {}),
            )
            for r in rows
        ]

    @base.translate_errors
    def delivery_log(
        self,
        network_id: str | None = None,
        *,
        status: str | Iterable[str] | None = None,
        address: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[DeliveryLogEntry]:
        """Deliveries, newest digest first (the admin's delivery log; ``status="failed"``
        lists what needs attention)."""
        q = select(
            deliveries,
            digests.c.network_id,
            digests.c.window_end,
            digests.c.subject,
        ).select_from(deliveries.join(digests, digests.c.id == deliveries.c.digest_id))
        if network_id is not None:
            q = q.where(digests.c.network_id == network_id)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            q = q.where(deliveries.c.status.in_(wanted))
        if address is not None:
            q = q.where(func.lower(deliveries.c.address) == address.lower())
        q = q.order_by(digests.c.window_end.desc(), deliveries.c.id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            DeliveryLogEntry(
                delivery_id=r["id"],
                digest_id=r["digest_id"],
                network_id=r["network_id"],
                window_end=r["window_end"],
                subject=r["subject"],
                address=r["address"],
                message_id=r["message_id"],
                status=r["status"],
                attempts=r["attempts"] or 0,
                last_error=r["last_error"],
                next_attempt_at=r["next_attempt_at"],
                sent_at=r["sent_at"],
            )
            for r in rows
        ]

    @base.translate_errors
    def retry_failed(self, digest_id: int | None = None, delivery_id: int | None = None) -> int:
        """Queue failed deliveries again (the admin fixed an address or the server);
        the next digest run sends them. Returns how many were queued."""
        conds = [deliveries.c.status == FAILED]
        if digest_id is not None:
            conds.append(deliveries.c.digest_id == digest_id)
        if delivery_id is not None:
            conds.append(deliveries.c.id == delivery_id)
        with self.storage.begin() as conn:
            ids = [
                r[0] for r in conn.execute(select(deliveries.c.digest_id).where(*conds).distinct())
            ]
            n = conn.execute(
                update(deliveries)
                .where(*conds)
                .values(status=PENDING, attempts=0, next_attempt_at=None)
            ).rowcount
            if ids:
                conn.execute(
                    update(digests).where(digests.c.id.in_(ids)).values(status=DIGEST_SENDING)
                )
        return int(n)

    # -- the schedule ----------------------------------------------------------------------

    @base.translate_errors
    def digest_plans(self) -> dict[str, DigestPlan]:
        """Every network's stored next run, by network id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(digest_schedule)).mappings().all()
        return {r["network_id"]: DigestPlan(**r) for r in rows}

    @base.translate_errors
    def digest_plan(self, network_id: str) -> DigestPlan | None:
        with self.engine.connect() as conn:
            r = (
                conn.execute(
                    select(digest_schedule).where(digest_schedule.c.network_id == network_id)
                )
                .mappings()
                .first()
            )
        return DigestPlan(**r) if r is not None else None

    @base.translate_errors
    def save_digest_plan(
        self,
        network_id: str,
        schedule: str,
        next_run_at: datetime,
        *,
        ran_at: datetime | None = None,
        missed: tuple[datetime, datetime, int] | None = None,
        noted_at: datetime | None = None,
    ) -> None:
        """Keep a network's next run (and when it last ran, or slots just found missed:
        ``(first, last, count)``, noticed at ``noted_at``); earlier misses stay recorded
        until a new one replaces them."""
        values: dict[str, Any] = {"schedule": schedule, "next_run_at": next_run_at}
        if ran_at is not None:
            values["last_run_at"] = ran_at
        if missed is not None:
            values.update(
                missed_from=missed[0],
                missed_until=missed[1],
                missed_count=missed[2],
                missed_noted_at=noted_at,
            )
        where = digest_schedule.c.network_id == network_id
        with self.storage.begin() as conn:
            if conn.execute(update(digest_schedule).where(where).values(**values)).rowcount:
                return
        try:
            with self.storage.begin() as conn:
                conn.execute(
                    insert(digest_schedule).values(
                        network_id=network_id, **{"missed_count": 0, **values}
                    )
                )
        except IntegrityError:  # another process made it meanwhile
            with self.storage.begin() as conn:
                conn.execute(update(digest_schedule).where(where).values(**values))

    @base.translate_errors
    def forget_digest_plans(self, keep: Collection[str]) -> int:
        """Drop the plans of networks not in ``keep`` (removed, disabled, without members):
        a network scheduled again starts from its next slot, not from a stale one."""
        with self.storage.begin() as conn:
            return int(
                conn.execute(
                    delete(digest_schedule).where(digest_schedule.c.network_id.not_in(list(keep)))
                ).rowcount
            )

    # -- opt-outs --------------------------------------------------------------------------

    @base.translate_errors
    def add_optout(self, network_id: str, address: str, now: datetime) -> bool:
        """Record an opt-out; True when it is new. Addresses compare case-insensitively."""
        addr = address.strip().lower()
        try:
            with self.storage.begin() as conn:
                conn.execute(insert(optouts).values(network_id=network_id, address=addr, at=now))
        except IntegrityError:
            return False
        return True

    @base.translate_errors
    def remove_optout(self, network_id: str, address: str) -> bool:
        """The admin re-subscribes a member (who asked to come back)."""
        with self.storage.begin() as conn:
            res = conn.execute(
                delete(optouts).where(
                    optouts.c.network_id == network_id,
                    optouts.c.address == address.strip().lower(),
                )
            )
        return bool(res.rowcount)

    @base.translate_errors
    def optouts(self, network_id: str | None = None) -> list[OptOut]:
        """Every opt-out, newest first (the admin sees these)."""
        q = select(optouts)
        if network_id is not None:
            q = q.where(optouts.c.network_id == network_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(optouts.c.at.desc())).mappings().all()
        return [OptOut(r["network_id"], r["address"], r["at"]) for r in rows]

    @base.translate_errors
    def opted_out(self, network_id: str) -> frozenset[str]:
        """The lower-cased addresses that left this network's digest."""
        with self.engine.connect() as conn:
            return frozenset(
                r[0]
                for r in conn.execute(
                    select(optouts.c.address).where(optouts.c.network_id == network_id)
                ).all()
            )

    # -- the signing key -------------------------------------------------------------------

    @base.translate_errors
    def secret(self, key: str = "unsubscribe_secret") -> str:
        """A random key kept in the ``meta`` table, made once (several processes may race
        to make it: the first insert wins and everyone reads that one)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
        if value:
            return str(value)
        try:
            with self.storage.begin() as conn:
                conn.execute(insert(meta).values(key=key, value=secrets.token_urlsafe(32)))
        except IntegrityError:
            pass
        with self.engine.connect() as conn:
            return str(conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one())


__all__ = [
    "CANCELLED",
    "FAILED",
    "OPTED_OUT",
    "PENDING",
    "SENDING",
    "SENT",
    "DeliveryLogEntry",
    "DeliveryRecord",
    "DeliveryStore",
    "DigestPlan",
    "DigestRecord",
    "IdSet",
    "NetworkHistory",
    "NewDelivery",
    "NotableChange",
    "OptOut",
    "Seen",
    "Visible",
    "lock_name",
]
