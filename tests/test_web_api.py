"""The JSON API: /api/items (filters, pagination), /api/items/{id}, /api/sources, OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.web_builders import BASE_CONFIG, PASSWORD, LiveServer, login, raw, seed
from watcher.app import App
from watcher.exceptions import ConfigError, StorageError
from watcher.types import PollResult, PollStatus, SourceError
from watcher.web import api

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
# What a database or driver error says: for the admin, never for the public.
INTERNAL = (
    "(sqlite3.IntegrityError) UNIQUE constraint failed: items.uid [SQL: INSERT INTO items "
    "(uid, source_id) VALUES (?, ?)] (host 10.0.0.7)"
)


@pytest.fixture
def stocked(web_app: App) -> App:
    seed(
        web_app,
        "esf",
        [
            raw(
                f"c{i}",
                f"Utlysning om kompetensförsörjning {i}",
                summary="ESF+ arbetsmarknad",
                deadlines=(f"2026-12-{i + 1:02d}",),
                status="open",
                programme="ESF+",
            )
            for i in range(7)
        ]
        + [raw("x", "Samråd om sammanhållningspolitiken", summary="Have your say", status="open")],
    )
    return web_app


def test_items_are_paged_with_a_total_and_a_next_link(stocked: App, client: httpx.Client) -> None:
    r = client.get("/api/items", params={"q": "kompetensförsörjning", "limit": 3})
    assert r.status_code == 200
    body = r.json()
    assert (body["total"], body["limit"], body["offset"], len(body["items"])) == (7, 3, 0, 3)
    seen = [i["id"] for i in body["items"]]
    while body["next"]:
        body = client.get(body["next"]).json()
        seen += [i["id"] for i in body["items"]]
    assert len(seen) == len(set(seen)) == 7
    assert body["offset"] == 6


def test_the_total_is_counted_up_to_a_limit_past_the_page(
    stocked: App, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "COUNT_LIMIT", 1)
    body = client.get("/api/items", params={"q": "kompetensförsörjning", "limit": 3}).json()
    assert (body["total"], body["more"], len(body["items"])) == (4, True, 3)
    assert body["next"]
    last = client.get("/api/items", params={"q": "kompetensförsörjning", "offset": 6}).json()
    assert (last["total"], last["more"], last["next"]) == (7, False, None)


def test_item_fields_and_filters(stocked: App, client: httpx.Client) -> None:
    body = client.get(
        "/api/items",
        params={"theme": "arbetsmarknad", "sort": "deadline", "deadline_to": "2026-12-02"},
    ).json()
    assert [i["title"] for i in body["items"]] == [
        "Utlysning om kompetensförsörjning 0",
        "Utlysning om kompetensförsörjning 1",
    ]
    first = body["items"][0]
    assert first["status"] == "open" and first["programme"] == "ESF+"
    assert first["deadline"].startswith("2026-11-30T23:59") or first["deadline"].startswith(
        "2026-12-01"
    )
    assert "arbetsmarknad" in first["themes"]
    assert first["url"].endswith(f"/items/{first['id']}")
    assert first["sources"][0]["source"] == "esf"
    assert {t["tag"] for t in first["tags"]} >= {"arbetsmarknad"}
    assert all(t["rule"] for t in first["tags"])
    assert client.get("/api/items", params={"status": "closed"}).json()["total"] == 0
    assert client.get("/api/items", params={"source": "nyheter"}).json()["total"] == 0
    assert client.get("/api/items", params={"since": "2026-11-03"}).json()["total"] == 0


def test_one_item_with_history_and_not_found(stocked: App, client: httpx.Client) -> None:
    some = client.get("/api/items", params={"limit": 1}).json()["items"][0]
    r = client.get(f"/api/items/{some['id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["title"] == some["title"]
    assert [h["kind"] for h in body["history"]] == ["new"]
    assert body["tag_history"] and body["tag_history"][0]["added"]
    r = client.get("/api/items/999999")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1000}, {"offset": -1}, {"status": "nope"}, {"deadline_from": "soon"}],
    ids=["limit-0", "limit-big", "offset", "status", "date"],
)
def test_bad_parameters_are_422(stocked: App, client: httpx.Client, params: dict) -> None:
    r = client.get("/api/items", params=params)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/json")


def test_sources_with_health_and_credentials_redacted(
    make_app: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = {
        **BASE_CONFIG,
        "sources": [
            *BASE_CONFIG["sources"],
            {
                "id": "keyed",
                "name": "Keyed",
                "kind": "rss",
                "url": "https://user:pw@api.example/feed?api_key=S3CRET&lang=sv",
            },
        ],
    }
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    app = make_app(cfg)  # type: ignore[operator]
    seed(app, "esf", [raw("a", "Utlysning om arbetsmarknad")])
    error = SourceError("storage_error", INTERNAL)
    app.storage.record_failure(
        "nyheter",
        error,
        PollResult("nyheter", PollStatus.ERROR, error=error),
        T0,
        T0 + timedelta(hours=1),
    )
    with LiveServer(app) as live, httpx.Client(base_url=live.url) as c:
        r = c.get("/api/sources")
        body = r.json()
        # The admin still sees the message.
        assert login(c).status_code == 303
        assert "UNIQUE constraint failed: items.uid" in c.get("/admin/sources").text
    by_id = {s["id"]: s for s in body}
    assert by_id["esf"]["items"] == 1 and by_id["esf"]["items_30d"] == 1
    assert by_id["esf"]["last_success"].startswith("2026-11-02T08:00")
    assert by_id["nyheter"]["consecutive_failures"] == 1
    # The public answer has the code and the time, never the message behind them.
    assert by_id["nyheter"]["last_error"] == {"at": "2026-11-02T08:00:00Z", "code": "storage_error"}
    for marker in ("sqlite3", "UNIQUE", "INSERT", "items.uid", "10.0.0.7"):
        assert marker not in r.text, marker
    assert "S3CRET" not in by_id["keyed"]["url"] and "pw@" not in by_id["keyed"]["url"]
    assert "lang=sv" in by_id["keyed"]["url"]


def test_openapi_describes_the_api_and_not_the_pages(web_app: App, client: httpx.Client) -> None:
    spec = client.get("/api/openapi.json").json()
    assert {"/api/items", "/api/items/{item_id}", "/api/sources"} <= set(spec["paths"])
    assert not any(p.startswith("/admin") or p == "/" for p in spec["paths"])
    schemas = spec["components"]["schemas"]
    assert {"ItemPage", "ItemOut", "ItemDetail", "SourceOut"} <= set(schemas)
    params = {p["name"] for p in spec["paths"]["/api/items"]["get"]["parameters"]}
    assert {"q", "area", "theme", "source", "programme", "status", "limit", "offset"} <= params


def test_healthz_gives_states_and_codes_never_error_text(
    web_app: App, admin: httpx.Client, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["config"] == "ok"
    # config.toml broken by hand: the last good config stays in force; the problem, which
    # quotes the file, is for the admin.
    web_app.config_error = ConfigError(
        "sources[0].url: 'postgresql://eu:hemligt@10.0.0.7/db' is not an http(s) URL",
        source="/etc/watcher/config.toml",
    )
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["config"] == "error"
    for marker in ("hemligt", "10.0.0.7", "/etc/watcher", "sources[0]"):
        assert marker not in r.text, marker
    assert "10.0.0.7" in admin.get("/admin").text  # the admin's pages say what is wrong
    # The database gone: the state and the error's code, not the driver's text.

    def gone() -> bool:
        raise StorageError(f"database error in ping: OperationalError: {INTERNAL}", "db_busy")

    monkeypatch.setattr(web_app.storage, "ping", gone)
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json() == {"status": "error", "database": "error", "code": "db_busy"}


def test_an_unknown_filter_value_is_a_400_not_an_empty_list(
    stocked: App, client: httpx.Client
) -> None:
    """Issue 15.8: ``/api/items?area=unknown`` answered 200 with nothing in it."""
    for query in ("area=unknown", "theme=nope", "kind=rumour", "source=elsewhere"):
        r = client.get(f"/api/items?{query}")
        assert r.status_code == 400, query
        assert "unknown" in r.json()["detail"]
    assert client.get("/api/items?area=kompetens").status_code == 200
