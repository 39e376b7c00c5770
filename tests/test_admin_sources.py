"""Admin sources: health list, per-kind forms with field errors, test fetch, save, edit,
switch off, delete, poll now, stale versions, the audit log."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fetch_settings
from tests.loopback import LoopbackServer
from tests.web_builders import (
    BASE_CONFIG,
    PASSWORD,
    LiveServer,
    config_text,
    csrf_of,
    full_disk_for,
    login,
    post_form,
    raw,
    seed,
    version_of,
)
from watcher.app import App
from watcher.types import PollResult, PollStatus, SourceError

LISTING = """<html><body><ul>
<li class="call"><h3><a href="/c/1">Utlysning: kompetensförsörjning 2027</a></h3>
  <p>Sista ansökningsdag: 16 mars 2027</p></li>
<li class="call"><h3><a href="/c/2">Utlysning om &lt;b&gt;hållbar&lt;/b&gt; stadsutveckling</a></h3>
  <p>Sista ansökningsdag: 1 april 2027</p></li>
</ul></body></html>"""


@pytest.fixture
def farm_app(make_app: Any, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    loopback.add("/listing", LISTING, content_type="text/html; charset=utf-8")
    app = make_app({**BASE_CONFIG, "fetch": fetch_settings(loopback)})
    return app  # type: ignore[no-any-return]


@pytest.fixture
def admin(farm_app: App) -> Iterator[httpx.Client]:
    with LiveServer(farm_app) as live, httpx.Client(base_url=live.url, timeout=20) as c:
        assert login(c).status_code == 303
        yield c


def new_html_source(loopback: LoopbackServer, **over: str) -> dict[str, str]:
    form = {
        "kind": "html",
        "id": "lokal",
        "name": "Lokal sida",
        "url": loopback.url("/listing"),
        "schedule": "6h",
        "enabled": "1",
        "areas": "fonder-program",
        "opt.item": "li.call",
        "opt.title": "h3",
        "opt.max_items": "200",
        "opt.kind": "call",
    }
    form.update(over)
    return form


def field_errors(html: str, name: str) -> list[str]:
    fid = "f-" + name.replace(".", "-")
    return re.findall(rf'<p class="error-message" id="e-{re.escape(fid)}">(.*?)</p>', html, re.S)


def test_test_fetch_previews_parsed_items_and_saves_nothing(
    farm_app: App, admin: httpx.Client, loopback: LoopbackServer
) -> None:
    before = config_text(farm_app)
    r = post_form(
        admin,
        "/admin/sources/new?kind=html",
        "/admin/sources/new",
        {**new_html_source(loopback), "action": "test"},
    )
    assert r.status_code == 200, r.text[-2000:]
    assert "2 poster hittades." in r.text
    assert "Utlysning: kompetensförsörjning 2027" in r.text
    assert "16 mars 2027" in r.text
    assert "Utlysning om hållbar stadsutveckling" in r.text  # markup in a title is text
    assert "<b>hållbar" not in r.text
    assert config_text(farm_app) == before
    assert farm_app.storage.count_items() == 0
    assert [e["action"] for e in farm_app.storage.audit_entries()] == ["admin.login"]


def test_saving_a_new_source_writes_config_and_takes_effect(
    farm_app: App, admin: httpx.Client, loopback: LoopbackServer
) -> None:
    before = config_text(farm_app)
    r = post_form(
        admin,
        "/admin/sources/new?kind=html",
        "/admin/sources/new",
        {**new_html_source(loopback), "action": "save"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/sources"
    text = config_text(farm_app)
    assert text.startswith(before.rstrip("\n")[:200])
    data = tomllib.loads(text)
    saved = data["sources"][-1]
    assert saved == {
        "id": "lokal",
        "name": "Lokal sida",
        "kind": "html",
        "url": loopback.url("/listing"),
        "schedule": "6h",
        "areas": ["fonder-program"],
        # Only what differs from the adapter's defaults (and the required item).
        "options": {"item": "li.call", "title": "h3", "kind": "call"},
    }
    # In force without a restart, and on the list with its flash message.
    assert farm_app.config.source("lokal").options["item"] == "li.call"
    listing = admin.get("/admin/sources")
    assert 'id="source-lokal"' in listing.text and "Källan Lokal sida sparades." in listing.text
    entry = farm_app.storage.audit_entries()[0]
    assert (entry["actor"], entry["action"], entry["target"]) == ("admin", "source.add", "lokal")
    assert entry["details"]["changes"]["options.item"] == {"old": None, "new": "li.call"}


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ({"opt.item": "li[[["}, "opt.item", "ogiltig CSS-väljare"),
        ({"opt.item": ""}, "opt.item", "Obligatoriskt fält"),
        ({"url": "ftp://example.org/list"}, "url", "är inte en http(s)-adress"),
        ({"url": "javascript:alert(1)"}, "url", "är inte en http(s)-adress"),
        ({"schedule": "sometimes"}, "schedule", "är varken ett intervall"),
        ({"schedule": "0 99 * * *"}, "schedule", "ogiltigt cron-uttryck"),
        ({"opt.max_items": "many"}, "opt.max_items", "Ange ett heltal"),
        ({"opt.deadline_regex": "(unclosed"}, "opt.deadline_regex", "ogiltigt reguljärt uttryck"),
        ({"id": "Inte OK!"}, "id", "använd gemener"),
        ({"id": "esf"}, "id", "Det finns redan en källa med id esf"),
        ({"name": ""}, "name", "Ange ett namn"),
    ],
    ids=[
        "bad-selector",
        "missing-item",
        "ftp-url",
        "js-url",
        "schedule",
        "cron",
        "int",
        "regex",
        "id-format",
        "id-taken",
        "name",
    ],
)
def test_a_bad_value_gets_an_error_on_its_field_and_nothing_is_saved(
    farm_app: App,
    admin: httpx.Client,
    loopback: LoopbackServer,
    override: dict[str, str],
    field: str,
    message: str,
) -> None:
    before = config_text(farm_app)
    r = post_form(
        admin,
        "/admin/sources/new?kind=html",
        "/admin/sources/new",
        {**new_html_source(loopback, **override), "action": "save"},
    )
    assert r.status_code == 422
    errors = field_errors(r.text, field)
    assert errors and message in " ".join(errors), (
        field,
        re.findall(r"error-message[^>]*>(.*?)<", r.text),
    )
    assert 'aria-invalid="true"' in r.text
    assert f'href="#f-{field.replace(".", "-")}"' in r.text  # the summary links to the field
    assert config_text(farm_app) == before
    # What the admin typed is still in the form.
    assert f'value="{override.get("name", "Lokal sida")}"' in r.text
    # The refused save is in the audit log, with the problem under its key.
    refused = farm_app.storage.audit_entries()[0]
    assert (refused["actor"], refused["action"]) == ("admin", "source.add_refused")
    assert refused["details"]["reason"] == "invalid"
    key = field.replace("opt.", "options.")
    paths = [p["path"] for p in refused["details"]["problems"]]
    assert any(p == key or p.endswith("." + key) for p in paths), paths


def test_a_test_fetch_with_problems_records_nothing(
    farm_app: App, admin: httpx.Client, loopback: LoopbackServer
) -> None:
    """Only a save is refused: a test fetch is a check."""
    before = len(farm_app.storage.audit_entries())
    r = post_form(
        admin,
        "/admin/sources/new?kind=html",
        "/admin/sources/new",
        {**new_html_source(loopback, **{"opt.item": "li[[["}), "action": "test"},
    )
    assert r.status_code == 422
    assert len(farm_app.storage.audit_entries()) == before


def test_editing_a_source_keeps_comments_and_records_what_changed(
    farm_app: App, admin: httpx.Client
) -> None:
    path = Path(farm_app.config.path)  # type: ignore[arg-type]
    path.write_text(
        "# Handskriven kommentar\n" + path.read_text(encoding="utf-8"), encoding="utf-8"
    )
    form = {
        "kind": "html",
        "name": "Nyheter (nya namnet)",
        "url": "https://news.example/",
        "schedule": "12h",
        "enabled": "1",
        "opt.item": "article.news",
        "opt.title": "h1, h2, h3, h4, a",
        "opt.max_items": "200",
        "opt.kind": "news",
        "action": "save",
    }
    r = post_form(admin, "/admin/sources/nyheter", "/admin/sources/nyheter", form)
    assert r.status_code == 303, r.text[-1500:]
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Handskriven kommentar\n")
    src = farm_app.config.source("nyheter")
    assert (src.name, src.schedule, src.options) == (
        "Nyheter (nya namnet)",
        "12h",
        {"item": "article.news"},
    )
    changes = farm_app.storage.audit_entries()[0]["details"]["changes"]
    assert changes["name"] == {"old": "Nyheter", "new": "Nyheter (nya namnet)"}
    assert changes["options.item"] == {"old": "li.news", "new": "article.news"}
    assert "url" not in changes


def test_a_save_based_on_a_stale_version_is_refused_and_the_input_kept(
    farm_app: App, admin: httpx.Client
) -> None:
    page = admin.get("/admin/sources/nyheter")
    path = Path(farm_app.config.path)  # type: ignore[arg-type]
    # Someone else edits config.toml meanwhile.
    other = path.read_text(encoding="utf-8").replace(
        'name = "Nyheter"', 'name = "Nyheter (ändrad)"'
    )
    path.write_text(other, encoding="utf-8")
    r = admin.post(
        "/admin/sources/nyheter",
        data={
            "csrf_token": csrf_of(page.text),
            "version": version_of(page.text),
            "kind": "html",
            "name": "Mitt namn",
            "url": "https://news.example/",
            "schedule": "6h",
            "enabled": "1",
            "opt.item": "li.news",
            "opt.title": "h1, h2, h3, h4, a",
            "opt.max_items": "200",
            "opt.kind": "news",
            "action": "save",
        },
    )
    assert r.status_code == 409
    assert "config.toml har ändrats sedan du öppnade formuläret" in r.text
    assert 'value="Mitt namn"' in r.text  # nothing the admin typed is lost
    assert "Nyheter (ändrad)" in r.text  # what is saved now is shown beside it
    assert path.read_text(encoding="utf-8") == other
    refused = farm_app.storage.audit_entries()[0]
    assert (refused["action"], refused["target"]) == ("source.edit_refused", "nyheter")
    assert refused["details"]["reason"] == "conflict"
    assert refused["details"]["changes"]["name"] == {"old": "Nyheter (ändrad)", "new": "Mitt namn"}
    audit_page = admin.get("/admin/audit").text
    assert "source.edit_refused" in audit_page
    assert "Avvisad: filen hade ändrats sedan formuläret öppnades" in audit_page
    # The form now carries the new version: a deliberate second save goes through.
    r2 = admin.post(
        "/admin/sources/nyheter",
        data={
            "csrf_token": csrf_of(r.text),
            "version": version_of(r.text),
            "kind": "html",
            "name": "Mitt namn",
            "url": "https://news.example/",
            "schedule": "6h",
            "enabled": "1",
            "opt.item": "li.news",
            "opt.title": "h1, h2, h3, h4, a",
            "opt.max_items": "200",
            "opt.kind": "news",
            "action": "save",
        },
    )
    assert r2.status_code == 303
    assert farm_app.config.source("nyheter").name == "Mitt namn"


def test_switching_off_and_on_and_deleting(farm_app: App, admin: httpx.Client) -> None:
    seed(farm_app, "nyheter", [raw("n1", "Nyhet")])
    token = csrf_of(admin.get("/admin/sources").text)
    r = admin.post("/admin/sources/nyheter/enabled", data={"csrf_token": token, "enabled": "0"})
    assert r.status_code == 303
    assert farm_app.config.source("nyheter").enabled is False
    assert "enabled = false" in config_text(farm_app)
    r = admin.post("/admin/sources/nyheter/enabled", data={"csrf_token": token, "enabled": "1"})
    assert farm_app.config.source("nyheter").enabled is True
    assert "enabled" not in config_text(farm_app)

    confirm = admin.get("/admin/sources/nyheter/delete")
    assert "Dess 1 poster finns kvar" in confirm.text
    r = admin.post("/admin/sources/nyheter/delete", data={"csrf_token": csrf_of(confirm.text)})
    assert r.status_code == 303
    assert [s.id for s in farm_app.config.sources] == ["esf"]
    assert 'id = "nyheter"' not in config_text(farm_app)
    assert farm_app.storage.count_items() == 1  # items are kept
    actions = [e["action"] for e in farm_app.storage.audit_entries()]
    assert actions[:3] == ["source.delete", "source.enable", "source.disable"]
    assert admin.get("/admin/sources/nyheter").status_code == 404


def test_poll_now_polls_one_source_and_says_how_it_went(
    farm_app: App, admin: httpx.Client, loopback: LoopbackServer
) -> None:
    post_form(
        admin,
        "/admin/sources/new?kind=html",
        "/admin/sources/new",
        {**new_html_source(loopback), "action": "save"},
    )
    token = csrf_of(admin.get("/admin/sources").text)
    r = admin.post("/admin/sources/lokal/poll", data={"csrf_token": token})
    assert r.status_code == 303
    assert farm_app.storage.count_items() == 2
    listing = admin.get("/admin/sources").text
    assert "lokal: 2 nya, 0 uppdaterade, 0 oförändrade." in listing
    # Its first poll: both are calls still open, announced to the next digests.
    assert "lokal: första hämtningen. 2 öppna eller kommande utlysningar" in listing
    assert "0 poster sparades tyst som utgångsläge" in listing
    assert '<rect class="bar-new"' in listing
    # A failing source: the error is shown.
    r = admin.post("/admin/sources/esf/poll", data={"csrf_token": token})
    listing = admin.get("/admin/sources").text
    assert "Hämtningen av esf misslyckades" in listing
    assert farm_app.storage.audit_entries()[0]["action"] == "source.poll"


def test_the_health_list_shows_failures_warnings_counts_and_held_items(
    farm_app: App, admin: httpx.Client, clock: Any
) -> None:
    seed(farm_app, "esf", [raw("a", "Utlysning A"), raw("b", "Utlysning B")])
    farm_app.storage.set_source_warning("esf", "the item selector matched nothing: layout change?")
    for _ in range(3):
        clock.advance(hours=1)
        err = SourceError("http_503", "Service Unavailable")
        farm_app.storage.record_failure(
            "nyheter",
            err,
            PollResult("nyheter", PollStatus.ERROR, error=err),
            clock(),
            clock() + timedelta(hours=1),
        )
    html = admin.get("/admin/sources").text
    row_esf = html.split('id="source-esf"')[1].split("</tr>")[0]
    row_news = html.split('id="source-nyheter"')[1].split("</tr>")[0]
    assert "layout change?" in row_esf
    assert re.search(r'<td class="num">2</td>', row_esf)  # items in the last 30 days
    assert "HTTP-fel 503" in row_news and '<td class="num">3</td>' in row_news
    assert row_news.count('class="bar-error"') == 3
    assert 'role="img" aria-label="Senaste 3 hämtningarna: 0 lyckade, 3 misslyckade"' in row_news


def test_the_source_table_searches_filters_by_health_and_sorts(
    farm_app: App, admin: httpx.Client, clock: Any
) -> None:
    """Issue 15.3: with many sources the table is long; the admin finds the one in trouble
    by a search, a health filter and an order."""
    farm_app.storage.set_source_warning("esf", "layout changed? items no longer have links")
    err = SourceError("http_503", "Service Unavailable")
    farm_app.storage.record_failure(
        "nyheter", err, PollResult("nyheter", PollStatus.ERROR, error=err), clock(), None
    )

    def shown(**params: str) -> list[str]:
        html = admin.get("/admin/sources", params=params).text
        return re.findall(r'<tr id="source-([^"]+)"', html)

    assert shown() == ["esf", "nyheter"]  # by name: "ESF-rådet", "Nyheter"
    assert shown(q="nyhet") == ["nyheter"]
    assert shown(q="esf.example") == ["esf"]  # the address is searched too
    assert shown(health="failing") == ["nyheter"]
    assert shown(health="warning") == ["esf"]
    assert shown(health="never") == ["esf"]
    assert shown(sort="failures") == ["nyheter", "esf"]
    assert shown(health="bogus") == ["esf", "nyheter"]  # an unknown filter shows all
    page = admin.get("/admin/sources", params={"health": "failing"}).text
    assert "1 av 2 källor" in page and 'href="/admin/sources">visa alla' in page


def test_held_items_can_be_released(farm_app: App, admin: httpx.Client) -> None:
    from tests.web_builders import item, store

    ids = store(farm_app, "esf", [item("h1", "Flod 1"), item("h2", "Flod 2")])
    with farm_app.storage.engine.begin() as conn:
        from sqlalchemy import update

        from watcher.storage.schema import items as items_table

        conn.execute(update(items_table).where(items_table.c.id.in_(ids)).values(held=True))
    html = admin.get("/admin/sources").text
    assert "2 poster hålls kvar" in html
    r = admin.post(
        "/admin/sources/esf/held", data={"csrf_token": csrf_of(html), "action": "release"}
    )
    assert r.status_code == 303
    assert farm_app.storage.held_counts() == {}
    assert farm_app.storage.audit_entries()[0]["details"] == {"items": 2}


def test_changing_the_kind_shows_that_kinds_options(farm_app: App, admin: httpx.Client) -> None:
    page = admin.get("/admin/sources/new", params={"kind": "ical"}).text
    assert 'name="opt.dtend_is_deadline"' in page and 'name="opt.item"' not in page
    assert 'name="opt.programmes"' in page  # a mapping: one "key = value" a line
    page = admin.get("/admin/sources/esf", params={"kind": "html"}).text
    assert 'name="opt.item"' in page


def test_secrets_in_a_source_url_are_redacted_in_the_audit_log(
    farm_app: App, admin: httpx.Client
) -> None:
    form = {
        "kind": "rss",
        "id": "nyckel",
        "name": "Med nyckel",
        "url": "https://api.example/feed?api_key=TOPSECRET&lang=sv",
        "schedule": "6h",
        "enabled": "1",
        "opt.max_items": "200",
        "opt.kind": "news",
        "opt.use_guid": "1",
        "action": "save",
    }
    r = post_form(admin, "/admin/sources/new?kind=rss", "/admin/sources/new", form)
    assert r.status_code == 303, r.text[-1500:]
    details = farm_app.storage.audit_entries()[0]["details"]
    assert "TOPSECRET" not in str(details)
    assert "lang=sv" in details["changes"]["url"]["new"]
    assert "TOPSECRET" not in admin.get("/admin/audit").text


def test_a_sources_new_default_tags_reach_the_classifier_at_once(
    farm_app: App, admin: httpx.Client
) -> None:
    [item_id] = seed(farm_app, "nyheter", [raw("n1", "Nyhet utan särskilda ord")])
    stored = farm_app.storage.get_item(item_id)
    assert stored is not None
    assert "paverkan" not in farm_app.classifier(stored, None).ids("area")
    form = {
        "kind": "html",
        "name": "Nyheter",
        "url": "https://news.example/",
        "schedule": "6h",
        "enabled": "1",
        "areas": "paverkan",
        "opt.item": "li.news",
        "action": "save",
    }
    r = post_form(admin, "/admin/sources/nyheter", "/admin/sources/nyheter", form)
    assert r.status_code == 303
    assert "paverkan" in farm_app.classifier(stored, None).ids("area")


def test_problems_are_in_english_when_the_interface_is(
    farm_app: App, admin: httpx.Client, loopback: LoopbackServer
) -> None:
    admin.cookies.set("lang", "en")
    r = post_form(
        admin,
        "/admin/sources/new?kind=html",
        "/admin/sources/new",
        {**new_html_source(loopback, schedule="sometimes"), "action": "save"},
    )
    assert r.status_code == 422
    assert "neither an interval" in " ".join(field_errors(r.text, "schedule"))


def test_a_failed_write_is_shown_on_the_form_with_the_file_unchanged(
    farm_app: App, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(farm_app.config.path)  # type: ignore[arg-type]
    before = path.read_bytes()
    real_replace = os.replace
    full_disk_for(monkeypatch, path)
    form = {
        "kind": "html",
        "name": "Mitt nya namn",
        "url": "https://news.example/",
        "schedule": "6h",
        "enabled": "1",
        "opt.item": "li.news",
        "opt.title": "h1, h2, h3, h4, a",
        "opt.max_items": "200",
        "opt.kind": "news",
        "action": "save",
    }
    r = post_form(admin, "/admin/sources/nyheter", "/admin/sources/nyheter", form)
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("text/html")
    assert "config.toml kunde inte skrivas (No space left on device)" in r.text
    assert "filen är oförändrad" in r.text
    assert 'value="Mitt nya namn"' in r.text  # what the admin typed is kept
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert farm_app.config.source("nyheter").name == "Nyheter"
    refused = farm_app.storage.audit_entries()[0]
    assert (refused["action"], refused["details"]["reason"]) == (
        "source.edit_refused",
        "write_failed",
    )
    # Once the disk has room, the same form saves.
    monkeypatch.setattr(os, "replace", real_replace)
    fields = {"csrf_token": csrf_of(r.text), "version": version_of(r.text)}
    r = admin.post("/admin/sources/nyheter", data={**fields, **form})
    assert r.status_code == 303
    assert farm_app.config.source("nyheter").name == "Mitt nya namn"


def test_a_failed_write_of_a_switch_or_delete_says_so(
    farm_app: App, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(farm_app.config.path)  # type: ignore[arg-type]
    before = path.read_bytes()
    full_disk_for(monkeypatch, path)
    token = csrf_of(admin.get("/admin/sources").text)
    r = admin.post("/admin/sources/nyheter/enabled", data={"csrf_token": token, "enabled": "0"})
    assert r.status_code == 303
    r = admin.post("/admin/sources/nyheter/delete", data={"csrf_token": token})
    assert r.status_code == 303
    page = admin.get("/admin/sources").text
    assert page.count("No space left on device") == 2
    assert path.read_bytes() == before


def test_temp_files_left_by_a_killed_save_are_removed_at_start(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    app = make_app(BASE_CONFIG)
    path = Path(app.config.path)
    before = path.read_bytes()
    stale = path.parent / ".config.toml.k8d2fa1q.tmp"
    stale.write_bytes(before[: len(before) // 2])  # killed mid-write
    unrelated = path.parent / ".notes.txt.k8d2fa1q.tmp"
    unrelated.write_text("not ours", encoding="utf-8")
    with LiveServer(app):
        assert not stale.exists()
        assert unrelated.exists()
        assert path.read_bytes() == before
