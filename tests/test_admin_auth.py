"""Admin login: passwords, session cookies, login limits, safe redirects, the secret key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web_builders import BASE_CONFIG, PASSWORD, LiveServer, csrf_of, login
from watcher.app import App
from watcher.config_edit import ConfigFile
from watcher.web import auth

FAST = {"n": 2**10, "r": 8, "p": 1}  # a cheap hash for tests; the format is the same


def test_hash_and_verify() -> None:
    h = auth.hash_password("ett långt lösenord", **FAST)
    assert h.startswith("scrypt$1024$8$1$")
    assert auth.verify_password("ett långt lösenord", h)
    assert not auth.verify_password("ett långt lösenorD", h)
    assert h != auth.hash_password("ett långt lösenord", **FAST)  # salted
    for broken in ("", "scrypt$x", "md5$1$1$1$AA==$AA==", "scrypt$99999999$8$1$AA==$AA=="):
        assert not auth.verify_password("x", broken)


def test_login_sets_a_strict_http_only_admin_cookie_and_goes_to_the_admin(
    web_app: App, client: httpx.Client
) -> None:
    assert client.get("/admin").status_code == 303  # not logged in: to the login page
    r = login(client)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    cookie = r.headers["set-cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/admin"):
        assert flag in cookie
    assert "Secure" not in cookie  # plain http on loopback
    page = client.get("/admin")
    assert page.status_code == 200 and "Översikt" in page.text
    actions = [e["action"] for e in web_app.storage.audit_entries()]
    assert actions == ["admin.login"]


def test_the_session_cookie_is_secure_behind_https(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    app = make_app({**BASE_CONFIG, "watcher": {"base_url": "https://eu.example.se"}})
    with LiveServer(app) as live, httpx.Client(base_url=live.url) as c:
        r = c.get("/admin/login")
    assert "Secure" in r.headers["set-cookie"]


def test_a_wrong_password_or_user_is_refused_and_recorded(
    web_app: App, client: httpx.Client
) -> None:
    r = login(client, password="fel lösenord")
    assert r.status_code == 401 and "Fel användarnamn eller lösenord" in r.text
    assert login(client, user="root").status_code == 401
    assert client.get("/admin").status_code == 303
    assert [e["action"] for e in web_app.storage.audit_entries()] == ["admin.login_failed"] * 2


def test_login_attempts_are_limited_per_address_until_the_window_passes(
    web_app: App, client: httpx.Client, clock: Any
) -> None:
    for _ in range(5):
        assert login(client, password="gissning").status_code == 401
    r = login(client)  # the right password, but too many failures just now
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    assert "För många misslyckade inloggningar" in r.text
    clock.advance(minutes=16)
    assert login(client).status_code == 303


def test_a_password_hash_in_config_is_used_and_changing_it_ends_sessions(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHER_ADMIN_PASSWORD", raising=False)
    first = auth.hash_password("första lösenordet", **FAST)
    app = make_app({**BASE_CONFIG, "web": {"admin_password_hash": first}})
    with LiveServer(app) as live, httpx.Client(base_url=live.url) as c:
        assert login(c, password="första lösenordet").status_code == 303
        assert c.get("/admin").status_code == 200
        cf = ConfigFile.read(app.config.path)  # type: ignore[arg-type]
        cf.set_value("web.admin_password_hash", auth.hash_password("andra lösenordet", **FAST))
        app.set_config(cf.save())
        assert c.get("/admin").status_code == 303  # the old session is over
        assert login(c, password="första lösenordet").status_code == 401
        assert login(c, password="andra lösenordet").status_code == 303


def test_without_any_password_nobody_can_log_in(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHER_ADMIN_PASSWORD", raising=False)
    app = make_app(BASE_CONFIG)
    with LiveServer(app) as live, httpx.Client(base_url=live.url) as c:
        page = c.get("/admin/login")
        assert "watcher admin set-password" in page.text
        assert login(c, password="").status_code == 401


def test_sessions_expire_by_the_apps_clock(web_app: App, admin: httpx.Client, clock: Any) -> None:
    assert admin.get("/admin").status_code == 200
    clock.advance(seconds=web_app.config.web.session_max_age + 1)
    r = admin.get("/admin/sources")
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")


def test_a_tampered_cookie_is_worth_nothing(web_app: App, admin: httpx.Client) -> None:
    value = admin.cookies.get(auth.SESSION_COOKIE)
    assert value
    admin.cookies.set(auth.SESSION_COOKIE, value[:-3] + "abc", path="/admin")
    assert admin.get("/admin").status_code == 303
    forged = auth.SessionCodec("some other key").dumps(
        {"user": "admin", "csrf": "x", "exp": 9e12, "pw": "x"}
    )
    admin.cookies.clear()
    admin.cookies.set(auth.SESSION_COOKIE, forged, path="/admin")
    assert admin.get("/admin").status_code == 303


def test_logout_ends_the_session_and_needs_the_token(web_app: App, admin: httpx.Client) -> None:
    assert admin.post("/admin/logout", data={}).status_code == 403
    token = csrf_of(admin.get("/admin").text)
    r = admin.post("/admin/logout", data={"csrf_token": token})
    assert r.status_code == 303
    assert admin.get("/admin").status_code == 303
    assert web_app.storage.audit_entries()[0]["action"] == "admin.logout"


def test_the_csrf_token_changes_at_login(web_app: App, client: httpx.Client) -> None:
    before = csrf_of(client.get("/admin/login").text)
    login(client)
    after = csrf_of(client.get("/admin").text)
    assert before != after


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/admin/sources", "/admin/sources"),
        ("/admin/sources/new?kind=rss", "/admin/sources/new?kind=rss"),
        ("/admin/login", "/admin"),
        ("/items/1", "/admin"),
        ("//evil.example/admin", "/admin"),
        ("https://evil.example/admin", "/admin"),
        ("/\\evil.example", "/admin"),
        ("/admin\r\nSet-Cookie: x=y", "/admin"),
        ("", "/admin"),
    ],
)
def test_safe_next(target: str, expected: str) -> None:
    assert auth.safe_next(target) == expected


def test_login_goes_back_to_the_page_asked_for_and_never_off_site(
    web_app: App, client: httpx.Client
) -> None:
    r = client.get("/admin/sources?x=1")
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/login?next=%2Fadmin%2Fsources%3Fx%3D1"
    page = client.get(r.headers["location"])
    assert 'name="next" value="/admin/sources?x=1"' in page.text
    r = client.post(
        "/admin/login",
        data={
            "username": "admin",
            "password": PASSWORD,
            "next": "https://evil.example/",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert r.headers["location"] == "/admin"


def test_the_secret_key_is_made_once_and_kept_in_the_database(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("WATCHER_SECRET_KEY", raising=False)
    app = make_app(BASE_CONFIG)
    with LiveServer(app) as live, httpx.Client(base_url=live.url) as c:
        assert login(c).status_code == 303
        cookies = dict(c.cookies)
    key = app.storage.get_meta(auth.SECRET_META_KEY)
    assert key and len(key) > 40
    assert key not in Path(str(app.config.path)).read_text(encoding="utf-8")
    # A restarted service (a new web application on the same database) keeps the sessions.
    with LiveServer(app) as live, httpx.Client(base_url=live.url, cookies=cookies) as c:
        assert c.get("/admin").status_code == 200
    assert app.storage.get_meta(auth.SECRET_META_KEY) == key
    monkeypatch.setenv("WATCHER_SECRET_KEY", "from-the-environment-" + "x" * 30)
    assert auth.secret_key(app) == "from-the-environment-" + "x" * 30
    with LiveServer(app) as live, httpx.Client(base_url=live.url, cookies=cookies) as c:
        assert c.get("/admin").status_code == 303  # signed with the other key


def test_limiter_window() -> None:
    from datetime import UTC, datetime

    lim = auth.LoginLimiter(limit=2, window=timedelta(minutes=10))
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert lim.retry_after("k", t) == 0
    lim.failed("k", t)
    lim.failed("k", t + timedelta(minutes=1))
    assert lim.retry_after("k", t + timedelta(minutes=2)) == 8 * 60 + 1
    assert lim.retry_after("k", t + timedelta(minutes=10, seconds=1)) == 0
    lim.failed("k", t + timedelta(minutes=11))
    lim.succeeded("k")
    assert lim.retry_after("k", t + timedelta(minutes=11)) == 0
