"""End to end: sources on a loopback server polled through the real pipeline into storage."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.builders import GOOD, feed, rss_item, src
from tests.conftest import DATA, T0, fetch_settings
from tests.loopback import LoopbackServer, Reply
from watcher.storage import ItemFilter


async def test_poll_stores_items_and_a_repoll_changes_nothing(make_app, loopback: LoopbackServer):
    loopback.add("/feed.xml", GOOD, content_type="application/rss+xml")
    app = make_app(
        {"fetch": fetch_settings(loopback), "sources": [src("feed", loopback.url("/feed.xml"))]}
    )
    [r] = await app.poll()
    assert (r.status.value, r.new, r.updated, r.unchanged) == ("ok", 2, 0, 0)
    stored = app.storage.list_items(ItemFilter(source="feed"))
    assert sorted(i.title for i in stored) == [
        "Samråd om sammanhållningspolitiken",
        "Utlysning: kompetensförsörjning",
    ]
    [r2] = await app.poll()
    assert (r2.new, r2.updated, r2.unchanged) == (0, 0, 2)
    assert app.storage.count_items() == 2
    history = app.storage.item_history(stored[0].id)
    assert [h.kind for h in history] == ["new"]


async def test_conditional_get_gives_not_modified(make_app, loopback: LoopbackServer):
    loopback.add("/feed.xml", GOOD, content_type="application/rss+xml", etag='"v1"')
    app = make_app(
        {"fetch": fetch_settings(loopback), "sources": [src("feed", loopback.url("/feed.xml"))]}
    )
    await app.poll()
    [r] = await app.poll()
    assert r.status.value == "not_modified"
    assert loopback.requests[-1].header("if-none-match") == '"v1"'
    assert app.storage.source_state("feed").etag == '"v1"'


async def test_a_poll_that_hears_only_not_modified_reads_no_rule_files(
    make_app, loopback: LoopbackServer, monkeypatch
):
    """A process's rule files are read when it first classifies (or reports on its rules),
    not when it starts: an unchanged round of `watcher poll` never classifies."""
    import watcher.classify
    from rules.loader import RuleStore

    read: list[RuleStore] = []

    class Counted(RuleStore):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            read.append(self)

    monkeypatch.setattr(watcher.classify, "RuleStore", Counted)
    loopback.add("/feed.xml", GOOD, content_type="application/rss+xml", etag='"v1"')
    data = {"fetch": fetch_settings(loopback), "sources": [src("feed", loopback.url("/feed.xml"))]}
    first = make_app(data)
    [r] = await first.poll()
    assert r.status.value == "ok" and len(read) == 1  # it parsed and tagged
    assert first.storage.list_items(ItemFilter(source="feed"))[0].tags
    later = make_app(data)  # the next `watcher poll`
    [r] = await later.poll()
    assert r.status.value == "not_modified"
    assert len(read) == 1
    assert later.classifier.version == first.classifier.version  # read when asked for
    assert len(read) == 2


async def test_changed_title_and_deadline_is_an_update_with_field_diffs(make_app, loopback, clock):
    def page(deadline: str) -> str:
        return f"""<html><body><ul>
        <li class="call"><h3><a href="/c/1">Utlysning om kompetens</a></h3>
            <p>Sista ansökningsdag: {deadline}</p></li></ul></body></html>"""

    loopback.add("/list", page("16 mars 2027"))
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [
                src("list", loopback.url("/list"), adapter="html", item="li.call", kind="call")
            ],
        }
    )
    [r] = await app.poll()
    assert r.new == 1
    [item] = app.storage.list_items()
    assert item.deadline is not None and item.deadline.date().isoformat() == "2027-03-16"
    loopback.add("/list", page("30 mars 2027"))
    clock.advance(hours=2)
    [r] = await app.poll()
    assert (r.new, r.updated) == (0, 1)
    [item] = app.storage.list_items()
    assert item.deadline.date().isoformat() == "2027-03-30"
    changes = app.storage.item_history(item.id)[-1]
    assert changes.kind == "updated" and changes.notable
    fields = {c["field"] for c in changes.changes}
    assert fields == {"deadlines"}


async def test_guid_that_changes_every_fetch_makes_no_duplicates(make_app, loopback):
    n = {"count": 0}

    def handler(_req: Any) -> Reply:
        n["count"] += 1
        body = feed(rss_item(f"guid-{n['count']}", "Samma nyhet", "https://x.example/same"))
        return Reply(200, {"Content-Type": "application/rss+xml"}, body.encode())

    loopback.add_handler("/churn.xml", handler)
    app = make_app(
        {"fetch": fetch_settings(loopback), "sources": [src("churn", loopback.url("/churn.xml"))]}
    )
    await app.poll()
    [r] = await app.poll()
    assert (r.new, r.unchanged) == (0, 1)
    assert app.storage.count_items() == 1


async def test_items_without_guid_are_keyed_by_link(make_app, loopback):
    body = feed(
        rss_item(None, "Utan guid", "https://x.example/1"),
        rss_item(None, "Också", "https://x.example/2"),
    )
    loopback.add("/f.xml", body, content_type="application/rss+xml")
    app = make_app(
        {"fetch": fetch_settings(loopback), "sources": [src("f", loopback.url("/f.xml"))]}
    )
    await app.poll()
    [r] = await app.poll()
    assert (r.new, r.unchanged) == (0, 2)
    keys = sorted(s.key for it in app.storage.list_items() for s in it.sources)
    assert keys == ["https://x.example/1", "https://x.example/2"]


async def test_wrongly_declared_encoding_still_gives_swedish_letters(make_app, loopback):
    # Declares ISO-8859-1 in the XML and the header but sends UTF-8 (a common CMS fault).
    body = feed(
        rss_item("x", "Utlysning för äldreomsorg på Hönö", "https://x.example/å"),
        encoding="ISO-8859-1",
    )
    loopback.add(
        "/f.xml", body.encode("utf-8"), content_type="application/rss+xml; charset=ISO-8859-1"
    )
    # …and one that really is Latin-1 but claims UTF-8 nowhere.
    latin = feed(
        rss_item("y", "Kompetensförsörjning i Västsverige", "https://x.example/y"),
        encoding="ISO-8859-1",
    )
    loopback.add("/latin.xml", latin.encode("latin-1"), content_type="application/rss+xml")
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [src("f", loopback.url("/f.xml")), src("l", loopback.url("/latin.xml"))],
        }
    )
    await app.poll()
    titles = sorted(i.title for i in app.storage.list_items())
    assert titles == ["Kompetensförsörjning i Västsverige", "Utlysning för äldreomsorg på Hönö"]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<rss version="2.0"><channel><title>&lol3;</title><item><title>&lol3;</title><link>https://x/1</link></item></channel></rss>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>x</title><item><title>&xxe;</title><link>https://x/1</link></item></channel></rss>"""


