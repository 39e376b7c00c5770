"""Admin sessions that end: the record of every login is kept in the database, so logout,
a password change and ``watcher admin revoke-sessions`` end a session for every copy of
its cookie, and expiry holds whatever the cookie says."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import select, text

from tests.conftest import T0
from tests.web_builders import LiveServer, csrf_of, login
from watcher.app import App
from watcher.cli import main
from watcher.exceptions import StorageError
from watcher.storage import Storage
from watcher.storage.schema import admin_sessions, metadata
from watcher.web import auth


def copy_of(client: httpx.Client, server: LiveServer) -> httpx.Client:
    """Another client with the same cookies (a stolen or copied cookie)."""
    return httpx.Client(base_url=server.url, cookies=dict(client.cookies), timeout=20)


def logged_in(client: httpx.Client) -> bool:
    r = client.get("/admin/sources")
    if r.status_code == 303:
        assert r.headers["location"].startswith("/admin/login")
        return False
    assert r.status_code == 200
    return True


# -- through the web --------------------------------------------------------------------------


def test_a_cookie_copied_before_logout_opens_nothing_after_it(
    web_app: App, server: LiveServer, admin: httpx.Client
) -> None:
    with copy_of(admin, server) as thief:
        assert logged_in(thief)
        r = admin.post("/admin/logout", data={"csrf_token": csrf_of(admin.get("/admin").text)})
        assert r.status_code == 303
        assert not logged_in(admin)
        assert not logged_in(thief)
        # Nor can the copy post: it is an anonymous session now.
        token = csrf_of(thief.get("/admin/login").text)
        assert (
            thief.post("/admin/sources/esf/enabled", data={"csrf_token": token}).status_code == 403
        )


def test_a_session_expires_at_its_recorded_time_whatever_the_cookie_says(
    web_app: App, server: LiveServer, admin: httpx.Client, clock: Any
) -> None:
    """The expiry is the server's: a cookie signed again with a later ``exp`` (a leaked
    key) is still over when its login's time is."""
    codec = auth.SessionCodec(auth.secret_key(web_app))
    data = codec.loads(admin.cookies[auth.SESSION_COOKIE])
    assert data and data["user"] == "admin"
    clock.advance(seconds=web_app.config.web.session_max_age + 1)
    forged = codec.dumps({**data, "exp": (clock.current + timedelta(days=30)).timestamp()})
    with httpx.Client(base_url=server.url, timeout=20) as c:
        c.cookies.set(auth.SESSION_COOKIE, forged, path="/admin")
        assert not logged_in(c)


def test_using_a_session_does_not_extend_it(web_app: App, admin: httpx.Client, clock: Any) -> None:
    """Expiry is absolute from login (a GET writes nothing, so nothing pushes it on)."""
    max_age = web_app.config.web.session_max_age
    clock.advance(seconds=max_age - 60)
    assert logged_in(admin)
    clock.advance(seconds=120)
    assert not logged_in(admin)


def test_a_second_login_ends_the_browsers_earlier_session(
    web_app: App, server: LiveServer, admin: httpx.Client
) -> None:
    with copy_of(admin, server) as before:
        assert login(admin).status_code == 303
        assert logged_in(admin)
        assert not logged_in(before)


def test_revoke_sessions_ends_every_session_at_once(
    web_app: App, server: LiveServer, admin: httpx.Client
) -> None:
    assert logged_in(admin)
    r = CliRunner().invoke(main, ["--config", str(web_app.config.path), "admin", "revoke-sessions"])
    assert r.exit_code == 0, r.output
    assert "admin session(s)" in r.output
    assert not logged_in(admin)
    entry = web_app.storage.audit_entries()[0]
    assert (entry["actor"], entry["action"]) == ("cli", "admin.revoke_sessions")


def test_set_password_ends_every_session_before_the_service_reloads(
    web_app: App, admin: httpx.Client
) -> None:
    """The running service still has the old config (it has not re-read the file), yet
    the sessions are over: their records are gone."""
    assert logged_in(admin)
    r = CliRunner().invoke(
        main,
        ["--config", str(web_app.config.path), "admin", "set-password", "--password-stdin"],
        input="ett helt nytt lösenord\n",
    )
    assert r.exit_code == 0, r.output
    assert web_app.config.web.admin_password_hash is None  # not re-read yet
    assert not logged_in(admin)
    entry = web_app.storage.audit_entries()[0]
    assert entry["action"] == "admin.set_password"
    assert "sessions_ended" in entry["details"]  # (counted on the CLI's own clock)


