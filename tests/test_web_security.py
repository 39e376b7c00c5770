"""Security: every admin route needs a login; every admin POST needs the CSRF token (and a
refused request changes nothing); scraped text is escaped on every page; only http(s)
links are links; error pages do not echo their input; the security headers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.web_builders import (
    BASE_CONFIG,
    PASSWORD,
    LiveServer,
    config_text,
    csrf_of,
    item,
    login,
    store,
)
from watcher.app import App
from watcher.types import Classification, Evidence, Tag
from watcher.web import admin as admin_module
from watcher.web import auth

XSS_TITLE = '<script>alert("xss")</script><img src=x onerror=alert(1)> Utlysning'
RAW_MARKERS = (
    '<script>alert("xss")',
    "<img src=x onerror",
    "<b>fet</b>",
    "<iframe src=//evil",
    "<iframe src=x",
    "<script>alert(2)",
)
PARAMS = {"source_id": "esf", "network_id": "gr-eu"}


def admin_routes(server: LiveServer) -> list[tuple[str, str]]:
    """(method, concrete path) of every admin route except the login form itself; each is
    checked to be served by the running application."""
    out = []
    for router in admin_module.routers():
        for route in router.routes:
            assert isinstance(route, APIRoute)
            path = admin_module.PREFIX + route.path
            for name, value in PARAMS.items():
                path = path.replace("{" + name + "}", value)
            for method in sorted(route.methods):
                if path == "/admin/login" or (method, path) == ("POST", "/admin/logout"):
                    continue
                out.append((method, path))
    return out


def snapshot(app: App) -> tuple[str, int, int, dict[str, int]]:
    return (
        config_text(app),
        len(app.storage.audit_entries()),
        app.storage.count_items(),
        app.storage.held_counts(),
    )


def test_there_are_admin_routes_to_check_and_all_are_served(
    server: LiveServer, client: httpx.Client
) -> None:
    routes = admin_routes(server)
    assert len([r for r in routes if r[0] == "POST"]) >= 11
    assert len([r for r in routes if r[0] == "GET"]) >= 14
    for method, path in routes:
        assert client.request(method, path).status_code != 404, path


def test_every_admin_route_refuses_without_login(
    web_app: App, server: LiveServer, client: httpx.Client
) -> None:
    anonymous_token = csrf_of(client.get("/admin/login").text)  # a valid anonymous session
    before = snapshot(web_app)
    for method, path in admin_routes(server):
        if method == "GET":
            r = client.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/admin/login?next="), path
        else:
            r = client.request(
                method, path, data={"csrf_token": anonymous_token, "enabled": "0", "action": "save"}
            )
            assert r.status_code == 403, (method, path)
            assert "Åtkomst nekad" in r.text
    assert snapshot(web_app) == before


def test_every_admin_post_refuses_a_missing_or_wrong_csrf_token_and_changes_nothing(
    web_app: App, server: LiveServer, admin: httpx.Client
) -> None:
    with httpx.Client(base_url=server.url) as other:
        foreign_token = csrf_of(other.get("/admin/login").text)  # another session's token
    posts = [path for method, path in admin_routes(server) if method == "POST"]
    before = snapshot(web_app)
    payload = {
        "enabled": "0",
        "action": "save",
        "name": "Ändrad",
        "url": "https://x.example/",
        "kind": "rss",
        "id": "ny",
        "members": "a@example.se",
        "text": "x",
        "file": "x",
    }
    for path in posts:
        for token in (None, "", "wrong-token", foreign_token):
            data = dict(payload)
            if token is not None:
                data["csrf_token"] = token
            r = admin.post(path, data=data)
            assert r.status_code == 403, (path, token)
    assert snapshot(web_app) == before
    # The login form needs its token too.
    with httpx.Client(base_url=server.url) as fresh:
        fresh.get("/admin/login")
        r = fresh.post("/admin/login", data={"username": "admin", "password": PASSWORD})
        assert r.status_code == 403
        assert fresh.get("/admin").status_code == 303


@pytest.fixture
def hostile(web_app: App) -> int:
    """An item whose every text field is markup, as a broken or hostile source could give."""
    [item_id] = store(
        web_app,
        "esf",
        [
            item(
                "evil",
                XSS_TITLE,
                link="javascript:alert(document.cookie)",
                summary="<b>fet</b> <iframe src=//evil.example></iframe> sammanfattning",
                programme="<b>fet</b>",
                budget="<iframe src=x>",
                identifier='"><script>alert(2)</script>',
                deadlines=(datetime(2026, 11, 20, 16, 0, tzinfo=UTC),),
            )
        ],
    )
    web_app.storage.set_tags(
        item_id,
        Classification(
            (
                Tag(
                    "area",
                    "fonder-program",
                    '<script>alert("xss")</script>',
                    (Evidence("title", "<img src=x onerror=alert(1)>"),),
                ),
            ),
            True,
        ),
        web_app.now(),
    )
    return item_id


def assert_escaped(html: str, where: str, *, shows_title: bool = True) -> None:
    for marker in RAW_MARKERS:
        assert marker not in html, (where, marker)
    assert 'href="javascript:' not in html.lower(), where
    if shows_title:
        assert "&lt;script&gt;alert(" in html, where


def test_scraped_markup_is_escaped_on_every_page(
    web_app: App, admin: httpx.Client, hostile: int
) -> None:
    pages = {
        "list": "/",
        "search": "/?q=Utlysning",
        "deadline-sort": "/?sort=deadline",
        "item": f"/items/{hostile}",
        "timeline": "/deadlines",
        "item-en": f"/items/{hostile}?lang=en",
        "digest": "/admin/networks/gr-eu/digest",
    }
    for where, url in pages.items():
        r = admin.get(url)
        assert r.status_code == 200, where
        assert_escaped(r.text, where)
    frame = admin.get("/admin/networks/gr-eu/digest.html")
    assert_escaped(frame.text, "digest-frame")
    # The rule editor's back-test lists item titles too.
    page = admin.get("/admin/rules")
    url = re.search(r'href="(/admin/rules/edit\?file=[^"]+)"', page.text)
    assert url
    edit = admin.get(url.group(1).replace("&amp;", "&"))
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', edit.text))
    rule = '[[rule]]\nid = "utl"\narea = "partners"\nterms.sv = ["utlysning"]\n'
    r = admin.post("/admin/rules/edit", data={**fields, "text": rule, "action": "check"})
    assert "+ area:partners" in r.text
    assert_escaped(r.text, "back-test")
    # And the JSON API returns the text as data, as JSON.
    api = admin.get(f"/api/items/{hostile}")
    assert api.headers["content-type"].startswith("application/json")
    assert api.json()["title"] == XSS_TITLE


def test_links_other_than_http_and_https_are_not_links(web_app: App, client: httpx.Client) -> None:
    bad = [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
    ]
    ids = store(web_app, "esf", [item(f"l{i}", f"Länk {i}", link=url) for i, url in enumerate(bad)])
    for item_id, url in zip(ids, bad, strict=True):
        page = client.get(f"/items/{item_id}").text
        hrefs = re.findall(r'href="([^"]*)"', page)
        assert not [
            h
            for h in hrefs
            if h.strip().lower().startswith(("javascript", "data", "vbscript", "file"))
        ], url
        assert '<span class="unsafe-link">' in page
    good = store(web_app, "esf", [item("ok", "Bra länk", link="https://ec.europa.eu/x?a=1&b=2")])
    page = client.get(f"/items/{good[0]}").text
    assert (
        '<a href="https://ec.europa.eu/x?a=1&amp;b=2" rel="noopener noreferrer nofollow">' in page
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/<script>alert(1)</script>", 404),
        ("/items/<script>alert(1)</script>", 404),
        ("/items/1%22%3E%3Cscript%3Ealert(1)%3C/script%3E", 404),
        ("/deadlines?weeks=<script>alert(1)</script>", 200),
        ("/?q=<script>alert(1)</script>&page=<script>", 200),
        ("/static/<script>alert(1)</script>.css", 404),
        ("/lang/<script>?next=<script>alert(1)</script>", 303),
    ],
)
def test_error_pages_do_not_echo_their_input(
    web_app: App, client: httpx.Client, path: str, status: int
) -> None:
    r = client.get(path, headers={"accept": "text/html"})
    assert r.status_code == status
    assert "<script>alert(1)" not in r.text
    assert "<script>" not in r.headers.get("location", "")


def test_api_errors_are_json_never_html(web_app: App, client: httpx.Client) -> None:
    r = client.get("/api/items/<script>alert(1)</script>", headers={"accept": "text/html"})
    assert r.status_code in (404, 422)
    assert r.headers["content-type"].startswith("application/json")
    r = client.get("/api/items", params={"limit": "<script>alert(1)</script>"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")


def test_the_login_page_escapes_what_was_typed(web_app: App, client: httpx.Client) -> None:
    page = client.get("/admin/login")
    r = client.post(
        "/admin/login",
        data={
            "username": '"><script>alert(1)</script>',
            "password": "x",
            "next": '"><script>alert(2)</script>',
            "csrf_token": csrf_of(page.text),
        },
    )
    assert r.status_code == 401
    assert "<script>alert(" not in r.text
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in r.text


def test_admin_error_pages_do_not_echo_input(web_app: App, admin: httpx.Client) -> None:
    r = admin.get("/admin/sources/<script>alert(1)</script>")
    assert r.status_code == 404 and "<script>alert(1)" not in r.text
    r = admin.get("/admin/rules/edit", params={"file": "<script>alert(1)</script>"})
    assert r.status_code == 404 and "<script>alert(1)" not in r.text


def test_pages_carry_the_security_headers(web_app: App, admin: httpx.Client) -> None:
    for url in ("/", "/admin/sources", "/nope"):
        r = admin.get(url, headers={"accept": "text/html"})
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
    assert admin.get("/admin/sources").headers["cache-control"] == "no-store"


def test_no_inline_scripts_or_styles_in_any_template() -> None:
    from watcher.web.render import TEMPLATES_DIR

    for tpl in Path(TEMPLATES_DIR).rglob("*.html"):
        text = tpl.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), tpl
        assert " style=" not in text and "<style" not in text, tpl
        assert not re.search(r"\son[a-z]+=", text), tpl
        assert not re.search(r"\|\s*safe\b(?!_)", text), tpl
        assert "autoescape false" not in text, tpl


def test_a_garbled_cookie_header_yields_no_session(web_app: App, client: httpx.Client) -> None:
    r = client.post(
        "/admin/sources/esf/delete",
        data={"csrf_token": "x"},
        headers={"cookie": 'watcher_admin="; x'},
    )
    assert r.status_code == 403
    assert "esf" in config_text(web_app)


# -- the origin of state-changing requests --------------------------------------------------

EVIL = "http://evil.example"


def test_every_admin_post_from_another_origin_is_refused_recorded_and_changes_nothing(
    web_app: App, server: LiveServer, admin: httpx.Client
) -> None:
    """A valid session and token are not enough: the request must come from this site's
    own pages (``Origin``, or ``Referer`` when there is no ``Origin``)."""
    token = csrf_of(admin.get("/admin").text)
    posts = [path for method, path in admin_routes(server) if method == "POST"]
    payload = {"csrf_token": token, "enabled": "0", "action": "save", "name": "Ändrad"}
    text_before, audits_before, items_before, held_before = snapshot(web_app)
    foreign = [
        {"origin": EVIL},
        {"origin": "null"},  # a sandboxed frame or a data: page
        {"origin": f"{server.url}.evil.example"},
        {"origin": server.url.replace("http:", "https:")},
        {"referer": f"{EVIL}/a/page?x=1"},
        {"origin": EVIL, "referer": f"{server.url}/admin/sources"},  # Origin decides
    ]
    for path in [*posts, "/admin/logout"]:
        for headers in foreign:
            r = admin.post(path, data=payload, headers=headers)
            assert r.status_code == 403, (path, headers)
    text_after, audits_after, items_after, held_after = snapshot(web_app)
    assert (text_after, items_after, held_after) == (text_before, items_before, held_before)
    refused = web_app.storage.audit_entries(1000)[: audits_after - audits_before]
    assert len(refused) == (len(posts) + 1) * len(foreign)
    assert {e["action"] for e in refused} == {"admin.origin_refused"}
    entry = next(e for e in refused if e["details"]["refused_by"] == "referer")
    assert entry["actor"] == "admin" and entry["target"].startswith("/admin/")
    assert entry["details"]["referer"] == EVIL  # the other site, not its page's path
    assert admin.get("/admin").status_code == 200  # still logged in: logout was refused too


def test_the_own_origin_and_base_url_are_accepted(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    # (An https base_url would make the cookie Secure, which this plain-http client would
    # not send back: the public origin here is http on another port.)
    app = make_app({**BASE_CONFIG, "watcher": {"base_url": "http://eu.example.se:8080/bevakning"}})
    with LiveServer(app) as live, httpx.Client(base_url=live.url) as c:
        assert login(c).status_code == 303
        for headers in (
            {"origin": live.url},
            {"origin": "http://eu.example.se:8080"},  # the public origin, behind a proxy
            {"origin": "HTTP://EU.EXAMPLE.SE:8080"},
            {"referer": f"{live.url}/admin/sources"},
            {},  # neither header: a script, not a browser (token and cookie still needed)
        ):
            token = csrf_of(c.get("/admin").text)
            data = {"csrf_token": token, "enabled": "0"}
            r = c.post("/admin/sources/esf/enabled", data=data, headers=headers)
            assert r.status_code == 303, headers
    assert [e["action"] for e in app.storage.audit_entries()].count("source.disable") == 5


def test_a_login_posted_from_another_origin_is_refused(web_app: App, client: httpx.Client) -> None:
    page = client.get("/admin/login")
    r = client.post(
        "/admin/login",
        data={"username": "admin", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        headers={"origin": EVIL},
    )
    assert r.status_code == 403
    assert client.get("/admin").status_code == 303
    [entry] = web_app.storage.audit_entries()
    assert (entry["actor"], entry["action"]) == ("?", "admin.origin_refused")


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://Example.se:80/x?y", "http://example.se"),
        ("https://example.se:443", "https://example.se"),
        ("https://example.se:8443/", "https://example.se:8443"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("null", None),
        ("", None),
        ("javascript:alert(1)", None),
        ("ftp://example.se", None),
        ("http://example.se:99999", None),
        ("//example.se", None),
    ],
)
def test_origin_of(url: str, origin: str | None) -> None:
    assert auth.origin_of(url) == origin