def _bomb() -> bytes:
    return gzip.compress(b"<" + b"a" * 30_000_000, compresslevel=9)


# Every fault ends as a clear error code on that source alone.
FAULTS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("http_500", Reply(500, body=b"oops"), {}, "http_500"),
    ("not_found", Reply(404, body=b"no"), {}, "http_404"),
    ("rate_limited", Reply(429, {"Retry-After": "7200"}), {}, "rate_limited"),
    (
        "too_large",
        Reply(200, {"Content-Type": "application/rss+xml"}, b"<rss>" + b" " * 300_000),
        {},
        "too_large",
    ),
    (
        "gzip_bomb",
        Reply(200, {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}, _bomb()),
        {},
        "too_large",
    ),
    (
        "billion_laughs",
        Reply(200, {"Content-Type": "application/rss+xml"}, BILLION_LAUGHS.encode()),
        {},
        "hostile_xml",
    ),
    ("xxe", Reply(200, {"Content-Type": "application/rss+xml"}, XXE.encode()), {}, "hostile_xml"),
    (
        "malformed",
        Reply(200, {"Content-Type": "text/html"}, b"<html><body>not a feed</html>"),
        {},
        "invalid_feed",
    ),
    ("empty", Reply(200, {"Content-Type": "application/rss+xml"}, b""), {}, "empty_body"),
    ("drip", Reply(200, {"Content-Type": "application/rss+xml"}, [b"<"] * 50, 0.2), {}, "timeout"),
]


async def test_each_fault_is_an_error_on_its_own_source_and_others_complete(make_app, loopback):
    loopback.add("/good.xml", GOOD, content_type="application/rss+xml")
    sources = [src("good", loopback.url("/good.xml"))]
    for name, reply, _opts, _code in FAULTS:
        loopback.add_handler(f"/{name}", lambda _req, reply=reply: reply)
        sources.append(src(name.replace("_", "-"), loopback.url(f"/{name}")))
    # A redirect loop, and a redirect to an address that is refused.
    loopback.add_handler("/loop", lambda _req: Reply.redirect(loopback.url("/loop")))
    loopback.add_handler(
        "/to-internal", lambda _req: Reply.redirect("http://169.254.169.254/latest/meta-data")
    )
    sources += [src("loop", loopback.url("/loop")), src("internal", loopback.url("/to-internal"))]
    # A refused address spelled as a decimal number, with no allow-list entry.
    sources.append(src("decimal", "http://2130706433:9/feed.xml"))
    app = make_app(
        {"fetch": fetch_settings(loopback, max_bytes=200_000, timeout=3), "sources": sources}
    )
    results = {r.source_id: r for r in await app.poll()}
    assert results["good"].status.value == "ok" and results["good"].new == 2
    expected = {name.replace("_", "-"): code for name, _r, _o, code in FAULTS}
    expected |= {
        "loop": "too_many_redirects",
        "internal": "blocked_address",
        "decimal": "blocked_address",
    }
    got = {sid: (r.error.code if r.error else None) for sid, r in results.items() if sid != "good"}
    assert got == expected
    states = app.storage.source_states()
    for sid, code in expected.items():
        assert states[sid].last_error_code == code
        assert states[sid].consecutive_failures == 1
        assert states[sid].next_attempt_at is not None
    assert states["good"].consecutive_failures == 0
    # The lol entities never expanded into anything stored.
    assert app.storage.count_items() == 2


async def test_a_failure_keeps_what_was_stored_and_recovery_resets_health(
    make_app, loopback, clock
):
    loopback.add("/f.xml", GOOD, content_type="application/rss+xml")
    app = make_app(
        {"fetch": fetch_settings(loopback), "sources": [src("f", loopback.url("/f.xml"))]}
    )
    await app.poll()
    loopback.add("/f.xml", "err", status=503)
    clock.advance(hours=1)
    [r] = await app.poll()
    assert r.error is not None and r.error.code == "http_503"
    assert app.storage.count_items() == 2
    clock.advance(hours=1)
    [r] = await app.poll()
    assert app.storage.source_state("f").consecutive_failures == 2
    loopback.add("/f.xml", GOOD, content_type="application/rss+xml")
    clock.advance(hours=1)
    [r] = await app.poll()
    st = app.storage.source_state("f")
    assert (r.status.value, st.consecutive_failures, st.last_error_code) == ("ok", 0, "http_503")
    assert st.last_success_at == clock.current


async def test_html_selector_matching_nothing_is_a_layout_warning(make_app, loopback):
    loopback.add(
        "/list", "<html><body><div class='card'><h2><a href='/a'>Ett</a></h2></div></body></html>"
    )
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [src("l", loopback.url("/list"), adapter="html", item=".card")],
        }
    )
    [r] = await app.poll()
    assert r.new == 1 and not r.warnings
    loopback.add(
        "/list", "<html><body><article><h2><a href='/a'>Ett</a></h2></article></body></html>"
    )
    [r] = await app.poll()
    assert r.status.value == "ok"
    assert any("layout changed?" in w for w in r.warnings)
    assert "layout changed?" in (app.storage.source_state("l").warning or "")
    assert app.storage.count_items() == 1


