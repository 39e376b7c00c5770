"""Self-service subscriptions: a person (an address) and their choices.

A person is kept to the address, a random key naming their own digest, how often it comes,
and the choices: a network's digest, areas and themes, or a saved search ("bevakning"). A
choice is ``pending`` until the link in the confirmation email is followed (only the
SHA-256 of the link's secret is stored); pending choices older than ``PENDING_TTL`` are
cleared on the next sign-up. ``delete_subscriber`` removes everything of a person: the
choices, their own digests, and every delivery and opt-out under the address.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from watcher.storage import base
from watcher.storage.core import StorageCore
from watcher.storage.schema import deliveries, digest_schedule, digests, optouts
from watcher.storage.schema import subscribers as subscribers_t
from watcher.storage.schema import subscriptions as subscriptions_t

PENDING = "pending"
ACTIVE = "active"
KINDS = ("network", "topics", "search")
FREQUENCIES = ("daily", "weekly")
PENDING_TTL = timedelta(days=7)
PERSONAL_PREFIX = "p-"


def confirm_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Choice:
    """What a person asks for: a network's digest (``network_id``), areas and themes
    (``topics``: one of the areas and one of the themes; an empty list is any), or a saved
    search (``search``: every word of ``query`` in the item, and the optional filters)."""

    kind: str
    network_id: str | None = None
    areas: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    query: str = ""

    def same_as(self, other: Choice) -> bool:
        return (
            self.kind == other.kind
            and self.network_id == other.network_id
            and set(self.areas) == set(other.areas)
            and set(self.themes) == set(other.themes)
            and set(self.kinds) == set(other.kinds)
            and self.query.strip().lower() == other.query.strip().lower()
        )


@dataclass(frozen=True)
class Subscription:
    """One stored choice."""

    id: int
    choice: Choice
    status: str
    created_at: datetime
    confirmed_at: datetime | None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True)
class Subscriber:
    """A person and their choices (pending ones included)."""

    id: int
    address: str
    key: str
    frequency: str
    created_at: datetime
    subscriptions: tuple[Subscription, ...] = ()

    @property
    def personal_id(self) -> str:
        """Where a network id goes for this person's own digest."""
        return f"{PERSONAL_PREFIX}{self.key}"

    @property
    def active(self) -> tuple[Subscription, ...]:
        return tuple(s for s in self.subscriptions if s.active)

    @property
    def personal(self) -> tuple[Subscription, ...]:
        """The active choices that make up the person's own digest."""
        return tuple(s for s in self.active if s.choice.kind != "network")

    def as_json(self) -> dict[str, Any]:
        """Everything kept about the person (the admin's export)."""
        return {
            "address": self.address,
            "frequency": self.frequency,
            "created_at": self.created_at.isoformat(),
            "subscriptions": [
                {
                    "id": s.id,
                    "kind": s.choice.kind,
                    "network": s.choice.network_id,
                    "areas": list(s.choice.areas),
                    "themes": list(s.choice.themes),
                    "kinds": list(s.choice.kinds),
                    "query": s.choice.query,
                    "status": s.status,
                    "created_at": s.created_at.isoformat(),
                    "confirmed_at": s.confirmed_at.isoformat() if s.confirmed_at else None,
                }
                for s in self.subscriptions
            ],
        }


def _norm(address: str) -> str:
    return address.strip().lower()


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row.id,
        choice=Choice(
            kind=row.kind,
            network_id=row.network_id,
            areas=tuple(row.areas or ()),
            themes=tuple(row.themes or ()),
            kinds=tuple(row.kinds or ()),
            query=row.query or "",
        ),
        status=row.status,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
    )


