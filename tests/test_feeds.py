"""Feeds (RSS 2.0, Atom), calendars (.ics) and the unsubscribe pages, through the web app."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import feedparser
import httpx
import pytest
from icalendar import Calendar
from lxml import etree

from notifications.unsubscribe import Unsubscriber
from tests.digest_builders import ItemBuilder
from watcher.storage.deliveries import DeliveryStore
from watcher.web.app import create_app


@pytest.fixture
def site(make_app, clock):
    app = make_app(
        {
            "networks": [
                {
                    "id": "arb",
                    "name": "Arbetsmarknadsnätverket",
                    "areas": ["fonder-program"],
                    "themes": ["arbetsmarknad"],
                    "members": ["a@kommun.se"],
                },
                {"id": "eng", "name": "English", "language": "en", "themes": ["utbildning"]},
            ]
        }
    )
    web = create_app(app)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://test")
    return app, ItemBuilder(app.storage, clock), client, web


def changed(app: Any, *ids: int) -> None:
    """What a poll does after storing: fire the hook (the feed cache listens)."""
    for hook in app.hooks.items_changed:
        hook("src", list(ids))


async def test_rss_and_atom_are_valid_with_stable_ids(site, clock):
    _app, items, client, _ = site
    items.add("a", deadlines=[clock() + timedelta(days=10)], summary="Om <b>ESF</b> & mer")
    items.add("other", areas=["paverkan"], themes=["arbetsmarknad"])
    rss = await client.get("/feeds/area/fonder-program.xml")
    atom = await client.get("/feeds/area/fonder-program.atom")
    assert rss.status_code == 200 and rss.headers["content-type"].startswith("application/rss+xml")
    assert atom.headers["content-type"].startswith("application/atom+xml")
    etree.fromstring(rss.content)
    etree.fromstring(atom.content)
    r, a = feedparser.parse(rss.content), feedparser.parse(atom.content)
    assert not r.bozo and not a.bozo
    assert r.version == "rss20" and a.version == "atom10"
    assert [e.title for e in r.entries] == ["Utlysning a"]
    assert r.entries[0].id == a.entries[0].id and r.entries[0].id.startswith("urn:uuid:")
    assert r.entries[0].guidislink is False
    assert "Om <b>ESF</b> & mer" in a.entries[0].content[0].value
    assert "Sista dag: 12 november 2026" in r.entries[0].description
    again = feedparser.parse((await client.get("/feeds/area/fonder-program.xml")).content)
    assert again.entries[0].id == r.entries[0].id


async def test_scopes_and_what_never_appears(site, clock):
    _app, items, client, _ = site
    items.add("arb", areas=["fonder-program"], themes=["arbetsmarknad"])
    items.add("utb", areas=["kompetens"], themes=["utbildning"])
    items.add("irrelevant", relevant=False)
    items.add("held", held=True)
    items.add("untagged", areas=[], themes=[])

    async def titles(path: str) -> list[str]:
        resp = await client.get(path)
        assert resp.status_code == 200, path
        return sorted(e.title for e in feedparser.parse(resp.content).entries)

    assert await titles("/feeds/all.xml") == ["Utlysning arb", "Utlysning utb"]
    assert await titles("/feeds/theme/utbildning.atom") == ["Utlysning utb"]
    assert await titles("/feeds/network/arb.xml") == ["Utlysning arb"]
    assert await titles("/feeds/network/eng.atom") == ["Utlysning utb"]
    for bad in (
        "/feeds/area/nope.xml",
        "/feeds/network/nope.xml",
        "/feeds/area/fonder-program.json",
        "/feeds/source/x.xml",
        "/feeds/everything.xml",
        "/calendar/area/nope.ics",
    ):
        assert (await client.get(bad)).status_code == 404, bad


async def test_etag_last_modified_and_304(site, clock):
    _app, items, client, web = site
    items.add("a")
    first = await client.get("/feeds/area/fonder-program.xml")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert (
        await client.get("/feeds/area/fonder-program.xml", headers={"If-None-Match": etag})
    ).status_code == 304
    r = await client.get("/feeds/area/fonder-program.xml", headers={"If-Modified-Since": modified})
    assert r.status_code == 304 and r.content == b""
    stale = await client.get("/feeds/area/fonder-program.xml", headers={"If-None-Match": '"x"'})
    assert stale.status_code == 200
    # Served from the cache: one build for RSS and Atom together.
    await client.get("/feeds/area/fonder-program.atom")
    assert web.state.feed_cache.builds == 1


async def test_updates_are_reflected(site, clock):
    app, items, client, _ = site
    a = items.add("a", deadlines=[clock() + timedelta(days=10)])
    clock.advance(hours=1)
    items.add("b")
    before = await client.get("/feeds/all.atom")
    assert [e.title for e in feedparser.parse(before.content).entries] == [
        "Utlysning b",
        "Utlysning a",
    ]
    clock.advance(hours=1)
    items.change(a, deadlines=[clock() + timedelta(days=30)], title="Utlysning a (ändrad)")
    changed(app, a)
    after = await client.get("/feeds/all.atom", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    entries = feedparser.parse(after.content).entries
    old_ids = {e.title: e.id for e in feedparser.parse(before.content).entries}
    assert entries[0].title == "Utlysning a (ändrad)" and entries[0].id == old_ids["Utlysning a"]
    assert "Uppdaterad" in entries[0].content[0].value
    assert entries[0].updated_parsed > feedparser.parse(before.content).entries[1].updated_parsed


async def test_retagging_invalidates_the_cache(site, clock):
    app, items, client, _ = site
    a = items.add("a", areas=["paverkan"])
    assert (
        feedparser.parse((await client.get("/feeds/area/fonder-program.xml")).content).entries == []
    )
    items.tag(a, ["fonder-program"], ["arbetsmarknad"])
    for hook in app.hooks.items_retagged:
        hook([a])
    entries = feedparser.parse((await client.get("/feeds/area/fonder-program.xml")).content).entries
    assert [e.title for e in entries] == ["Utlysning a"]


async def test_characters_invalid_in_xml_never_break_a_feed(site, clock):
    _app, items, client, _ = site
    items.add(
        "bad",
        "Utlysning\x00 med\x0b kontroll\ufffe tecken\x1b & <taggar>",
        summary="Text\x07 med \x01 trasigt",
        link="javascript:alert(1)",
    )
    for path in ("/feeds/all.xml", "/feeds/all.atom"):
        resp = await client.get(path)
        assert resp.status_code == 200
        etree.fromstring(resp.content)
        parsed = feedparser.parse(resp.content)
        assert not parsed.bozo
        assert parsed.entries[0].title == "Utlysning med kontroll tecken & <taggar>"
        assert b"javascript:" not in resp.content


async def test_calendar_one_event_per_deadline_and_a_moved_deadline_moves(site, clock):
    app, items, client, _ = site
    d1, d2 = clock() + timedelta(days=10), clock() + timedelta(days=40)
    a = items.add("a", "Två\r\nATTENDEE:mailto:evil@example.com", deadlines=[d1, d2])
    items.add("nodl", deadlines=[])
    resp = await client.get("/calendar/area/fonder-program.ics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/calendar")
    assert b"\r\nATTENDEE" not in resp.content
    events = Calendar.from_ical(resp.content).walk("VEVENT")
    assert len(events) == 2
    uids = [str(e["UID"]) for e in events]
    assert [e.decoded("DTSTART") for e in events] == [d1, d2]
    assert str(events[0]["SUMMARY"]) == "Sista dag: Två ATTENDEE:mailto:evil@example.com"
    clock.advance(hours=1)
    moved = d2 + timedelta(days=7)
    items.change(a, deadlines=[d1, moved])
    changed(app, a)
    events2 = Calendar.from_ical((await client.get("/calendar/area/fonder-program.ics")).content)
    ev = events2.walk("VEVENT")
    assert [str(e["UID"]) for e in ev] == uids
    assert ev[1].decoded("DTSTART") == moved
    assert (await client.get("/calendar/all.ics")).status_code == 200
    assert (await client.get("/calendar/network/arb.ics")).status_code == 200


async def test_whole_day_deadline_is_an_all_day_event(site, clock):
    from datetime import date

    from watcher.dates import from_date

    _app, items, client, _ = site
    items.add("day", deadlines=[from_date(date(2026, 12, 1), end_of_day=True)])
    [ev] = Calendar.from_ical((await client.get("/calendar/all.ics")).content).walk("VEVENT")
    assert ev.decoded("DTSTART") == date(2026, 12, 1)
    assert ev.decoded("DTEND") == date(2026, 12, 2)


async def test_unsubscribe_get_confirms_and_post_records(site, clock):
    app, _items, client, _ = site
    unsub = Unsubscriber.for_app(app)
    url = unsub.url("arb", "A@Kommun.se")
    path = url.removeprefix(app.config.watcher.base_url)
    page = await client.get(path)
    assert page.status_code == 200 and "Avsluta prenumerationen?" in page.text
    assert 'method="post"' in page.text
    assert DeliveryStore(app.storage).optouts() == []  # a GET records nothing
    done = await client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and "avslutad" in done.text
    [o] = DeliveryStore(app.storage).optouts()
    assert (o.network_id, o.address) == ("arb", "a@kommun.se")
    assert (await client.post(path)).status_code == 200  # twice is harmless
    assert len(DeliveryStore(app.storage).optouts()) == 1


async def test_forged_or_garbled_unsubscribe_tokens_are_refused(site):
    app, _items, client, _ = site
    token = Unsubscriber.for_app(app).token("arb", "a@kommun.se")
    payload, sig = token.rsplit(".", 1)
    other = Unsubscriber("another key", "http://x").token("arb", "b@kommun.se")
    for bad in (payload + "." + sig[::-1], other, "nonsense", payload):
        assert (await client.post(f"/unsubscribe/{bad}")).status_code == 400
    assert DeliveryStore(app.storage).optouts() == []


async def test_unsubscribe_key_from_environment_or_database(make_app, monkeypatch):
    app = make_app({})
    monkeypatch.delenv("WATCHER_SECRET_KEY", raising=False)
    db_key = Unsubscriber.for_app(app).secret
    assert db_key == Unsubscriber.for_app(app).secret  # made once, kept in the database
    assert app.storage.get_meta("unsubscribe_secret") == db_key
    monkeypatch.setenv("WATCHER_SECRET_KEY", "from-the-environment")
    assert Unsubscriber.for_app(app).secret == "from-the-environment"


def test_each_feed_document_links_to_itself_and_to_the_site():
    import re
    from datetime import UTC, datetime

    from notifications.feeds import Scope, build_feed

    rss, atom = build_feed(
        [],
        Scope("area", "fonder-program", "Fonder"),
        self_url="http://h/feeds/area/fonder-program",
        site_url="http://h/",
        now=datetime(2026, 11, 2, tzinfo=UTC),
    )
    assert re.findall(rb"<link>([^<]*)</link>", rss) == [b"http://h/"]
    assert b'<atom:link href="http://h/feeds/area/fonder-program.xml" rel="self"/>' in rss
    assert b'<link href="http://h/feeds/area/fonder-program.atom" rel="self"/>' in atom
    assert b'<link href="http://h/" rel="alternate"/>' in atom
