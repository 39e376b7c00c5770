"""The service's own records: meta values, the audit log, named locks, and the robots.txt
copies kept between processes."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from watcher.robots import RobotsCopy, RobotsStatus
from watcher.storage import base
from watcher.storage.core import StorageCore
from watcher.storage.schema import audit_log, locks, meta

log = logging.getLogger(__name__)

ROBOTS_META = "robots:"  # meta keys of kept robots.txt copies: "robots:" + the origin


def robots_key(origin: str) -> str:
    """The meta key of an origin's robots.txt copy; an origin too long for a key (64
    characters) is named by its hash (the value names the origin in full)."""
    key = ROBOTS_META + origin
    if len(key) <= 64:
        return key
    return ROBOTS_META + "#" + hashlib.sha256(origin.encode()).hexdigest()[:56]


class ServiceRoom(StorageCore):
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

    # -- robots.txt copies ------------------------------------------------------------------

    @base.translate_errors
    def robots_copies(self) -> dict[str, RobotsCopy]:
        """The robots.txt copies kept by the HTTP clients of every process (the
        ``RobotsStore`` of ``watcher.http``), by origin: one ``meta`` row each, the copy as
        JSON. A row that cannot be read is skipped (its origin is fetched again)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(meta.c.value).where(meta.c.key.startswith(ROBOTS_META, autoescape=True))
            ).scalars()
            copies: dict[str, RobotsCopy] = {}
            for value in rows:
                try:
                    d = json.loads(value or "")
                    copy = RobotsCopy(
                        origin=d["origin"],
                        status=RobotsStatus(d["status"]),
                        fetched_at=datetime.fromisoformat(d["fetched_at"]),
                        text=d.get("text", ""),
                        reason=d.get("reason", ""),
                    )
                except (ValueError, KeyError, TypeError) as e:
                    log.warning("a kept robots.txt copy could not be read: %s", e)
                    continue
                copies[copy.origin] = copy
        return copies

    @base.translate_errors
    def save_robots_copies(self, copies: Sequence[RobotsCopy]) -> None:
        """Keep these robots.txt copies, each replacing its origin's (one transaction)."""
        rows = {
            robots_key(c.origin): json.dumps(
                {
                    "origin": c.origin,
                    "status": c.status.value,
                    "fetched_at": c.fetched_at.isoformat(),
                    "reason": c.reason,
                    "text": c.text,
                },
                ensure_ascii=False,
            )
            for c in copies
        }
        if not rows:
            return
        with self.begin() as conn:
            conn.execute(delete(meta).where(meta.c.key.in_(sorted(rows))))
            # Another process may have kept the same origin meanwhile: as fresh as ours.
            conn.execute(
                base.insert_ignoring(conn, meta, ["key"]),
                [{"key": k, "value": v} for k, v in rows.items()],
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
                    details=json.loads(json.dumps(dict(details), default=str)),
                )
            )

    @base.translate_errors
    def audit_entries(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            found_rows = (
                conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
                .mappings()
                .all()
            )
        return [dict(r) for r in found_rows]

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
    def acquire_locks(
        self, names: Iterable[str], holder: str, ttl: timedelta, now: datetime
    ) -> set[str]:
        """Take every named lock that no live holder has, in one transaction; the names
        taken. Expired locks (a crashed holder's) are taken over. Safe against another
        process taking the same names at the same time: a name is taken once."""
        wanted = sorted(set(names))
        if not wanted:
            return set()
        with self.begin() as conn:
            conn.execute(delete(locks).where(locks.c.name.in_(wanted), locks.c.expires_at < now))
            # Ours are the rows this insert made: a name a live holder has, or another
            # process takes meanwhile, is skipped. (Two statements: reading the held names
            # first and ours after cost a cycle of 2,000 sources 15 ms of its start.)
            expires = now + ttl
            rows = [
                {"name": n, "holder": holder, "acquired_at": now, "expires_at": expires}
                for n in wanted
            ]
            taken = base.insert_rows(conn, locks, rows, skip_taken=["name"], returning=["name"])
            return {name for (name,) in taken}

    @base.translate_errors
    def release_locks(self, names: Iterable[str], holder: str) -> None:
        wanted = sorted(set(names))
        if wanted:
            with self.begin() as conn:
                conn.execute(
                    delete(locks).where(locks.c.name.in_(wanted), locks.c.holder == holder)
                )

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