async def test_page_watch_makes_one_item_per_meaningful_change(make_app, loopback, clock):
    def page(rows: list[str], stamp: str) -> str:
        lis = "".join(f"<li>{r}</li>" for r in rows)
        return f"<html><head><title>Utlysningsplan</title></head><body><main><ul>{lis}</ul><p>Uppdaterad {stamp}</p></main></body></html>"

    loopback.add("/plan", page(["Utlysning A: mars 2027"], "1 nov"))
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [
                src(
                    "plan",
                    loopback.url("/plan"),
                    adapter="page",
                    selector="main",
                    ignore=[r"Uppdaterad .*"],
                )
            ],
        }
    )
    [r] = await app.poll()
    assert r.new == 1
    loopback.add("/plan", page(["Utlysning A: mars 2027"], "2 nov"))  # only the ignored stamp
    clock.advance(hours=1)
    [r] = await app.poll()
    assert (r.new, r.updated) == (0, 0)
    loopback.add("/plan", page(["Utlysning A: april 2027", "Utlysning B: maj 2027"], "3 nov"))
    clock.advance(hours=1)
    [r] = await app.poll()
    assert r.new == 1
    newest = app.storage.list_items()[0]
    assert newest.title == "Ändrad sida: Utlysningsplan"
    assert "+ Utlysning B: maj 2027" in newest.summary
    assert "- Utlysning A: mars 2027" in newest.summary


async def test_an_unchanged_repoll_of_a_changed_page_changes_and_mails_nothing(
    make_app, loopback, clock
):
    """Issue 11.5: the poll after a change used to rename "Ändrad sida: …" back to the plain
    title, and that rename was an update (a notable title change) in the next digest."""
    page = "<html><head><title>Plan</title></head><body><main><p>{}</p></main></body></html>"
    loopback.add("/plan", page.format("Utlysning A: mars 2027"))
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [src("plan", loopback.url("/plan"), adapter="page", selector="main")],
        }
    )
    await app.poll()
    loopback.add("/plan", page.format("Utlysning A: april 2027"))
    clock.advance(hours=1)
    [r] = await app.poll()
    assert r.new == 1
    changed = app.storage.list_items()[0]
    for _ in range(2):
        clock.advance(hours=1)
        [r] = await app.poll()
        assert (r.new, r.updated, r.unchanged) == (0, 0, 1)
    again = app.storage.get_item(changed.id)
    assert again is not None
    assert (again.title, again.summary) == (changed.title, changed.summary)
    assert again.changed_at is None
    assert [h.kind for h in app.storage.item_history(changed.id)] == ["new"]


async def test_ical_calls_with_programme_mapping(make_app, loopback):
    ics = DATA / "shared_samples/interreg_no_kalender_event.ics"
    if not ics.exists():
        pytest.skip(f"sample missing: {ics}")
    loopback.add("/cal.ics", ics.read_bytes(), content_type="text/calendar")
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [
                src(
                    "cal",
                    loopback.url("/cal.ics"),
                    adapter="ical",
                    programmes={"Europe": "Interreg Europe"},
                )
            ],
        }
    )
    [r] = await app.poll()
    assert r.new == 1
    [item] = app.storage.list_items()
    assert item.programme == "Interreg Europe"
    assert item.opening is not None and item.opening.isoformat() == "2024-03-20T07:00:00+00:00"
    assert [d.isoformat() for d in item.deadlines] == ["2024-06-06T10:00:00+00:00"]
    assert item.status == "closed"


async def test_flood_of_new_items_is_held_not_mailed(make_app, loopback, clock):
    loopback.add(
        "/f.xml", feed(rss_item("1", "Första", "https://x/1")), content_type="application/rss+xml"
    )
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "email": {"flood_threshold": 5},
            "sources": [src("f", loopback.url("/f.xml"))],
        }
    )
    await app.poll()
    [first] = app.storage.list_items()
    assert first.baseline and not first.held  # the first poll is a silent baseline
    many = feed(*(rss_item(str(i), f"Nyhet {i}", f"https://x/{i}") for i in range(1, 30)))
    loopback.add("/f.xml", many, content_type="application/rss+xml")
    clock.advance(hours=1)
    [r] = await app.poll()
    assert r.new == 28
    assert any("held for the admin" in w for w in r.warnings)
    assert app.storage.held_counts() == {"f": 28}
    assert app.storage.release_held("f", now=clock()) == 28


async def test_a_new_sources_open_calls_reach_the_next_digest_once(make_app, loopback, clock):
    """Issue 11.6: a new source's first poll was wholly silent, so its open calls never
    reached a digest. Calls still open with a deadline ahead are announced; a closed call
    and news stay the silent baseline; the admin sees how many of each."""
    from notifications.delivery import DigestSender

    calls_feed = feed(
        rss_item(
            "open", "Utlysning: kompetens", "https://x/open", "Sista ansökningsdag 16 mars 2027"
        ),
        rss_item(
            "closed", "Utlysning: klimat", "https://x/closed", "Sista ansökningsdag 1 mars 2026"
        ),
        rss_item("none", "Utlysning utan datum", "https://x/none", "Mer information kommer"),
    )
    loopback.add("/calls.xml", calls_feed, content_type="application/rss+xml")
    loopback.add("/news.xml", GOOD, content_type="application/rss+xml")
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [
                src("news", loopback.url("/news.xml")),
                src("calls", loopback.url("/calls.xml"), kind="call"),
            ],
            "networks": [{"id": "n", "name": "N", "members": ["a@example.se"]}],
        }
    )
    await app.poll(["news"])
    sender = DigestSender(app)
    sender.run()  # the network's first digest: from now on only what arrives is news
    clock.advance(hours=2)
    [r] = await app.poll(["calls"])
    assert (r.new, r.announced, r.baselined) == (3, 1, 2)
    [logged] = app.storage.poll_history("calls")
    assert (logged["announced"], logged["baselined"]) == (1, 2)
    clock.advance(hours=1)
    [digest] = [o.digest for o in sender.run() if o.digest is not None]
    assert [e.title for e in digest.new] == ["Utlysning: kompetens"]
    clock.advance(days=1)
    [again] = sender.run()
    assert again.digest is None or not again.digest.new  # once


