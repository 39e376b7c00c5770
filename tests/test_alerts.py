"""Admin alerts: transitions decided by a pure function (a table of named cases), recorded
once, sent once through the outbox and Apprise, and listed on /admin/events."""

from __future__ import annotations

import email
import json
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest

from notifications.alerts import (
    DELIVERY_FAILED,
    DIGEST_MISSED,
    FLOOD_HELD,
    FLOOD_MARK,
    LAYOUT_CHANGED,
    LAYOUT_MARK,
    SOURCE_FAILING,
    SOURCE_RECOVERED,
    SourceHealth,
    flood_note,
    record_delivery_failed,
    record_digest_missed,
    redact_alert_url,
    send_alerts,
    source_events,
)
from tests.builders import feed, rss_item
from tests.conftest import T0, fetch_settings
from tests.loopback import Reply
from watcher.config import validate_data
from watcher.exceptions import ConfigError
from watcher.pipeline.layout import check_layout
from watcher.scheduler import Scheduler
from watcher.storage.events import NewEvent
from watcher.types import SourceState

LAYOUT = f"{LAYOUT_MARK} no items found"
FLOOD = f"60 new items at once (more than 50): {FLOOD_MARK} instead of being mailed"

# name: (open kinds, health, threshold 3) -> (new event kinds, keys resolved quietly)
CASES: dict[str, tuple[set[str], dict[str, Any], list[str], list[str]]] = {
    "healthy source, nothing open": (set(), {}, [], []),
    "first failure": (set(), {"failures": 1}, [], []),
    "second failure": (set(), {"failures": 2}, [], []),
    "third failure opens failing": (set(), {"failures": 3}, [SOURCE_FAILING], []),
    "found failing past the threshold (a CLI poll)": (set(), {"failures": 7}, [SOURCE_FAILING], []),
    "fourth failure: already told": ({SOURCE_FAILING}, {"failures": 4}, [], []),
    "recovered": ({SOURCE_FAILING}, {"failures": 0}, [SOURCE_RECOVERED], []),
    "recovering below the threshold is not news": (set(), {"failures": 0}, [], []),
    "layout warning appears": (set(), {"warning": LAYOUT}, [LAYOUT_CHANGED], []),
    "layout warning among others": (
        set(),
        {"warning": f"robots.txt could not be read; {LAYOUT}"},
        [LAYOUT_CHANGED],
        [],
    ),
    "other warnings are not a layout change": (set(), {"warning": "robots.txt unread"}, [], []),
    "layout warning still there": ({LAYOUT_CHANGED}, {"warning": LAYOUT}, [], []),
    "layout warning gone: resolved quietly": (
        {LAYOUT_CHANGED},
        {"warning": None},
        [],
        [f"{LAYOUT_CHANGED}:s"],
    ),
    "a flood held": (set(), {"flood": FLOOD}, [FLOOD_HELD], []),
    "another flood while one is held": ({FLOOD_HELD}, {"flood": FLOOD, "held": 60}, [], []),
    "held items still there": ({FLOOD_HELD}, {"held": 60}, [], []),
    "held items unknown: nothing decided": ({FLOOD_HELD}, {"held": None}, [], []),
    "held items released: resolved quietly": (
        {FLOOD_HELD},
        {"held": 0},
        [],
        [f"{FLOOD_HELD}:s"],
    ),
    "failing and layout at once": (
        set(),
        {"failures": 3, "warning": LAYOUT},
        [SOURCE_FAILING, LAYOUT_CHANGED],
        [],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_source_transitions(name: str) -> None:
    opened, health, kinds, resolved = CASES[name]
    decision = source_events(opened, SourceHealth("s", **health), threshold=3)
    assert [e.kind for e in decision.new] == kinds
    assert list(decision.resolve) == resolved
    for e in decision.new:
        if e.kind == SOURCE_RECOVERED:
            assert e.key is None and e.resolves == f"{SOURCE_FAILING}:s"
        else:
            assert e.key == f"{e.kind}:s"


def test_the_layout_mark_matches_what_the_pipeline_writes() -> None:
    state = SourceState("s", last_parsed=12)
    layout = check_layout(state, [], "rss")
    assert layout.warnings and layout.warnings[0].startswith(LAYOUT_MARK)
    # The flood's note is pinned end to end: test_a_held_flood_is_told_once.


def test_apprise_urls_are_never_shown_whole() -> None:
    assert redact_alert_url("msteams://TokenA/TokenB/TokenC", 1) == "alert_urls[1] (msteams)"
    with pytest.raises(ConfigError) as e:
        validate_data({"admin": {"alert_urls": ["not a url with secret-token"]}})
    assert "secret-token" not in str(e.value)


# -- end to end ----------------------------------------------------------------------------------


def outbox_messages(app: Any) -> list[email.message.EmailMessage]:
    out = Path(app.config.resolve_path(app.config.email.outbox))
    return [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for p in sorted(out.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]


@pytest.fixture
def flaky(loopback: Any) -> dict[str, bool]:
    """A feed that fails while ``state["down"]``."""
    state = {"down": True}
    body = feed(rss_item("a", "Utlysning A", "https://example.org/a")).encode()

    def handler(_req: Any) -> Reply:
        if state["down"]:
            return Reply(500, body=b"down")
        return Reply(200, {"Content-Type": "application/rss+xml"}, body)

    loopback.add_handler("/feed.xml", handler)
    return state


def alert_config(loopback: Any, **admin: Any) -> dict[str, Any]:
    return {
        "fetch": fetch_settings(loopback),
        "admin": {"alert_emails": ["admin@kommun.se"], **admin},
        "sources": [
            {
                "id": "esf",
                "name": "ESF-rådet",
                "kind": "rss",
                "url": loopback.url("/feed.xml"),
                "schedule": "1h",
            }
        ],
    }


async def test_failing_three_times_sends_one_alert_and_recovering_one_more(
    make_app: Any, loopback: Any, flaky: dict[str, bool], clock: Any
) -> None:
    app = make_app(alert_config(loopback))
    sched = Scheduler(app, start_jitter=0)
    sched.start(paused=True)
    try:
        await sched._leadership()
        for _ in range(2):
            await sched._run_source("esf")
            clock.advance(minutes=10)
        assert outbox_messages(app) == []
        await sched._run_source("esf")  # the third failure in a row
        (alert,) = outbox_messages(app)
        assert alert["To"] == "admin@kommun.se"
        assert "ESF-rådet har misslyckats 3 gånger i rad" in alert["Subject"]
        assert "http_500" in alert.get_content()
        clock.advance(minutes=10)
        await sched._run_source("esf")  # a fourth failure: nothing new
        await sched._send_alerts(periodic=True)
        assert len(outbox_messages(app)) == 1
        flaky["down"] = False
        clock.advance(minutes=10)
        await sched._run_source("esf")
        messages = outbox_messages(app)
        assert len(messages) == 2 and "ESF-rådet fungerar igen" in messages[1]["Subject"]
        await sched._run_source("esf")
        await sched._send_alerts(periodic=True)
        assert len(outbox_messages(app)) == 2
    finally:
        await sched.stop()
    failing, recovered = sorted(app.storage.admin_events(), key=lambda e: e.id)
    assert failing.kind == SOURCE_FAILING and failing.resolved_at == clock()
    assert recovered.kind == SOURCE_RECOVERED and recovered.resolves == failing.id
    assert {failing.send_status, recovered.send_status} == {"sent"}


async def test_a_held_flood_is_told_once(make_app: Any, loopback: Any, clock: Any) -> None:
    one = feed(rss_item("1", "Första", "https://x/1"))
    loopback.add("/feed.xml", one, content_type="application/rss+xml")
    app = make_app({**alert_config(loopback), "email": {"flood_threshold": 5}})
    await app.poll()  # the baseline
    many = feed(*(rss_item(str(i), f"Nyhet {i}", f"https://x/{i}") for i in range(1, 30)))
    loopback.add("/feed.xml", many, content_type="application/rss+xml")
    clock.advance(hours=1)
    [r] = await app.poll()
    assert flood_note(r.warnings) is not None
    assert send_alerts(app).sent == 1
    (message,) = outbox_messages(app)
    assert "ovanligt många nya poster hålls kvar" in message["Subject"]
    clock.advance(hours=1)
    await app.poll()  # still held: nothing new
    assert app.storage.release_held("esf", now=clock()) == 28
    clock.advance(hours=1)
    await app.poll()  # released: resolved quietly
    (event,) = app.storage.admin_events()
    assert event.kind == FLOOD_HELD and event.resolved_at == clock()
    assert send_alerts(app).sent == 0 and len(outbox_messages(app)) == 1


async def test_an_apprise_url_gets_the_alert(
    make_app: Any, loopback: Any, flaky: dict[str, bool]
) -> None:
    loopback.add_handler("/hook", lambda _req: Reply(200, body=b"{}"))
    url = f"json://{loopback.base_url.split('://', 1)[1]}/hook"
    app = make_app(alert_config(loopback, alert_emails=[], alert_urls=[url]))
    for _ in range(3):
        await app.poll(["esf"])
    report = send_alerts(app)
    assert report.sent == 1, report.errors
    (req,) = [r for r in loopback.requests if r.route == "/hook"]
    payload = json.loads(req.body)
    assert "ESF-rådet har misslyckats 3 gånger i rad" in payload["title"]
    assert "http_500" in payload["message"]
    assert send_alerts(app).sent == 0 and len(loopback.requests) == 4  # 3 polls + 1 alert


def test_an_unreachable_target_is_retried_and_never_sent_twice(
    make_app: Any, loopback: Any, clock: Any
) -> None:
    loopback.add_handler("/hook", lambda _req: Reply(503))
    url = f"json://{loopback.base_url.split('://', 1)[1]}/hook"
    app = make_app({"admin": {"alert_emails": ["admin@kommun.se"], "alert_urls": [url]}})
    (event,) = app.storage.record_events([NewEvent(DIGEST_MISSED, "gr-eu", "k", None)], T0)
    first = send_alerts(app)
    assert first.deferred == 1 and "alert_urls[0] (json)" in first.errors[0]
    assert url not in first.errors[0]
    assert len(outbox_messages(app)) == 1  # the email went out
    loopback.add_handler("/hook", lambda _req: Reply(200))
    assert send_alerts(app).sent == 0  # not due yet
    clock.advance(seconds=app.config.email.retry_delay + 1)
    assert send_alerts(app).sent == 1
    assert len(outbox_messages(app)) == 1  # the address was not told twice
    stored = app.storage.get_admin_event(event.id)
    assert stored is not None and stored.send_status == "sent" and len(stored.sent_to) == 2


def test_delivery_and_digest_events_are_recorded_once(make_app: Any) -> None:
    app = make_app({"admin": {"alert_emails": ["admin@kommun.se"]}})
    for _ in range(2):
        record_delivery_failed(
            app,
            network_id="gr-eu",
            address="a@kommun.se",
            delivery_id=7,
            attempt=1,
            error="550 no such user",
        )
        record_digest_missed(
            app, network_id="gr-eu", first=T0, last=T0 + timedelta(days=1), count=2
        )
    kinds = sorted(e.kind for e in app.storage.admin_events())
    assert kinds == [DELIVERY_FAILED, DIGEST_MISSED]
    assert send_alerts(app).sent == 2
    subjects = sorted(str(m["Subject"]) for m in outbox_messages(app))
    assert "a@kommun.se" in subjects[1] and "2 schemalagda utskick missades" in subjects[0]


def test_without_targets_events_are_only_listed(make_app: Any) -> None:
    app = make_app({})
    record_digest_missed(app, network_id="gr-eu", first=T0, last=T0, count=1)
    (event,) = app.storage.admin_events()
    assert event.send_status == "none"
    assert send_alerts(app).sent == 0


def test_the_events_page_lists_them_newest_first(web_app: Any, admin: Any, clock: Any) -> None:
    storage = web_app.storage
    storage.record_events(
        [NewEvent(SOURCE_FAILING, "esf", "source_failing:esf", "boom", {"failures": 3})], T0
    )
    storage.record_events(
        [NewEvent(SOURCE_RECOVERED, "esf", None, resolves="source_failing:esf")],
        T0 + timedelta(hours=2),
    )
    storage.record_events(
        [NewEvent(LAYOUT_CHANGED, "nyheter", "layout_changed:nyheter", LAYOUT)],
        T0 + timedelta(hours=3),
    )
    page = admin.get("/admin/events")
    assert page.status_code == 200
    html = page.text
    assert 'href="/admin/events" aria-current="page"' in html
    layout, recovered, failing = (html.index(f'id="event-{i}"') for i in (3, 2, 1))
    assert layout < recovered < failing  # newest first
    row = html[failing : html.index("</tr>", failing)]
    classes = row.split('class="', 1)[1].split('"', 1)[0].split()
    assert "event-resolved" in classes and "failing" not in classes  # neutral
    assert "löst 2026-11-02 11:00" in row  # 08:00 UTC + 2 h, in Stockholm
    open_row = html[layout : html.index("</tr>", layout)]
    assert "event-open" in open_row and "pågår" in open_row
    english = admin.get("/admin/events?lang=en").text
    assert "resolved 2026-11-02 11:00" in english
