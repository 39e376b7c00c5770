"""`watcher demo`: the sample data seeded through the real pipeline holds every kind of item
the product shows, and the demo as a real process serves every surface, admits the printed
admin password, and leaves nothing behind when it stops."""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notifications.wording import sentences
from tests.conftest import T0, Clock
from tests.process_builders import WAIT, WatcherProcess, free_port
from watcher import calls, demo
from watcher.app import App
from watcher.config import AREAS, THEMES
from watcher.types import Kind, StoredItem
from watcher.web.auth import hash_password


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[App]:
    data = demo.config_data(
        tmp_path,
        "http://127.0.0.1:9",
        "127.0.0.1:9",
        "http://127.0.0.1:8000",
        hash_password("x" * 16),
    )
    app = App.from_path(demo.write_config(tmp_path / "config.toml", data), clock=Clock())
    app.storage.ensure_schema()
    demo.seed(app)
    try:
        yield app
    finally:
        app.close()


def by_title(app: App, fragment: str) -> StoredItem:
    [found] = [it for it in app.storage.list_items() if fragment in it.title]
    return found


def test_seed_stores_every_kind_of_item(seeded: App) -> None:
    items = seeded.storage.list_items()
    now = T0
    kinds = {it.kind for it in items}
    assert {
        Kind.CALL,
        Kind.FORTHCOMING_CALL,
        Kind.CONSULTATION,
        Kind.NEWS,
        Kind.EVENT,
        Kind.PARTNER_SEARCH,
    } <= kinds
    statuses = {(it.kind, calls.status(it, now)) for it in items}
    assert {("call", "open"), ("call", "closed"), ("forthcoming_call", "forthcoming")} <= statuses
    assert {("consultation", "open"), ("consultation", "closed")} <= statuses
    two_stage = [it for it in items if it.kind == Kind.CALL and len(it.deadlines) == 2]
    assert len(two_stage) >= 2
    assert all(min(it.deadlines) > now for it in two_stage)
    # Dates are relative to now: open calls with deadlines ahead whenever the demo runs.
    assert any(it.kind == Kind.CALL and calls.next_deadline(it, now) > now for it in items)  # type: ignore[operator]


def test_tags_come_from_the_rules_across_every_area_and_theme(seeded: App) -> None:
    items = seeded.storage.list_items()
    areas = {t.tag for it in items for t in it.tags if t.kind == "area"}
    themes = {t.tag for it in items for t in it.tags if t.kind == "theme"}
    assert areas == set(AREAS)
    assert themes == set(THEMES)
    tags = [t for it in items for t in it.tags]
    assert all(t.rule_id for t in tags)  # every tag says which rule gave it
    rule_tags = [t for t in tags if not t.rule_id.startswith("source-default:")]
    assert {t.tag for t in rule_tags if t.kind == "area"} == set(AREAS)
    assert all(t.evidence for t in rule_tags)
    consultation = by_title(seeded, "Cohesion policy after 2027")
    assert ("paverkan", "paverkan-consultation") in {(t.tag, t.rule_id) for t in consultation.tags}


def test_a_call_seen_by_two_sources_is_one_item_with_both_links(seeded: App) -> None:
    life = by_title(seeded, "LIFE Clean Energy Transition")
    links = {s.source_id: s.link for s in life.sources}
    assert set(links) == {"ft-portal", "goteborg-bryssel"}
    assert "funding-tenders" in links["ft-portal"]
    assert "brysselkontoret" in links["goteborg-bryssel"]
    assert not [it for it in seeded.storage.list_items() if it.title.startswith("LIFE-")]


def test_a_moved_deadline_is_in_the_history(seeded: App) -> None:
    call = by_title(seeded, "Hållbar stadsutveckling i Västsverige")
    said = [
        line
        for change in seeded.storage.item_history(call.id)
        for line in sentences(change.changes, "sv", seeded.config.tz)
    ]
    assert any(line.startswith("Sista ansökningsdag flyttad:") for line in said), said