async def test_a_failed_detail_page_makes_a_partial_poll_and_is_read_again(
    make_app, loopback, clock
):
    """Issue 11.7: a call whose detail page failed was stored without status or deadline
    and the poll said ok. Now the item is marked incomplete, the poll is partial (with the
    error), source health says so, the page is read again on the next poll, and a stored
    call's known deadline is never wiped by a failed read."""
    rss = feed(
        rss_item(None, "Utlysning A", loopback.url("/utlysning.101.html")),
        rss_item(None, "Utlysning B", loopback.url("/utlysning.102.html")),
    )
    detail = "<html><body><main><h1>{t}</h1><ul><li>Öppen till 16 mars 2027</li></ul></main></body></html>"
    loopback.add("/tvv.xml", rss, content_type="application/rss+xml")
    loopback.add("/utlysning.101.html", detail.format(t="Utlysning A"))
    loopback.add("/utlysning.102.html", "unavailable", status=503)
    app = make_app(
        {
            "fetch": fetch_settings(loopback, retries=0),
            "sources": [src("tvv", loopback.url("/tvv.xml"), adapter="tillvaxtverket")],
        }
    )
    [r] = await app.poll()
    assert r.status.value == "partial" and r.incomplete == 1
    assert r.error is not None and r.error.code == "http_503"
    assert r.as_dict()["status"] == "partial" and r.as_dict()["error"]["code"] == "http_503"
    by_title = {i.title: i for i in app.storage.list_items()}
    b = by_title["Utlysning B"]
    assert b.incomplete is not None and "deadlines" in b.incomplete.missing
    assert by_title["Utlysning A"].incomplete is None
    health = app.storage.source_state("tvv")
    assert "1 item(s) stored without" in (health.warning or "")
    assert app.storage.poll_history("tvv")[0]["status"] == "partial"
    # The next poll reads B's page again; it answers now.
    loopback.add("/utlysning.102.html", detail.format(t="Utlysning B"))
    clock.advance(hours=1)
    [r] = await app.poll()
    assert r.status.value == "ok" and r.updated == 1
    b = app.storage.get_item(b.id)
    assert b is not None and b.incomplete is None and b.deadlines
    known = b.deadlines
    # A later failed read keeps what is known: unknown is not empty.
    loopback.add("/utlysning.102.html", "unavailable", status=503)
    clock.advance(hours=1)
    [r] = await app.poll()
    assert r.status.value == "partial" and r.updated == 0
    b = app.storage.get_item(b.id)
    assert b is not None and b.deadlines == known and b.incomplete is None
    assert app.storage.source_state("tvv").last_error_code is None  # a success, partly


def test_poll_json_cli_output(tmp_path, loopback, monkeypatch):
    from click.testing import CliRunner

    from tests.conftest import write_config
    from watcher.cli import main

    loopback.add("/f.xml", GOOD, content_type="application/rss+xml")
    cfg = write_config(
        tmp_path / "config.toml",
        {
            "watcher": {"database_url": f"sqlite:///{tmp_path / 'w.db'}"},
            "fetch": fetch_settings(loopback),
            "sources": [src("f", loopback.url("/f.xml")), src("bad", loopback.url("/missing"))],
        },
    )
    runner = CliRunner()
    res = runner.invoke(main, ["--config", str(cfg), "poll", "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.strip().splitlines()]
    by = {d["source"]: d for d in lines}
    assert by["f"] == {
        "source": "f",
        "status": "ok",
        "new": 2,
        "updated": 0,
        "unchanged": 0,
        "error": None,
        "announced": 0,  # a first poll: news items are its silent baseline
        "baselined": 2,
    }
    assert by["bad"]["status"] == "error" and by["bad"]["error"]["code"] == "http_404"
    res = runner.invoke(main, ["--config", str(cfg), "poll", "nope"])
    assert res.exit_code == 2 and "unknown source" in res.output


async def test_a_site_whose_robots_txt_fails_is_polled_and_its_health_says_so(make_app, loopback):
    loopback.add("/robots.txt", "down", status=503)
    loopback.add("/f.xml", GOOD, content_type="application/rss+xml")
    app = make_app(
        {
            "fetch": fetch_settings(loopback, respect_robots_txt=True),
            "sources": [src("f", loopback.url("/f.xml"))],
        }
    )
    [result] = await app.poll()
    assert result.status.value == "ok" and result.new == 2
    assert any("robots.txt" in w and "http_503" in w for w in result.warnings), result.warnings
    state = app.storage.source_state("f")
    assert state.warning is not None and "could not be read (http_503)" in state.warning


FT_SAMPLE = Path(__file__).parent / "data/sources/ft-portal/sample.json"
NATIONAL = feed(  # a national news page announcing a call of FT_SAMPLE
    rss_item(
        "vr-1",
        "Ny utlysning: HORIZON-MISS-2027-05-SOIL-01-two-stage om markhälsa",
        "https://vinnova.example/nyheter/markhalsa",
        "Svenska kommuner kan delta i levande laboratorier.",
    )
)


def ft_and_national(make_app: Any, loopback: LoopbackServer) -> Any:
    """An app with the F&T portal at /search and the national page at /nyheter.xml."""
    return make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [
                src("ft", loopback.url("/search"), adapter="ft-portal"),
                src("vinnova", loopback.url("/nyheter.xml")),
            ],
        }
    )


async def test_ft_portal_call_and_a_national_page_are_one_item(make_app, loopback, clock):
    """The same call on the F&T portal and announced on a national news feed: one item
    that keeps both source links."""
    loopback.add("/search", FT_SAMPLE.read_bytes(), content_type="application/json")
    loopback.add("/nyheter.xml", NATIONAL, content_type="application/rss+xml")
    app = ft_and_national(make_app, loopback)
    [ft] = await app.poll(["ft"])
    assert ft.status.value == "ok" and ft.new >= 1
    before = app.storage.count_items()
    [nat] = await app.poll(["vinnova"])
    assert nat.status.value == "ok" and nat.new == 1  # recognised, not stored as a new item
    assert app.storage.count_items() == before
    [item] = app.storage.list_items(ItemFilter(source="vinnova"))
    assert item.identifier == "HORIZON-MISS-2027-05-SOIL-01-two-stage"  # as the portal writes it
    assert {s.source_id for s in item.sources} == {"ft", "vinnova"}
    assert item.kind in ("call", "forthcoming_call") and len(item.deadlines) == 2
    clock.advance(hours=1)
    [again] = await app.poll(["vinnova"])
    assert (again.new, again.unchanged) == (0, 1)


