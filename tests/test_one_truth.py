"""One call, one truth: a two-stage call shows the same next deadline and status on every
surface (CLI, web list, item page, deadline timeline, JSON API, digest, feed, calendar), and
they all move on together when a deadline passes, without any write in between."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from notifications.digest import build_digest
from notifications.render import format_datetime
from tests.conftest import Clock
from tests.web_builders import seed
from watcher.app import App
from watcher.cli import main
from watcher.pipeline.normalise import normalise
from watcher.pipeline.track import decide
from watcher.types import PollResult, PollStatus, RawItem

FIRST = timedelta(days=10)
SECOND = timedelta(days=90)


@pytest.fixture
def call(web_app: App, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> int:
    """A two-stage call, open, its deadlines 10 and 90 days ahead; the CLI reads the same
    clock as the service."""
    build = App.from_path.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        App, "from_path", classmethod(lambda cls, path=None, **kw: build(cls, path, clock=clock))
    )
    t0 = clock()
    [item_id] = seed(
        web_app,
        "esf",
        [
            RawItem(
                key="two-stage",
                title="Utlysning i två steg: kompetensförsörjning",
                link="https://esf.example/two-stage",
                kind="call",
                status="open",
                deadlines=((t0 + FIRST).isoformat(), (t0 + SECOND).isoformat()),
            )
        ],
    )
    return item_id


def surfaces(app: App, client: httpx.Client, item_id: int) -> dict[str, Any]:
    """What each surface says the call's next deadline is (as an instant, or as the text it
    shows), and its status."""
    runner = CliRunner()
    cfg = str(app.config.path)
    listed = json.loads(runner.invoke(main, ["--config", cfg, "items", "list", "--json"]).stdout)
    shown = json.loads(
        runner.invoke(main, ["--config", cfg, "items", "show", str(item_id), "--json"]).stdout
    )
    api_list = client.get("/api/items").json()["items"][0]
    api_item = client.get(f"/api/items/{item_id}").json()
    web_list = client.get("/").text
    [(listed_due, listed_text)] = re.findall(
        r'class="due">[^<]*<time datetime="([^"]+)">([^<]+)</time>', web_list
    )
    page = client.get(f"/items/{item_id}").text
    feed = client.get("/feeds/all.xml").text
    ics = client.get("/calendar/all.ics").text
    digest = build_digest(app, "gr-eu", app.now())
    [entry] = [e for e in digest.new if e.item_id == item_id]
    return {
        "cli list": (datetime.fromisoformat(listed["next_deadline"]), listed["status"]),
        "cli show": (datetime.fromisoformat(shown["next_deadline"]), shown["status"]),
        "api list": (datetime.fromisoformat(api_list["next_deadline"]), api_list["status"]),
        "api item": (datetime.fromisoformat(api_item["next_deadline"]), api_item["status"]),
        "web list": (datetime.fromisoformat(listed_due), None),
        "digest": (entry.deadline, entry.status),
        "feed": feed,
        "calendar": ics,
        "api deadlines": api_item["deadlines"],
        "web list text": listed_text,
        "item page": page,
    }


def test_a_two_stage_call_shows_one_next_deadline_everywhere(
    web_app: App, client: httpx.Client, clock: Clock, call: int
) -> None:
    t0 = clock()
    seen = surfaces(web_app, client, call)
    for name in ("cli list", "cli show", "api list", "api item", "web list", "digest"):
        due, status = seen[name]
        assert due == t0 + FIRST, name
        assert status in (None, "open"), name
    assert f"Sista dag: {format_datetime(t0 + FIRST, 'sv')}" in seen["feed"]
    # The same words for the same deadline on the web as in the digest and the feed.
    assert seen["web list text"] == format_datetime(t0 + FIRST, "sv")
    assert format_datetime(t0 + SECOND, "sv") in seen["item page"]
    assert seen["calendar"].count("BEGIN:VEVENT") == 2  # one event per deadline
    assert [datetime.fromisoformat(d) for d in seen["api deadlines"]] == [t0 + FIRST, t0 + SECOND]


def test_every_surface_moves_on_when_the_first_deadline_passes(
    web_app: App, client: httpx.Client, clock: Clock, call: int
) -> None:
    t0 = clock()
    clock.advance(days=11, minutes=10)  # past the feed cache's lifetime too
    seen = surfaces(web_app, client, call)
    for name in ("cli list", "cli show", "api list", "api item", "web list", "digest"):
        assert seen[name][0] == t0 + SECOND, name
    assert f"Sista dag: {format_datetime(t0 + SECOND, 'sv')}" in seen["feed"]


def test_a_call_whose_deadlines_all_passed_reads_closed_everywhere_without_a_refresh(
    web_app: App, client: httpx.Client, clock: Clock, call: int
) -> None:
    """No status refresh ran (the stored status still says open): surfaces compute it."""
    t0 = clock()
    clock.advance(days=91)
    stored = web_app.storage.get_item(call)
    assert stored is not None and stored.status == "open"
    runner = CliRunner()
    cfg = str(web_app.config.path)
    listed = json.loads(runner.invoke(main, ["--config", cfg, "items", "list", "--json"]).stdout)
    assert listed["status"] == "closed"
    assert datetime.fromisoformat(listed["next_deadline"]) == t0 + SECOND  # the last one
    api_item = client.get(f"/api/items/{call}").json()
    assert api_item["status"] == "closed"
    page = client.get(f"/items/{call}").text
    assert "Stängd" in page
    assert 'status-open"' not in page


def test_a_moved_deadline_reads_as_a_sentence_in_the_cli(
    web_app: App, clock: Clock, call: int
) -> None:
    """Issue 11.8: ``items show`` printed raw UTC values cut at 40 characters."""
    stored = web_app.storage.get_item(call)
    assert stored is not None
    t0 = clock()
    moved = (t0 + FIRST + timedelta(days=21)).isoformat()
    raw = RawItem(
        key="two-stage",
        title=stored.title,
        link=stored.link,
        kind="call",
        status="open",
        deadlines=(moved, (t0 + SECOND).isoformat()),
    )
    clock.advance(hours=1)
    seed_update(web_app, raw)
    out = CliRunner().invoke(
        main, ["--config", str(web_app.config.path), "items", "show", str(call)]
    )
    before = format_datetime(t0 + FIRST, "sv")
    after = format_datetime(t0 + FIRST + timedelta(days=21), "sv")
    assert f"Sista ansökningsdag flyttad: {before} → {after}" in out.stdout
    assert "+00:00" not in out.stdout


def seed_update(app: App, raw: RawItem) -> None:
    """The call's own source says something new, as a poll would write it."""
    src = app.config.source("esf")
    it = normalise(raw, src, app.now(), app.config.tz)
    intents = decide([it], app.storage.known_slices("esf"))
    app.storage.apply("esf", intents, PollResult("esf", PollStatus.OK, updated=1), app.now())