def test_networks_have_members_and_digests_were_written_to_files(
    seeded: App, tmp_path: Path
) -> None:
    assert len(seeded.config.networks) >= 2
    assert all(n.members for n in seeded.config.networks)
    assert seeded.config.email.backend == "file"
    assert list((tmp_path / "outbox").glob("*.eml"))


def test_source_health_has_polls_a_failure_and_a_layout_warning(seeded: App) -> None:
    states = seeded.storage.source_states()
    assert set(states) == {s.id for s in demo.SOURCES}
    for s in demo.SOURCES:
        assert len(seeded.storage.poll_history(s.id)) >= 3, s.id
    broken = states["goteborg-bryssel"]
    assert broken.last_error_code == "http_500" and broken.consecutive_failures == 3
    assert broken.warning and "layout changed" in broken.warning
    assert not [
        sid for sid, st in states.items() if st.consecutive_failures and sid != "goteborg-bryssel"
    ]


def test_the_sample_feeds_answer_the_seeded_etag_with_not_modified() -> None:
    with demo.SampleFeeds() as feeds:
        feeds.publish(T0)
        esf = next(s for s in demo.SOURCES if s.id == "esf-utlysningar")
        with httpx.Client(base_url=feeds.url) as client:
            full = client.get(esf.path)
            assert full.status_code == 200 and b"<rss" in full.content
            assert client.get(esf.path, headers={"If-None-Match": esf.etag()}).status_code == 304
            assert client.get("/bryssel/aktuellt").status_code == 500


# -- the real process -------------------------------------------------------------------------


class DemoProcess(WatcherProcess):
    """`watcher demo` as a subprocess whose output is read as it comes."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        super().__init__(["demo", "--port", str(port)], env)


def wait_healthy(base: str) -> None:
    """Poll /healthz until it answers, for at most WAIT seconds (a bounded loop)."""
    deadline = threading.Event()
    timer = threading.Timer(WAIT, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            try:
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                deadline.wait(0.1)
        raise AssertionError("the demo never answered /healthz")
    finally:
        timer.cancel()


def test_watcher_demo_serves_everything_and_removes_its_folder() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "WATCHER_ADMIN_PASSWORD"}
    demo_proc = DemoProcess(port, env)
    try:
        banner = demo_proc.wait_for("DEMO")
        assert base in banner
        password = re.search(r"password (\S+)", demo_proc.wait_for("password")).group(1)  # type: ignore[union-attr]
        folder = Path(re.search(r"data:\s+(\S+)", demo_proc.wait_for("data:")).group(1))  # type: ignore[union-attr]
        assert folder.is_dir() and "nothing is kept" in "".join(demo_proc.log)
        wait_healthy(base)
        with httpx.Client(base_url=base, timeout=WAIT, headers={"Origin": base}) as client:
            home = client.get("/")
            assert home.status_code == 200 and "Hållbar stadsutveckling" in home.text
            api = client.get("/api/items").json()
            items = api["items"]
            assert len(items) >= 20
            moved = next(
                it for it in items if it["title"] == "Hållbar stadsutveckling i Västsverige"
            )
            page = client.get(f"/items/{moved['id']}")
            assert page.status_code == 200 and "Sista ansökningsdag flyttad" in page.text
            assert client.get("/deadlines").status_code == 200
            feed = client.get("/feeds/all.xml")
            assert feed.status_code == 200 and "<rss" in feed.text
            login_page = client.get("/admin/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', login_page.text).group(1)  # type: ignore[union-attr]
            client.post(
                "/admin/login",
                data={"username": "admin", "password": password, "csrf_token": token},
            )
            sources = client.get("/admin/sources")
            assert sources.status_code == 200 and "goteborg-bryssel" in sources.text
            assert "/admin/login" not in str(sources.url)
            assert "Stäng av" in sources.text  # a signed-in admin's switch
        demo_proc.proc.send_signal(signal.SIGTERM)
        assert demo_proc.proc.wait(timeout=WAIT) == 0
        assert not folder.exists()
    finally:
        if demo_proc.proc.poll() is None:
            demo_proc.proc.kill()
