"""The admin's sessions, kept in the database so that they can end.

A login stores a row keyed by the SHA-256 of the session id the cookie carries (the id
itself is never stored: reading the table gives nobody a session). A request is logged in
while its id has a row whose ``expires_at`` is ahead; expiry is absolute from login
(``[web] session_max_age``) and is never pushed on, so a GET only reads. Logout deletes the
session's row, a password change and ``watcher admin revoke-sessions`` delete every row
(or one user's); a login also clears rows that have expired.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, insert, select

from watcher.storage import base
from watcher.storage.core import StorageCore
from watcher.storage.schema import admin_sessions


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class SessionsRoom(StorageCore):
    @base.translate_errors
    def start_session(
        self, session_id: str, user: str, now: datetime, expires_at: datetime
    ) -> None:
        """Record a login: ``session_id`` is live for ``user`` until ``expires_at``.
        Sessions that have expired are cleared on the way."""
        with self.begin() as conn:
            conn.execute(delete(admin_sessions).where(admin_sessions.c.expires_at <= now))
            conn.execute(
                insert(admin_sessions).values(
                    id_hash=_id_hash(session_id),
                    username=user,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    @base.translate_errors
    def session_user(self, session_id: str, now: datetime) -> str | None:
        """The user of a live session (not ended, not expired at ``now``), else None.
        Only reads."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(admin_sessions.c.username).where(
                    admin_sessions.c.id_hash == _id_hash(session_id),
                    admin_sessions.c.expires_at > now,
                )
            ).scalar()

    @base.translate_errors
    def end_session(self, session_id: str) -> bool:
        """End one session (logout); False when it was not live."""
        with self.begin() as conn:
            res = conn.execute(
                delete(admin_sessions).where(admin_sessions.c.id_hash == _id_hash(session_id))
            )
        return bool(res.rowcount)

    @base.translate_errors
    def end_sessions(self, now: datetime, user: str | None = None) -> int:
        """End every session (or every session of ``user``); how many were live at
        ``now``."""
        live = delete(admin_sessions).where(admin_sessions.c.expires_at > now)
        if user is not None:
            live = live.where(admin_sessions.c.username == user)
        with self.begin() as conn:
            res = conn.execute(live)
            conn.execute(delete(admin_sessions).where(admin_sessions.c.expires_at <= now))
        return int(res.rowcount or 0)