async def test_a_call_new_on_two_sources_in_one_poll_is_one_item(make_app, loopback):
    """Both sources answer at the same moment, in one poll cycle, and neither has stored the
    call before: the second one's decision still sees the first one's item (decisions are
    made in the write transaction, in turn)."""
    both_asked = threading.Barrier(2, timeout=10)

    def together(body: bytes, ctype: str) -> Callable[[Any], Reply]:
        def answer(_request: Any) -> Reply:
            both_asked.wait()  # neither answers before the other has been asked
            return Reply(200, {"Content-Type": ctype}, body)

        return answer

    loopback.add_handler("/search", together(FT_SAMPLE.read_bytes(), "application/json"))
    loopback.add_handler("/nyheter.xml", together(NATIONAL.encode(), "application/rss+xml"))
    app = ft_and_national(make_app, loopback)
    results = await app.poll()
    assert all(r.status.value == "ok" for r in results), results
    calls = [
        it
        for it in app.storage.list_items(ItemFilter())
        if "HORIZON-MISS-2027-05-SOIL-01-TWO-STAGE" in f"{it.identifier} {it.title}".upper()
    ]
    assert len(calls) == 1, [(c.title, [s.source_id for s in c.sources]) for c in calls]
    [call] = calls
    assert {s.source_id for s in call.sources} == {"ft", "vinnova"}
    # Whichever answered first, the record is the portal's.
    assert call.source_id == "ft" and call.title.startswith("Living labs")
    assert call.identifier == "HORIZON-MISS-2027-05-SOIL-01-two-stage"
    assert len(call.deadlines) == 2


async def test_the_call_takes_over_a_news_item_that_named_it_first(make_app, loopback, clock):
    """The national news page is polled first and stored; the portal's call, polled later,
    is recognised by the identifier the news title names, and its record replaces the
    news item's (which stays one of the call's sources)."""
    loopback.add("/search", FT_SAMPLE.read_bytes(), content_type="application/json")
    loopback.add("/nyheter.xml", NATIONAL, content_type="application/rss+xml")
    app = ft_and_national(make_app, loopback)
    [nat] = await app.poll(["vinnova"])
    assert nat.new == 1
    [news] = app.storage.list_items(ItemFilter(source="vinnova"))
    assert news.identifier is None and not news.deadlines
    [ft] = await app.poll(["ft"])
    assert ft.status.value == "ok"
    call = app.storage.get_item(news.id)
    assert call is not None
    assert call.source_id == "ft" and call.title.startswith("Living labs")
    assert call.identifier == "HORIZON-MISS-2027-05-SOIL-01-two-stage"
    assert len(call.deadlines) == 2
    assert {s.source_id for s in call.sources} == {"ft", "vinnova"}
    history = app.storage.item_history(news.id)
    assert any("the record now comes from ft" in str(h.changes) for h in history)
    # Tagged from the record as stored, as a re-tag with the same rules would tag it.
    expected = app.classifier(call, None)
    assert call.tag_ids("area") == sorted(t.tag for t in expected.tags if t.kind == "area")
    assert call.relevant == expected.relevant
    # Later polls of both keep one item; the news source no longer rewrites the record.
    clock.advance(hours=1)
    await app.poll()
    assert app.storage.get_item(news.id).title.startswith("Living labs")
    assert len(app.storage.list_items(ItemFilter(source="vinnova"))) == 1


async def test_rss_deadline_and_opening_found_in_the_text(make_app, loopback, clock):
    body = feed(
        rss_item(
            "c1",
            "Utlysning om kompetensförsörjning",
            "https://x.example/c1",
            "<p>Öppnar 1 februari 2027. Sista ansökningsdag: 16 mars 2027 kl. 16.00.</p>",
        ),
        rss_item("n1", "Nyhet utan datum", "https://x.example/n1", "Inget datum här."),
    )
    loopback.add("/f.xml", body, content_type="application/rss+xml")
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [src("f", loopback.url("/f.xml"), kind="call")],
        }
    )
    await app.poll()
    by = {i.title: i for i in app.storage.list_items()}
    call = by["Utlysning om kompetensförsörjning"]
    assert [d.isoformat() for d in call.deadlines] == ["2027-03-16T15:00:00+00:00"]
    assert call.opening is not None and call.opening.isoformat() == "2027-01-31T23:00:00+00:00"
    assert call.status == "forthcoming" and call.kind == "forthcoming_call"
    assert by["Nyhet utan datum"].deadlines == ()


async def test_status_follows_the_calendar_while_the_source_answers_304(make_app, loopback, clock):
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:u1\r\n"
        "SUMMARY:Europe: Call 9\r\nDTSTART:20261103T080000Z\r\nDTEND:20261110T100000Z\r\n"
        "DTSTAMP:20261101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    loopback.add("/c.ics", ics, content_type="text/calendar", etag='"v1"')
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [src("c", loopback.url("/c.ics"), adapter="ical")],
        }
    )
    await app.poll()  # T0 = 2 November: opens 3 November
    [item] = app.storage.list_items()
    assert (item.status, item.kind) == ("forthcoming", "forthcoming_call")
    clock.advance(days=2)
    [r] = await app.poll()
    assert r.status.value == "not_modified"
    app.refresh_statuses()  # as the scheduler does every 10 minutes
    [item] = app.storage.list_items()
    assert (item.status, item.kind) == ("open", "call")
    assert item.changed_at == clock.current  # a call opening is news for the digests
    clock.advance(days=30)
    await app.poll()
    app.refresh_statuses()
    assert [i.title for i in app.storage.list_items(ItemFilter(status="closed"))] == [
        "Europe: Call 9"
    ]
    history = app.storage.item_history(item.id)
    assert [c["new"] for h in history for c in h.changes if c.get("field") == "status"] == [
        "open",
        "closed",
    ]
    loopback.add(
        "/c.ics", ics + "\r\n", content_type="text/calendar", etag='"v2"'
    )  # a full re-read
    clock.advance(hours=1)
    [r] = await app.poll()
    assert (r.updated, r.unchanged) == (0, 1)  # the status change is not reported twice