def test_a_revoked_session_gets_the_login_page_and_can_log_in_again(
    web_app: App, admin: httpx.Client
) -> None:
    web_app.storage.end_sessions(web_app.now())
    r = admin.get("/admin/networks")
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")
    assert login(admin).status_code == 303
    assert logged_in(admin)


# -- storage ------------------------------------------------------------------------------


def test_sessions_are_kept_by_the_hash_of_their_id(any_storage: Storage) -> None:
    later = T0 + timedelta(hours=8)
    any_storage.start_session("sid-one", "admin", T0, later)
    any_storage.start_session("sid-two", "admin", T0, later)
    any_storage.start_session("sid-three", "samordnare", T0, later)
    assert any_storage.session_user("sid-one", T0) == "admin"
    assert any_storage.session_user("sid-one", later - timedelta(seconds=1)) == "admin"
    assert any_storage.session_user("sid-one", later) is None  # expired
    assert any_storage.session_user("no-such", T0) is None
    with any_storage.engine.connect() as conn:
        stored = set(conn.execute(select(admin_sessions.c.id_hash)).scalars())
    assert len(stored) == 3 and not stored & {"sid-one", "sid-two", "sid-three"}
    assert any_storage.end_session("sid-one") is True
    assert any_storage.end_session("sid-one") is False
    assert any_storage.session_user("sid-one", T0) is None
    assert any_storage.session_user("sid-two", T0) == "admin"
    assert any_storage.end_sessions(T0, "samordnare") == 1
    assert any_storage.session_user("sid-two", T0) == "admin"
    assert any_storage.end_sessions(T0) == 1
    assert any_storage.session_user("sid-two", T0) is None


def test_expired_sessions_are_cleared_at_the_next_login(any_storage: Storage) -> None:
    any_storage.start_session("old", "admin", T0, T0 + timedelta(hours=1))
    any_storage.start_session("new", "admin", T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    with any_storage.engine.connect() as conn:
        left = conn.execute(select(admin_sessions.c.username)).scalars().all()
    assert left == ["admin"]
    assert any_storage.end_sessions(T0 + timedelta(hours=2)) == 1


def test_the_sessions_table_is_what_the_migration_makes(migrated_storage: Storage) -> None:
    with migrated_storage.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)

    def names(diff: Any) -> set[str]:
        """The table and index names a difference concerns (alembic gives tuples, or lists
        of tuples for column changes, holding names as strings or objects)."""
        out: set[str] = set()
        for part in diff if isinstance(diff, list) else [diff]:
            for x in part:
                if isinstance(x, str):
                    out.add(x)
                for obj in (x, getattr(x, "table", None)):
                    name = getattr(obj, "name", None)
                    if isinstance(name, str):
                        out.add(name)
        return out

    mine = [d for d in diffs if names(d) & {"admin_sessions", "ix_admin_sessions_expires_at"}]
    assert mine == []


SESSION_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("start_session", ("s", "admin", T0, T0 + timedelta(hours=1))),
    ("session_user", ("s", T0)),
    ("end_session", ("s",)),
    ("end_sessions", (T0,)),
]


@pytest.mark.parametrize(("method", "args"), SESSION_CALLS, ids=[m for m, _ in SESSION_CALLS])
def test_session_database_errors_come_out_as_storage_error(
    any_storage: Storage, method: str, args: tuple[Any, ...]
) -> None:
    with any_storage.engine.begin() as conn:
        conn.execute(text("DROP TABLE admin_sessions"))
    with pytest.raises(StorageError):
        getattr(any_storage, method)(*args)


def test_a_database_out_of_reach_logs_nobody_in(
    web_app: App, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any) -> str | None:
        raise StorageError("database error in session_user: gone")

    monkeypatch.setattr(web_app.storage, "session_user", broken)
    r = admin.get("/admin/sources")
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")
