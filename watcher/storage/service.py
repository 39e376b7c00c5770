"""The service's own records: meta values, the audit log and named locks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from watcher.storage import base
from watcher.storage.core import StorageCore
from watcher.storage.schema import audit_log, locks, meta


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
    def release_lock(self, name: str, holder: str) -> None:
        with self.begin() as conn:
            conn.execute(delete(locks).where(locks.c.name == name, locks.c.holder == holder))

    @base.translate_errors
    def lock_holder(self, name: str, now: datetime) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(locks.c.holder).where(locks.c.name == name, locks.c.expires_at >= now)
            ).scalar()