class SubscriptionsRoom(StorageCore):
    # -- reads -------------------------------------------------------------------------------

    def _load(self, conn: Connection, where: Any = None) -> list[Subscriber]:
        q = select(subscribers_t).order_by(subscribers_t.c.address)
        if where is not None:
            q = q.where(where)
        people = conn.execute(q).all()
        if not people:
            return []
        ids = [p.id for p in people]
        by: dict[int, list[Subscription]] = {i: [] for i in ids}
        for row in conn.execute(
            select(subscriptions_t)
            .where(subscriptions_t.c.subscriber_id.in_(ids))
            .order_by(subscriptions_t.c.id)
        ).all():
            by[row.subscriber_id].append(_subscription(row))
        return [
            Subscriber(p.id, p.address, p.key, p.frequency, p.created_at, tuple(by[p.id]))
            for p in people
        ]

    @base.translate_errors
    def subscriber(self, address: str) -> Subscriber | None:
        """A person and their choices, or None."""
        with self.engine.connect() as conn:
            found = self._load(conn, subscribers_t.c.address == _norm(address))
        return found[0] if found else None

    @base.translate_errors
    def subscribers(self, *, active_only: bool = False) -> list[Subscriber]:
        """Every person, by address (``active_only``: those with an active choice)."""
        with self.engine.connect() as conn:
            people = self._load(conn)
        return [p for p in people if p.active] if active_only else people

    @base.translate_errors
    def network_subscribers(self) -> dict[str, tuple[str, ...]]:
        """The confirmed subscribers of each network's digest, by network id."""
        q = (
            select(subscriptions_t.c.network_id, subscribers_t.c.address)
            .join(subscribers_t, subscribers_t.c.id == subscriptions_t.c.subscriber_id)
            .where(subscriptions_t.c.kind == "network", subscriptions_t.c.status == ACTIVE)
            .order_by(subscribers_t.c.address)
        )
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for network_id, address in conn.execute(q).all():
                out.setdefault(network_id, []).append(address)
        return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}

    # -- writes ------------------------------------------------------------------------------

    @base.translate_errors
    def add_subscription(
        self, address: str, choice: Choice, secret_hash: str, now: datetime
    ) -> int:
        """A pending choice for ``address`` (the person is made when new); its id. Pending
        choices older than ``PENDING_TTL`` (of anyone), and people left with no choice,
        are cleared on the way."""
        addr = _norm(address)
        with self.begin() as conn:
            self._clear_stale(conn, now)
            person = conn.execute(
                select(subscribers_t.c.id).where(subscribers_t.c.address == addr)
            ).scalar()
            if person is None:
                person = conn.execute(
                    insert(subscribers_t)
                    .values(
                        address=addr,
                        key=secrets.token_hex(8),
                        frequency="weekly",
                        created_at=now,
                    )
                    .returning(subscribers_t.c.id)
                ).scalar_one()
            return int(
                conn.execute(
                    insert(subscriptions_t)
                    .values(
                        subscriber_id=person,
                        kind=choice.kind,
                        network_id=choice.network_id,
                        areas=list(choice.areas),
                        themes=list(choice.themes),
                        kinds=list(choice.kinds),
                        query=choice.query or None,
                        status=PENDING,
                        confirm_hash=secret_hash,
                        created_at=now,
                    )
                    .returning(subscriptions_t.c.id)
                ).scalar_one()
            )

    def _clear_stale(self, conn: Connection, now: datetime) -> None:
        conn.execute(
            delete(subscriptions_t).where(
                subscriptions_t.c.status == PENDING,
                subscriptions_t.c.created_at < now - PENDING_TTL,
            )
        )
        empty = select(subscriptions_t.c.id).where(
            subscriptions_t.c.subscriber_id == subscribers_t.c.id
        )
        conn.execute(delete(subscribers_t).where(~empty.exists()))

    @base.translate_errors
    def pending_subscription(
        self, subscription_id: int, secret_hash: str, now: datetime
    ) -> tuple[str, Choice] | None:
        """(address, choice) of a pending choice whose link is valid and not stale; only
        reads (the confirmation page)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(subscriptions_t, subscribers_t.c.address)
                .join(subscribers_t, subscribers_t.c.id == subscriptions_t.c.subscriber_id)
                .where(
                    subscriptions_t.c.id == subscription_id,
                    subscriptions_t.c.status == PENDING,
                    subscriptions_t.c.confirm_hash == secret_hash,
                    subscriptions_t.c.created_at >= now - PENDING_TTL,
                )
            ).first()
        return None if row is None else (row.address, _subscription(row).choice)

    @base.translate_errors
    def confirm_subscription(
        self, subscription_id: int, secret_hash: str, now: datetime
    ) -> str | None:
        """Make a pending choice active; the address, or None for a wrong, used or stale
        link. A choice the person has active already is not kept twice, and a network the
        address had opted out of is theirs again."""
        with self.begin() as conn:
            row = conn.execute(
                select(subscriptions_t, subscribers_t.c.address)
                .join(subscribers_t, subscribers_t.c.id == subscriptions_t.c.subscriber_id)
                .where(
                    subscriptions_t.c.id == subscription_id,
                    subscriptions_t.c.status == PENDING,
                    subscriptions_t.c.confirm_hash == secret_hash,
                    subscriptions_t.c.created_at >= now - PENDING_TTL,
                )
            ).first()
            if row is None:
                return None
            choice = _subscription(row).choice
            twins = [
                r.id
                for r in conn.execute(
                    select(subscriptions_t).where(
                        subscriptions_t.c.subscriber_id == row.subscriber_id,
                        subscriptions_t.c.id != row.id,
                        subscriptions_t.c.status == ACTIVE,
                    )
                ).all()
                if _subscription(r).choice.same_as(choice)
            ]
            if twins:
                conn.execute(delete(subscriptions_t).where(subscriptions_t.c.id.in_(twins)))
            conn.execute(
                update(subscriptions_t)
                .where(subscriptions_t.c.id == row.id)
                .values(status=ACTIVE, confirm_hash=None, confirmed_at=now)
            )
            if choice.kind == "network" and choice.network_id:
                conn.execute(
                    delete(optouts).where(
                        optouts.c.network_id == choice.network_id,
                        optouts.c.address == row.address,
                    )
                )
            return str(row.address)

    @base.translate_errors
    def set_frequency(self, address: str, frequency: str) -> bool:
        """How often the person's own digest comes (daily or weekly)."""
        if frequency not in FREQUENCIES:
            raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}")
        with self.begin() as conn:
            res = conn.execute(
                update(subscribers_t)
                .where(subscribers_t.c.address == _norm(address))
                .values(frequency=frequency)
            )
        return bool(res.rowcount)

    @base.translate_errors
    def change_subscription(self, address: str, subscription_id: int, choice: Choice) -> bool:
        """Change the areas, themes, kinds or words of one of the person's active
        choices (its kind and network stay)."""
        with self.begin() as conn:
            res = conn.execute(
                update(subscriptions_t)
                .where(
                    subscriptions_t.c.id == subscription_id,
                    subscriptions_t.c.status == ACTIVE,
                    subscriptions_t.c.subscriber_id
                    == select(subscribers_t.c.id)
                    .where(subscribers_t.c.address == _norm(address))
                    .scalar_subquery(),
                )
                .values(
                    areas=list(choice.areas),
                    themes=list(choice.themes),
                    kinds=list(choice.kinds),
                    query=choice.query or None,
                )
            )
        return bool(res.rowcount)

    @base.translate_errors
    def end_subscriptions(self, address: str, subscription_ids: Sequence[int] | None = None) -> int:
        """End some of the person's choices (all of them by default); how many ended. A
        person left with no choice is deleted, as by ``delete_subscriber``."""
        addr = _norm(address)
        with self.begin() as conn:
            person = conn.execute(
                select(subscribers_t.c.id).where(subscribers_t.c.address == addr)
            ).scalar()
            if person is None:
                return 0
            q = delete(subscriptions_t).where(subscriptions_t.c.subscriber_id == person)
            if subscription_ids is not None:
                q = q.where(subscriptions_t.c.id.in_(list(subscription_ids)))
            ended = int(conn.execute(q).rowcount or 0)
            left = conn.execute(
                select(subscriptions_t.c.id).where(subscriptions_t.c.subscriber_id == person)
            ).first()
        if left is None:
            self.delete_subscriber(addr)
        return ended

    @base.translate_errors
    def delete_subscriber(self, address: str) -> bool:
        """Remove everything of a person: their choices, their own digests and every
        delivery and opt-out under the address. False when nobody had the address."""
        addr = _norm(address)
        with self.begin() as conn:
            key = conn.execute(
                select(subscribers_t.c.key).where(subscribers_t.c.address == addr)
            ).scalar()
            if key is None:
                return False
            personal = f"{PERSONAL_PREFIX}{key}"
            conn.execute(delete(subscribers_t).where(subscribers_t.c.address == addr))
            # The choices go with the person (ON DELETE CASCADE on both databases).
            own = select(digests.c.id).where(digests.c.network_id == personal)
            conn.execute(
                delete(deliveries).where(
                    or_(deliveries.c.digest_id.in_(own), func.lower(deliveries.c.address) == addr)
                )
            )
            conn.execute(delete(digests).where(digests.c.network_id == personal))
            conn.execute(delete(digest_schedule).where(digest_schedule.c.network_id == personal))
            conn.execute(delete(optouts).where(optouts.c.address == addr))
        return True
