"""Read paths never write: every GET of the public web, the feeds, the JSON API and the
admin (a logged-in admin's, digest preview included) leaves the database byte for byte as
it was, and so does a first visit to a freshly started service.

The routes are taken from the routers themselves, so a new GET route is checked too: it
only needs its example URL in ``EXAMPLES`` (the test fails until it has one)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute

from notifications.delivery import run_digests
from notifications.unsubscribe import Unsubscriber
from tests.web_builders import BASE_CONFIG, PASSWORD, LiveServer, login, raw, seed
from watcher.app import App
from watcher.editing import RulesWorkspace
from watcher.web import admin, api, feeds, health, public, subscribe

# Example URLs of each GET route with parameters in its path ({item} is every stored item).
EXAMPLES: dict[str, list[str]] = {
    "/items/{item_id}": ["/items/{item}", "/items/999999"],
    "/admin/items/{item_id}": ["/admin/items/{item}", "/admin/items/999999"],
    "/lang/{code}": ["/lang/en?next=/deadlines"],
    "/feeds/{name}": ["/feeds/all.xml", "/feeds/all.atom"],
    "/feeds/{kind}/{name}": [
        "/feeds/area/fonder-program.xml",
        "/feeds/theme/arbetsmarknad.atom",
        "/feeds/network/gr-eu.xml",
    ],
    "/calendar/{name}": ["/calendar/all.ics"],
    "/calendar/{kind}/{name}": ["/calendar/network/gr-eu.ics", "/calendar/area/partners.ics"],
    "/unsubscribe/{token}": ["/unsubscribe/{token}", "/unsubscribe/forged"],
    "/prenumerera/bekrafta/{token}": ["/prenumerera/bekrafta/1.abcdefghijklmnopqrstuvwx"],
    "/prenumerera/installningar/{token}": ["/prenumerera/installningar/{token}"],
    "/api/items/{item_id}": ["/api/items/{item}"],
    "/admin/sources/{source_id}": ["/admin/sources/esf", "/admin/sources/esf?kind=html"],
    "/admin/sources/{source_id}/delete": ["/admin/sources/nyheter/delete"],
    "/admin/networks/{network_id}": ["/admin/networks/gr-eu"],
    "/admin/networks/{network_id}/delete": ["/admin/networks/gr-eu/delete"],
    "/admin/networks/{network_id}/digest": ["/admin/networks/gr-eu/digest"],
    "/admin/networks/{network_id}/digest.html": ["/admin/networks/gr-eu/digest.html"],
}
# More of the pages without path parameters: with filters, in English, other forms.
VARIANTS = [
    "/?q=utlysning&sort=deadline",
    "/?status=closed&all=1&lang=en",
    "/deadlines?weeks=52&theme=utbildning",
    "/api/items?status=open&sort=deadline",
    "/api/items?since=2026-01-01&include_irrelevant=true",
    "/admin/sources/new?kind=rss",
    "/admin/deliveries?status=sent&network=gr-eu",
    "/admin/events?kind=source_failing",
    "/admin/rules/default?name=areas.toml",
    "/admin/rules/edit?file={rule_file}",
    "/static/style.css",
]


def dump(app: App) -> list[str]:
    """The whole database (schema and every row of every table) as SQL text."""
    url = app.storage.engine.url
    assert url.get_backend_name() == "sqlite" and url.database
    with closing(sqlite3.connect(url.database)) as conn:
        return list(conn.iterdump())


def get_routes() -> Iterator[str]:
    """The path of every GET route of the web application's routers."""
    routers: list[tuple[str, APIRouter]] = [
        ("", public.router),
        ("", api.router),
        ("", feeds.router),
        ("", health.router),
        ("", subscribe.router),
        *((admin.PREFIX, r) for r in admin.routers()),
    ]
    for prefix, router in routers:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if "GET" in route.methods:
                yield prefix + route.path


def urls(app: App) -> list[str]:
    """Every GET route as concrete URLs (``EXAMPLES`` for those with path parameters)."""
    values = {
        "token": Unsubscriber.for_app(app).token("gr-eu", "anna@example.se"),
        "rule_file": str(RulesWorkspace(app, "test").targets()[0]),
    }
    ids = [str(i) for i in app.storage.all_item_ids()]
    out: list[str] = []
    for path in [*get_routes(), *VARIANTS]:
        if "{" in path and path not in VARIANTS:
            assert path in EXAMPLES, f"GET {path}: add example URLs to EXAMPLES"
            templates = EXAMPLES[path]
        else:
            templates = [path]
        for t in templates:
            if "{item}" in t:
                out.extend(t.replace("{item}", i) for i in ids)
            else:
                out.append(t.format(**values) if "{" in t else t)
    return out


@pytest.fixture
def lived_in(web_app: App, clock: Any) -> App:
    """A service with history: items from two sources (one call's deadline passes while its
    stored status still says open), a digest sent, then more items, and time moved on."""
    seed(
        web_app,
        "esf",
        [
            raw(
                "k1",
                "Utlysning: kompetensförsörjning i Västsverige",
                summary="ESF+ stöd för arbetsmarknad och kompetens.",
                deadlines=("2026-11-03",),
                status="open",
                programme="ESF+",
            ),
            raw(
                "k2",
                "Erasmus+ call for proposals: school education",
                deadlines=("2026-12-01", "2027-02-11"),
                status="forthcoming",
            ),
        ],
    )
    run_digests(web_app, ["gr-eu"])  # written to the outbox, recorded as sent
    clock.advance(days=2)  # k1's deadline has passed: its stored status is stale
    seed(
        web_app,
        "nyheter",
        [raw("n1", "Partnersökning: robotar i äldreomsorgen", summary="Partner sökes.")],
    )
    clock.advance(hours=3)
    return web_app


def test_no_get_writes_to_the_database(lived_in: App, server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=20) as client:
        assert login(client).status_code == 303  # a login is recorded: before the snapshot
        before = dump(lived_in)
        assert any('INSERT INTO "digests"' in line for line in before)
        checked = urls(lived_in)
        for url in checked:
            r = client.get(url)
            assert r.status_code < 500, (url, r.status_code)
            assert r.status_code != 303 or not r.headers["location"].startswith("/admin/login")
        assert dump(lived_in) == before
    paths = {u.split("?")[0] for u in checked}
    assert {"/admin/networks/gr-eu/digest", "/admin/networks/gr-eu/digest.html"} <= paths
    assert len(checked) > 40


def test_a_first_visit_to_a_new_service_writes_nothing(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys kept in the database (the admin's session key, the unsubscribe links' key) are
    made when the service starts, not by the first visitor."""
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("WATCHER_SECRET_KEY", raising=False)
    app = make_app(BASE_CONFIG)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=20) as client:
        before = dump(app)
        assert client.get("/admin/login").status_code == 200
        assert client.get("/admin").status_code == 303
        assert client.get("/unsubscribe/forged").status_code == 400
        assert client.get("/").status_code == 200
        assert dump(app) == before


def test_a_digest_preview_records_nothing(lived_in: App, admin: httpx.Client) -> None:
    """The preview shows what would go out now; the next real digest still has it all."""
    before = dump(lived_in)
    page = admin.get("/admin/networks/gr-eu/digest")
    assert page.status_code == 200 and "robotar i äldreomsorgen" in page.text
    assert dump(lived_in) == before
    [outcome] = run_digests(lived_in, ["gr-eu"])
    assert outcome.new >= 1 and outcome.sent == 1