async def test_one_broken_calendar_event_does_not_lose_the_others(make_app, loopback):
    def event(uid: str, start: str) -> str:
        return (
            f"BEGIN:VEVENT\r\nUID:{uid}\r\nSUMMARY:Europe: {uid}\r\nDTSTART:{start}\r\n"
            "DTEND:20270110T100000Z\r\nDTSTAMP:20261101T000000Z\r\nEND:VEVENT\r\n"
        )

    ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + event("good", "20261201T080000Z")
    ics += event("broken", "garbage") + "END:VCALENDAR\r\n"
    loopback.add("/c.ics", ics, content_type="text/calendar")
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [src("c", loopback.url("/c.ics"), adapter="ical")],
        }
    )
    [r] = await app.poll()
    assert (r.status.value, r.new) == ("ok", 1)
    assert [i.title for i in app.storage.list_items()] == ["Europe: good"]


async def test_two_polls_of_one_source_at_once_are_one_poll(make_app, loopback, tmp_path):
    """Issue 12.4: the admin's "Hämta nu" during a scheduled poll, or a CLI poll beside the
    service, polled one source twice at once; one failed with a raw IntegrityError. Now the
    second is refused while the first runs, across processes (a second App on the same
    database stands for a second process), and the first stores its items."""
    from watcher.app import App
    from watcher.types import PollStatus

    asked, gate = threading.Event(), threading.Event()

    def held(_request):
        asked.set()
        gate.wait(10)
        return Reply(200, {"Content-Type": "application/rss+xml"}, GOOD.encode())

    loopback.add_handler("/feed.xml", held)
    app = make_app(
        {"fetch": fetch_settings(loopback), "sources": [src("feed", loopback.url("/feed.xml"))]}
    )
    other = App.from_path(app.config.path, clock=app.clock)  # another process, same database
    try:
        first = asyncio.create_task(app.poll(["feed"]))
        await asyncio.to_thread(asked.wait, 10)
        for poller in (app, other):
            [second] = await poller.poll(["feed"])
            assert second.status == PollStatus.SKIPPED, second
            assert second.error is not None and second.error.code == "poll_in_progress"
        gate.set()
        [done] = await first
        assert (done.status, done.new) == (PollStatus.OK, 2)
        assert app.storage.count_items() == 2
        assert app.storage.source_state("feed").consecutive_failures == 0  # a skip is no failure
        [again] = await other.poll(["feed"])  # the lock is gone with the poll
        assert again.status in (PollStatus.OK, PollStatus.NOT_MODIFIED)
    finally:
        gate.set()
        other.close()


def test_a_new_record_someone_else_stored_meanwhile_is_skipped_not_an_error(storage):
    """Inserts are conflict-safe: a poll that races another poll of the same source (its
    lock expired, say) skips the records the other stored instead of failing."""
    from tests.builders import CALL, SRC, items
    from watcher.types import NewItem, PollResult, PollStatus

    [item] = items(SRC, CALL)
    result = PollResult(SRC.id, PollStatus.OK, new=1)
    first = storage.apply(SRC.id, [NewItem(item)], result, T0)
    second = storage.apply(SRC.id, [NewItem(item)], result, T0)
    assert len(first.new_ids) == 1 and second.new_ids == ()
    assert storage.count_items() == 1


@pytest.mark.parametrize("calls", ["one poll of every source", "one poll per source"])
async def test_polls_waiting_for_their_write_are_bounded(make_app, loopback, monkeypatch, calls):
    """When writing lags (a first poll of thousands of sources), parsed items do not pile up
    in memory: at most ``MAX_WAITING`` polls are between their response and their write; the
    rest wait with their response unparsed (never holding a place while they wait for a
    busy host). The bound is the event loop's writer's, so it holds as well for the
    scheduler, which polls each due source on its own. Here the writer holds every write
    until as many polls as the bound wait for it, then lets them all through."""
    from watcher.storage import writer
    from watcher.storage.writer import BatchWriter

    monkeypatch.setattr(writer, "MAX_WAITING", 3)

    class HeldWriter(BatchWriter):
        held = 0
        peak = 0
        opened = asyncio.Event()

        async def run(self, job: Any) -> Any:
            HeldWriter.held += 1
            HeldWriter.peak = max(HeldWriter.peak, HeldWriter.held)
            if HeldWriter.held >= 3:
                HeldWriter.opened.set()
            await HeldWriter.opened.wait()
            try:
                return await super().run(job)
            finally:
                HeldWriter.held -= 1

    for n in range(12):
        item = rss_item(f"k{n}", f"Utlysning {n}", f"https://esf.example/{n}")
        loopback.add(f"/f{n}.xml", feed(item), content_type="application/rss+xml")
    app = make_app(
        {
            "fetch": fetch_settings(loopback, global_concurrency=1),
            "sources": [src(f"s{n}", loopback.url(f"/f{n}.xml")) for n in range(12)],
        }
    )
    concurrency = app.config.fetch.global_concurrency
    app._writers[asyncio.get_running_loop()] = HeldWriter(
        app.storage, global_concurrency=concurrency
    )
    if calls == "one poll of every source":
        results = await app.poll()
    else:
        polls = await asyncio.gather(*(app.poll([f"s{n}"]) for n in range(12)))
        results = [r for one in polls for r in one]
    assert [r.status.value for r in results] == ["ok"] * 12
    assert HeldWriter.peak == 3  # max(MAX_WAITING, global_concurrency)


def test_the_bound_on_waiting_polls_is_what_can_be_in_flight_at_once():
    """Every response the fetch limit lets be in flight at once may land together and find
    a place at the writer, and no more than that (nor fewer than ``MAX_WAITING``)."""
    from watcher.storage.writer import MAX_WAITING, waiting_bound

    assert waiting_bound(1) == MAX_WAITING
    assert waiting_bound(MAX_WAITING + 100) == MAX_WAITING + 100


class _FetchesAtOnce:
    """The most rss fetches under way at once (``peak``): the adapter's fetch, counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from sources.rss import RssAdapter

        self.active = self.peak = 0
        fetch = RssAdapter.fetch

        async def counted(adapter: Any, http: Any, ctx: Any) -> Any:
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                await asyncio.sleep(0)  # every poll that is under way gets here first
                return await fetch(adapter, http, ctx)
            finally:
                self.active -= 1

        monkeypatch.setattr(RssAdapter, "fetch", counted)


async def test_a_cycle_starts_polls_of_a_host_only_as_it_has_room(make_app, loopback, monkeypatch):
    """Of a cycle's many sources on one host, only as many polls as the host's concurrency
    are under way at once (adapter made, request built, response held): the others wait as
    bare tasks, so a cycle of 2,000 sources holds 200 polls' state, not 2,000. A poll gives
    its place back however it ends: an error, a 304, or items written."""
    under_way = _FetchesAtOnce(monkeypatch)
    for n in range(12):
        item = rss_item(f"k{n}", f"Utlysning {n}", f"https://esf.example/{n}")
        if n % 4 == 3:
            loopback.add(f"/f{n}.xml", "trasig", status=500)
        else:
            etag = '"v1"' if n % 4 == 2 else None
            loopback.add(f"/f{n}.xml", feed(item), content_type="application/rss+xml", etag=etag)
    app = make_app(
        {
            "fetch": fetch_settings(loopback, per_host_concurrency=1),
            "sources": [src(f"s{n}", loopback.url(f"/f{n}.xml")) for n in range(12)],
        }
    )
    first = await asyncio.wait_for(app.poll(), 60)
    assert [r.status.value for r in first] == ["ok", "ok", "ok", "error"] * 3
    assert under_way.peak == 1  # without lanes, all twelve fetch at once (waiting in the client)
    again = await asyncio.wait_for(app.poll(), 60)
    assert [r.status.value for r in again] == ["ok", "ok", "not_modified", "error"] * 3
    assert under_way.peak == 1


async def test_a_cycle_runs_at_most_as_many_polls_as_requests_at_once(
    make_app, loopback, monkeypatch
):
    """Sources on many hosts: all lanes together run ``global_concurrency`` polls at once,
    not one per host (a cycle of 2,000 sources on 2,000 hosts would start them all)."""
    under_way = _FetchesAtOnce(monkeypatch)
    loopback.add("/f.xml", GOOD, content_type="application/rss+xml")
    # Six hosts: the loopback server's and five other loopback addresses (refused).
    urls = [loopback.url("/f.xml")]
    urls += [f"http://127.0.0.{k}:{loopback.port}/f.xml" for k in range(2, 7)]
    settings = fetch_settings(loopback, global_concurrency=2)
    settings["allow_private_networks"] = [f"127.0.0.0/8:{loopback.port}"]
    app = make_app({"fetch": settings, "sources": [src(f"s{n}", u) for n, u in enumerate(urls)]})
    results = await asyncio.wait_for(app.poll(), 60)
    assert [r.source_id for r in results] == [f"s{n}" for n in range(6)]
    assert results[0].status.value == "ok"
    assert [r.status.value for r in results[1:]] == ["error"] * 5  # nothing listens there
    assert under_way.peak == 2


async def test_a_cycle_that_will_parse_starts_its_workers_before_the_first_response(
    make_app, loopback
):
    """A cycle with sources never polled (or without validators) starts the worker
    processes as it starts, not when its first response is parsed, and without holding its
    first requests back while it reads the rules the workers are sent; one where every
    source can answer "not modified" starts none."""
    from concurrent.futures import ThreadPoolExecutor

    from watcher.polling import Poller

    request_in = threading.Event()  # the server has seen a feed request
    warm_up_sent = threading.Event()

    class Recording(ThreadPoolExecutor):
        def __init__(self) -> None:
            super().__init__(max_workers=1)
            self.calls: list[str] = []

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(fn.__name__)
            if fn.__name__ == "warm_up":
                warm_up_sent.set()
            return super().submit(fn, *args, **kwargs)

    class SlowRules:
        """The classifier, whose rules are read only once a request has reached the server:
        a start that read them on the event loop would hold every request back."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.read_after_a_request: list[bool] = []

        @property
        def version(self) -> str:
            return str(self.inner.version)

        def __call__(self, item: Any, source: Any) -> Any:
            return self.inner(item, source)

        def spec(self) -> Any:
            self.read_after_a_request.append(request_in.wait(10))
            return self.inner.spec()

    def feed_handler(request: Any) -> Reply:
        request_in.set()
        if request.header("if-none-match") == '"v1"':
            return Reply(304, {"ETag": '"v1"'})
        # No answer before the workers were asked to start (the start does not wait for one).
        if not warm_up_sent.wait(10):
            return Reply(503)
        return Reply(200, {"Content-Type": "application/rss+xml", "ETag": '"v1"'}, GOOD.encode())

    for name in ("a", "b"):
        loopback.add_handler(f"/{name}.xml", feed_handler)
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [src(n, loopback.url(f"/{n}.xml")) for n in ("a", "b")],
        }
    )
    rules = SlowRules(app.classifier)

    async def cycle(executor: Recording) -> list[str]:
        http = app.new_http_client()
        poller = Poller(
            storage=app.storage,
            http=http,
            tz=app.config.tz,
            classifier=rules,
            executor=executor,
        )
        try:
            results = await poller.poll_many(app.sources(), app.now)
        finally:
            await http.aclose()
            executor.shutdown()
        return [r.status.value for r in results]

    first = Recording()
    assert await cycle(first) == ["ok", "ok"]
    assert first.calls == ["warm_up", "process_packed", "process_packed"]
    assert rules.read_after_a_request[0] is True
    again = Recording()
    assert await cycle(again) == ["not_modified", "not_modified"]
    assert again.calls == []


async def test_a_worker_process_parses_and_its_items_stay_packed_until_written(
    make_app, loopback, monkeypatch, tmp_path
):
    """With worker processes, a poll's parsed, tagged items come back pickled and are
    unpacked only in the poll's write (a first poll of thousands of sources has hundreds
    waiting for the writer); what is stored and its tags are as without workers, and a
    feed that cannot be parsed is an error on its own source."""
    from watcher import polling
    from watcher.pipeline.work import Processed

    seen: list[type] = []
    unpack = polling.unpack

    def spy(processed: Any) -> Any:
        seen.append(type(processed))
        return unpack(processed)

    monkeypatch.setattr(polling, "unpack", spy)
    loopback.add("/good.xml", GOOD, content_type="application/rss+xml")
    loopback.add("/bad.xml", b"<html><body>not a feed</html>", content_type="text/html")

    def tagged(app: Any) -> dict[str, list[tuple[str, str]]]:
        found = {}
        for listed in app.storage.list_items(ItemFilter(source="good")):
            item = app.storage.get_item(listed.id)
            found[item.title] = sorted((t.kind, t.tag) for t in item.tags)
        return found

    outcomes = []
    for workers in (1, 0):
        app = make_app(
            {
                "watcher": {
                    "workers": workers,
                    "database_url": f"sqlite:///{tmp_path}/{workers}.db",
                },
                "fetch": fetch_settings(loopback),
                "sources": [
                    src("good", loopback.url("/good.xml")),
                    src("bad", loopback.url("/bad.xml")),
                ],
            }
        )
        assert (app.executor is not None) == bool(workers)
        results = {r.source_id: r for r in await app.poll()}
        assert (results["good"].status.value, results["good"].new) == ("ok", 2)
        assert results["bad"].error is not None and results["bad"].error.code == "invalid_feed"
        outcomes.append(tagged(app))
    assert seen == [bytes, Processed]  # packed from the worker; as it is in this process
    with_workers, here = outcomes
    assert with_workers == here
    assert ("theme", "arbetsmarknad") in with_workers["Utlysning: kompetensförsörjning"]


async def test_worker_processes_start_only_for_a_round_that_parses(
    make_app, tmp_path: Path, loopback: LoopbackServer
):
    """The worker pool is made when the first task goes to it: a round in which every source
    answers "not modified" (a new `watcher poll` on the same database) starts no worker
    and no resource tracker; a round with something to parse starts them."""
    import multiprocessing

    loopback.add("/good.xml", GOOD, content_type="application/rss+xml", etag='"g"')
    config = {
        "watcher": {"workers": 1, "database_url": f"sqlite:///{tmp_path}/pool.db"},
        "fetch": fetch_settings(loopback),
        "sources": [src("good", loopback.url("/good.xml"))],
    }
    first = make_app(config)
    assert first.executor is not None and not first.executor.started
    [r] = await first.poll()
    assert (r.status.value, r.new) == ("ok", 2)
    assert first.executor.started
    first.close()
    assert multiprocessing.active_children() == []

    again = make_app(config)
    [r] = await again.poll()
    assert r.status.value == "not_modified"
    assert again.executor is not None and not again.executor.started
    assert multiprocessing.active_children() == []
    again.close()  # shutting down a pool never made is a no-op


def test_polling_processes_keep_their_start_out_of_the_collectors_way(make_app, loopback):
    """The worker processes start with ``settle_heap``: the collector runs after 50,000
    allocations, not Python's 700 (a first poll of 2,000 sources spent 1.1 s of its main
    process's CPU collecting); only `watcher poll`, which ends after its polls, also
    freezes what it loaded."""
    import gc

    from watcher.pipeline.work import GC_THRESHOLDS, settle_heap

    app = make_app({"watcher": {"workers": 1}, "sources": []})
    assert app.executor is not None
    threshold, frozen = app.executor.submit(_collector_state).result()
    assert threshold == GC_THRESHOLDS and frozen == 0
    settle_heap()  # `watcher run`
    assert gc.get_threshold() == GC_THRESHOLDS and gc.get_freeze_count() == 0
    settle_heap(freeze=True)  # `watcher poll`
    assert gc.get_freeze_count() > 0


def _collector_state() -> tuple[tuple[int, int, int], int]:
    import gc

    return gc.get_threshold(), gc.get_freeze_count()


_WORKER_SCRIPT = """
import logging, multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor

from watcher.pipeline.work import start_worker


class Kept:
    def __del__(self):
        sys.stderr.write("[torn down]")


kept = []


def speak():
    kept.append(Kept())  # a teardown of the worker's modules would collect them
    print("[said on stdout]", end="")  # stdout is a pipe: buffered, no newline
    sys.stderr.write("[said on stderr]")
    logging.getLogger("worker").warning("[logged]")
    return os.getpid()


def leave():
    sys.exit(3)  # in a task: SystemExit, as anywhere else


def broken():
    raise RuntimeError("[cannot unpickle]")


class Broken:
    def __reduce__(self):
        return (broken, ())


def pool():
    return ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker
    )


if __name__ == "__main__":
    ok = pool()
    pid = ok.submit(speak).result()
    left = ok.submit(leave).exception()
    assert ok.submit(speak).result() == pid  # the same worker goes on
    [worker] = multiprocessing.active_children()
    ok.shutdown(wait=True)
    print(f"\\n[worker {worker.pid == pid} exit {worker.exitcode} task {left!r}]")
    crashing = pool()
    crashing.submit(speak).result()
    [worker] = multiprocessing.active_children()
    failed = crashing.submit(speak, Broken()).exception()  # the worker dies unpickling it
    crashing.shutdown(wait=True)  # its manager has reaped the worker
    print(f"[crashed {type(failed).__name__} exit {worker.exitcode}]")
"""


def test_a_worker_process_ends_without_a_teardown_and_keeps_what_it_wrote(tmp_path: Path):
    """A worker process ends at once when its pool stops it (``start_worker``): `watcher
    poll` waits for its workers to end before it may, and their interpreter teardown took
    40 to 100 ms. What a worker wrote is still flushed, it ends with status 0, one that
    crashed with 1, and ``sys.exit`` in a task is still ``SystemExit``."""
    import subprocess
    import sys

    script = tmp_path / "pool.py"
    script.write_text(_WORKER_SCRIPT, encoding="utf-8")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "[said on stdout]" in done.stdout
    assert "[worker True exit 0 task SystemExit(3)]" in done.stdout
    assert "[said on stderr]" in done.stderr and "[logged]" in done.stderr
    # A worker that crashed ends with its status, its traceback printed.
    assert done.stdout.rstrip().endswith("[crashed BrokenProcessPool exit 1]")
    assert "RuntimeError: [cannot unpickle]" in done.stderr
    assert "[torn down]" not in done.stderr
