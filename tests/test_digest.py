"""What goes into a network's digest, and how it is rendered (Swedish, English, escaping)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest

from notifications.delivery import run_digests
from notifications.digest import Digest, build_digest, fold_changes
from notifications.email import Sender, build_message, list_id
from notifications.render import format_datetime, render_digest
from notifications.transports import FileTransport
from tests.conftest import T0
from tests.digest_builders import ItemBuilder
from watcher.config import Config
from watcher.dates import from_iso
from watcher.exceptions import PermanentDeliveryError
from watcher.storage import Storage
from watcher.storage.deliveries import NotableChange


def net(**kw: Any) -> dict[str, Any]:
    return {"id": "n", "name": "Nätverket", "members": ["a@kommun.se"], **kw}


@pytest.fixture
def world(make_app, clock):
    def build(*networks: dict[str, Any]) -> tuple[Any, ItemBuilder]:
        app = make_app({"networks": list(networks) or [net()]})
        return app, ItemBuilder(app.storage, clock)

    return build


def titles(entries) -> list[str]:
    return [e.title for e in entries]


def days(clock, n: float):
    return clock() + timedelta(days=n)


def test_first_digest_covers_what_is_open_or_forthcoming_now(world, clock):
    app, items = world()
    items.add("open", deadlines=[days(clock, 20)], baseline=True)
    items.add("soon", status="forthcoming", deadlines=[days(clock, 60)], baseline=True)
    items.add("closed", status="closed", baseline=True)
    items.add("passed", status="open", deadlines=[days(clock, -1)], baseline=True)
    items.add("news", kind="news", status=None, baseline=True)
    items.add("held", deadlines=[days(clock, 20)], held=True)
    d = build_digest(app, "n", clock())
    assert d.first and titles(d.new) == ["Utlysning open", "Utlysning soon"]  # by deadline
    assert d.updated == ()


def test_a_digest_needs_only_config_storage_and_the_clock(world, clock):
    """Building a digest asks for a ``notifications.ports.Host``, not the whole ``App``:
    anything with a config, a storage and ``now()`` will do, and ``now`` is its clock."""
    app, items = world()
    items.add("open", deadlines=[days(clock, 20)], baseline=True)

    @dataclass(frozen=True)
    class Plain:
        config: Config
        storage: Storage

        def now(self) -> datetime:
            return clock()

    d = build_digest(Plain(app.config, app.storage), "n")
    assert titles(d.new) == ["Utlysning open"] and d.window_end == clock()


def test_later_digests_list_new_and_updated_since_the_last(world, clock):
    app, items = world()
    a = items.add("a", deadlines=[days(clock, 30)], baseline=True)
    run_digests(app)
    clock.advance(days=1)
    items.add("b", deadlines=[days(clock, 10)])
    items.add("base", deadlines=[days(clock, 10)], baseline=True)  # a new source's first poll
    items.add("news", kind="news", status=None)
    items.change(a, deadlines=[days(clock, 45)])
    clock.advance(hours=1)
    d = build_digest(app, "n", clock())
    assert not d.first
    assert titles(d.new) == ["Utlysning b", "Utlysning news"]
    [upd] = d.updated
    assert upd.title == "Utlysning a"
    [note] = upd.changes
    assert note.field == "deadlines"
    # Said as a person would, in local time, in the email's text and HTML alike.
    old, new = (format_datetime(from_iso(v[0]), "sv") for v in (note.old, note.new))
    moved = f"Sista ansökningsdag flyttad: {old} → {new}"
    rendered = render_digest(d)
    assert moved in rendered.text and moved in rendered.html
    assert "T23:59" not in rendered.text and "+00:00" not in rendered.text
    run_digests(app)
    clock.advance(hours=1)
    assert build_digest(app, "n", clock()).is_empty  # each thing is reported once


def test_held_items_arrive_once_released(world, clock):
    app, items = world()
    run_digests(app)  # the network's first (empty) digest
    clock.advance(hours=1)
    items.add("flood", deadlines=[days(clock, 30)], held=True)
    clock.advance(hours=1)
    assert build_digest(app, "n", clock()).is_empty
    run_digests(app)
    app.storage.release_held(now=clock())
    clock.advance(hours=1)
    assert titles(build_digest(app, "n", clock()).new) == ["Utlysning flood"]


def test_network_areas_themes_sources_kinds_and_relevance(world, clock):
    app, items = world(
        net(id="arb", areas=["fonder-program"], themes=["arbetsmarknad", "utbildning"]),
        net(id="sam", areas=["all"], themes=["samhallsbyggnad"]),
        net(id="esf", sources=["esf"], kinds=["call"]),
    )
    dl = [days(clock, 20)]
    items.add("x", deadlines=dl, baseline=True, areas=["fonder-program"], themes=["utbildning"])
    items.add("y", deadlines=dl, baseline=True, areas=["paverkan"], themes=["samhallsbyggnad"])
    items.add("z", deadlines=dl, baseline=True, source="esf", areas=["kompetens"], themes=[])
    items.add("w", deadlines=dl, baseline=True, relevant=False, themes=["samhallsbyggnad"])
    items.add("u", deadlines=dl, baseline=True, areas=[], themes=[])
    got = {n: titles(build_digest(app, n, clock()).new) for n in ("arb", "sam", "esf")}
    assert got == {
        "arb": ["Utlysning x"],
        "sam": ["Utlysning y"],
        "esf": ["Utlysning z"],
    }


def test_grouped_by_area_and_closing_soon(world, clock):
    app, items = world()
    items.add("late", deadlines=[days(clock, 40)], baseline=True, areas=["fonder-program"])
    items.add("early", deadlines=[days(clock, 3)], baseline=True, areas=["fonder-program"])
    items.add("p", deadlines=[days(clock, 5)], baseline=True, areas=["paverkan", "partners"])
    items.add("none", deadlines=[], status="forthcoming", baseline=True, areas=["partners"])
    d = build_digest(app, "n", clock())
    groups = [(area, titles(es)) for area, es in d.groups("new")]
    assert groups == [
        ("fonder-program", ["Utlysning early", "Utlysning late"]),
        ("paverkan", ["Utlysning p"]),
        ("partners", ["Utlysning none"]),
    ]
    assert titles(d.closing_soon) == ["Utlysning early", "Utlysning p"]


def test_several_deadlines_show_the_next_one(world, clock):
    app, items = world()
    items.add("multi", deadlines=[days(clock, -5), days(clock, 6), days(clock, 90)], baseline=True)
    [e] = build_digest(app, "n", clock()).new
    assert e.deadline == days(clock, 6)
    [soon] = build_digest(app, "n", clock()).closing_soon
    assert soon.item_id == e.item_id


def test_fold_changes_keeps_first_old_and_last_new():
    t = T0
    chs = [
        NotableChange(1, 9, t, "s", ({"field": "status", "old": "forthcoming", "new": "open"},)),
        NotableChange(2, 9, t, "s", ({"field": "status", "old": "open", "new": "closed"},)),
        NotableChange(3, 9, t, "s", ({"field": "title", "old": "A", "new": "B"},)),
        NotableChange(4, 9, t, "s", ({"field": "title", "old": "B", "new": "A"},)),
        NotableChange(5, 9, t, "s", ({"field": "summary", "old": "x", "new": "y"},)),
    ]
    assert [(n.field, n.old, n.new) for n in fold_changes(chs)] == [
        ("status", "forthcoming", "closed")
    ]


def test_payload_round_trip_renders_the_same(world, clock):
    app, items = world()
    items.add("a", deadlines=[days(clock, 3)], baseline=True, summary="Rad ett\nRad två")
    d = build_digest(app, "n", clock())
    again = Digest.from_payload(d.to_payload())
    assert again == d
    r1, r2 = render_digest(d), render_digest(again)
    assert r1.text.replace(r1.placeholder, "") == r2.text.replace(r2.placeholder, "")


def test_one_bad_item_never_stops_a_digest(world, clock, monkeypatch):
    import notifications.digest as digest_mod

    app, items = world()
    good = items.add("good", deadlines=[days(clock, 20)], baseline=True)
    bad = items.add("bad", deadlines=[days(clock, 21)], baseline=True)
    real = digest_mod.make_entry

    def flaky(item, *a: Any, **k: Any):
        if item.id == bad:
            raise ValueError("unreadable")
        return real(item, *a, **k)

    monkeypatch.setattr(digest_mod, "make_entry", flaky)
    d = build_digest(app, "n", clock())
    assert [e.item_id for e in d.new] == [good] and d.skipped >= 1
    assert "kunde inte läsas" in render_digest(d).text


HOSTILE = 'Utlysning <script>alert("x")</script>\x00\x1b & "citat"\r\nBcc: evil@example.com'


def test_untrusted_text_is_escaped_and_never_reaches_a_header(world, clock, tmp_path):
    app, items = world(net(name="Nät\r\nBcc: evil@example.com"))
    items.add(
        "h",
        HOSTILE,
        deadlines=[days(clock, 3)],
        baseline=True,
        link="javascript:alert(1)",
        summary="<img src=x onerror=alert(1)>",
        programme="P\r\nX-Evil: 1",
    )
    [o] = run_digests(app)
    assert o.sent == 1
    [eml] = (tmp_path / "outbox").glob("*.eml")
    raw = eml.read_bytes()
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg.get_all("Bcc") is None and msg.get_all("X-Evil") is None
    assert "\n" not in msg["Subject"] and "\r" not in msg["List-Id"]
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "javascript:" not in html
    assert "\x00" not in html and "\x1b" not in html
    text = msg.get_body(("plain",)).get_content()
    assert 'Utlysning <script>alert("x")</script> & "citat" Bcc: evil@example.com' in text


def test_english_network_and_swedish_default(world, clock):
    app, items = world(net(id="sv"), net(id="en", language="en"))
    items.add("a", deadlines=[days(clock, 3)], baseline=True)
    sv = render_digest(build_digest(app, "sv", clock()))
    en = render_digest(build_digest(app, "en", clock()))
    assert sv.subject == "Nätverket: 1 nya – 2 november 2026"
    assert "Stänger snart" in sv.html and "Sista dag" in sv.text
    assert en.subject == "Nätverket: 1 new – 2 November 2026"
    assert "Closing soon" in en.html and "Deadline" in en.text


def test_dates_are_shown_in_stockholm_time():
    # 08:00 UTC is 09:00 in Stockholm (CET)
    assert format_datetime(T0) == "2 november 2026 kl. 09:00"
    assert format_datetime(T0.replace(hour=22, minute=59), "en") == "2 November 2026"


def test_bad_recipient_address_is_a_permanent_failure_of_that_delivery():
    sender = Sender.parse("EU-bevakning <eu@goteborgsregionen.se>")
    kw = dict(
        sender=sender,
        subject="s",
        html="<p>h</p>",
        text="t",
        message_id="<x@y>",
        list_id=list_id("n", "N", sender.domain),
        unsubscribe_url="https://x.se/u/1",
        date=T0,
    )
    with pytest.raises(PermanentDeliveryError):
        build_message(to="a@x.se\r\nBcc: evil@example.com", **kw)
    with pytest.raises(PermanentDeliveryError):
        build_message(to="Anna <a@x.se>", **kw)
    ok = build_message(to="a@x.se", **kw)
    assert ok["To"] == "a@x.se"


def test_file_transport_writes_each_message_once(tmp_path):
    sender = Sender.parse("EU <eu@x.se>")
    msg = build_message(
        sender=sender,
        to="a@x.se",
        subject="s",
        html="<p>h</p>",
        text="t",
        message_id="<digest.n.1@x.se>",
        list_id=list_id("n", "N", "x.se"),
        unsubscribe_url="https://x.se/u/1",
        date=T0,
    )
    t = FileTransport(tmp_path / "outbox")
    t.send(msg, sender.address, "a@x.se")
    t.send(msg, sender.address, "a@x.se")
    files = list((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == ["digest.n.1_x.se.eml"]
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in files[0].read_bytes()


def test_a_retag_never_makes_an_old_item_new(world, clock):
    """An item stored before the last digest that gains the network's tags later (the rules
    changed) is not "new" in the next digest."""
    app, items = world(net(id="sam", areas=["all"], themes=["samhallsbyggnad"]))
    run_digests(app)  # the network's first digest
    clock.advance(hours=1)
    items.add(
        "gammal", deadlines=[days(clock, 30)], areas=["fonder-program"], themes=["arbetsmarknad"]
    )
    clock.advance(days=3)
    run_digests(app)  # not the network's themes: nothing to send
    clock.advance(days=1)
    [old] = [i for i in app.storage.list_items() if i.title == "Utlysning gammal"]
    from watcher.types import Classification, Tag

    app.storage.set_tags(
        old.id,
        Classification(
            (Tag("area", "fonder-program", "r"), Tag("theme", "samhallsbyggnad", "r2")), True
        ),
        clock(),
        "v2",
    )
    assert build_digest(app, "sam", clock()).new == ()


def sent_titles(outcomes) -> tuple[list[str], list[str]]:
    [o] = outcomes
    if o.digest is None:
        return [], []
    return titles(o.digest.new), titles(o.digest.updated)


def test_a_clock_moved_back_loses_no_item_and_repeats_none(world, clock):
    """Issue 12.1: after the wall clock moved back two hours, the items polled then were
    never mailed (digests selected by first-seen time with a one-hour look-back)."""
    app, items = world()
    run_digests(app)  # the network's first digest
    clock.advance(days=1)
    a = items.add("a", deadlines=[days(clock, 30)])
    assert sent_titles(run_digests(app)) == (["Utlysning a"], [])
    clock.advance(hours=-2)  # the wall clock is set back
    items.add("b", deadlines=[days(clock, 30)])
    items.change(a, deadlines=[days(clock, 40)])
    clock.advance(minutes=30)  # still before the last digest's time
    assert sent_titles(run_digests(app)) == (["Utlysning b"], ["Utlysning a"])
    clock.advance(days=1)
    items.add("c", deadlines=[days(clock, 30)])
    assert sent_titles(run_digests(app)) == (["Utlysning c"], [])
    clock.advance(days=1)
    assert sent_titles(run_digests(app)) == ([], [])


def test_a_clock_moved_forward_loses_no_item_and_repeats_none(world, clock):
    app, items = world()
    run_digests(app)
    clock.advance(hours=1)
    a = items.add("a", deadlines=[days(clock, 30)])
    clock.advance(hours=3)  # the wall clock jumps ahead; a digest goes out meanwhile
    assert sent_titles(run_digests(app)) == (["Utlysning a"], [])
    clock.advance(hours=-3, minutes=10)  # and is put right
    items.add("b", deadlines=[days(clock, 30)])
    items.change(a, title="Utlysning a, ny titel")
    clock.advance(minutes=10)
    assert sent_titles(run_digests(app)) == (["Utlysning b"], ["Utlysning a, ny titel"])
    clock.advance(days=1)
    assert sent_titles(run_digests(app)) == ([], [])


def test_digests_recorded_before_ids_were_kept_go_on_by_their_rules(world, clock):
    """A digest recorded before revision 0006 has no record of what it looked at: the next
    digest reads its history by the old rules once (arrived before its end, less an hour),
    and from then on by ids."""
    from watcher.storage.deliveries import DeliveryStore

    app, items = world()
    items.add("old", deadlines=[days(clock, 30)])
    clock.advance(days=1)
    DeliveryStore(app.storage).record_digest(
        "n",
        window_start=None,
        window_end=clock(),
        created_at=clock(),
        subject=None,
        item_ids=(),
        payload={},
        recipients=(),
    )
    clock.advance(hours=2)
    items.add("new", deadlines=[days(clock, 30)])
    assert sent_titles(run_digests(app)) == (["Utlysning new"], [])
    clock.advance(days=1)
    assert sent_titles(run_digests(app)) == ([], [])


def test_a_first_digest_over_a_long_history_is_capped_per_area(world, clock, monkeypatch):
    """Issue 14.3: a network added to a service with years of calls gets the open ones at
    most ``GROUP_CAP`` per area (the soonest deadlines) and "och N till" with a link to the
    web list, not one entry per stored call; "closing soon" likewise; the subject counts
    them all. Only the shown entries are recorded; a resumed send renders the same."""
    import notifications.digest as digest_module
    from watcher.storage.deliveries import DeliveryStore

    monkeypatch.setattr(digest_module, "GROUP_CAP", 2)
    monkeypatch.setattr(digest_module, "CLOSING_SOON_CAP", 2)
    app, items = world()
    for n in range(5):  # baseline: seen before the network existed
        items.add(f"f{n}", deadlines=[days(clock, 5 + 20 * n)], baseline=True)
    items.add("k0", deadlines=[days(clock, 8)], areas=["kompetens"], baseline=True)
    items.add("k1", deadlines=[days(clock, 12)], areas=["kompetens"], baseline=True)
    items.add("old", status="closed", deadlines=[days(clock, -30)], baseline=True)
    d = build_digest(app, "n", clock())
    assert d.first
    assert titles(d.new) == ["Utlysning f0", "Utlysning k0", "Utlysning k1", "Utlysning f1"]
    assert d.hidden == {"new": {"fonder-program": 3}, "closing_soon": {"": 1}}
    assert d.total("new") == 7 and d.more("new", "kompetens") == 0
    # f0, k0 and k1 close within 14 days; the two soonest are shown.
    assert titles(d.closing_soon) == ["Utlysning f0", "Utlysning k0"]

    rendered = render_digest(d)
    assert "7 nya" in rendered.subject
    url = "http://127.0.0.1:8000/?area=fonder-program&amp;sort=deadline"
    assert "… och 3 till inom Strategiskt samarbete inom EU:s fonder och program" in rendered.html
    assert url in rendered.html
    assert "… och 3 till inom" in rendered.text and url.replace("&amp;", "&") in rendered.text
    assert "Här visas de 2 som stänger först; 1 till finns i listan på webben." in rendered.text
    soon = "http://127.0.0.1:8000/?sort=deadline&status=open&within=14"  # the same calls
    assert soon in rendered.text

    [o] = run_digests(app)
    assert (o.new, o.closing_soon) == (7, 3)
    rec = DeliveryStore(app.storage).get_digest(o.digest_id)
    assert rec is not None and rec.item_ids == tuple(e.item_id for e in d.new)
    assert len(rec.payload["new"]) == 4
    again = render_digest(Digest.from_payload(rec.payload))
    assert again.text.replace(again.placeholder, "") == rendered.text.replace(
        rendered.placeholder, ""
    )


def test_later_digests_are_capped_too_in_english(world, clock, monkeypatch):
    import notifications.digest as digest_module

    monkeypatch.setattr(digest_module, "GROUP_CAP", 1)
    app, items = world(net(language="en"))
    run_digests(app)  # the first (empty) digest
    clock.advance(days=1)
    for n in range(3):
        items.add(f"n{n}", deadlines=[days(clock, 30 + n)])
    d = build_digest(app, "n", clock())
    assert titles(d.new) == ["Utlysning n0"] and d.more("new") == 2
    rendered = render_digest(d)
    assert "3 new" in rendered.subject
    assert "… and 2 more in EU funds and programmes" in rendered.text
    assert "http://127.0.0.1:8000/?area=fonder-program\n" in rendered.text  # newest first


def test_a_digest_without_caps_reached_says_nothing_more(world, clock):
    app, items = world()
    items.add("open", deadlines=[days(clock, 20)], baseline=True)
    d = build_digest(app, "n", clock())
    assert d.hidden == {} and d.to_payload()["hidden"] == {}
    assert Digest.from_payload(d.to_payload()) == d
    rendered = render_digest(d)
    assert "till inom" not in rendered.text and "hela listan" not in rendered.html


def test_a_run_builds_its_networks_together_and_skips_one_locked_elsewhere(world, clock):
    """A run takes every network's digest lock at once and builds their digests in one
    reading of the items; a network another process is building is left to it."""
    from watcher.storage.deliveries import lock_name

    app, items = world(net(id="a"), net(id="b"), net(id="c", members=[]))
    items.add("open", deadlines=[days(clock, 20)], baseline=True)
    assert app.storage.acquire_lock(lock_name("a"), "elsewhere", timedelta(minutes=5), clock())
    a, b, c = run_digests(app)
    assert a.skipped_reason == "another process is building this network's digest"
    assert a.digest_id is None
    assert b.digest_id is not None and b.sent == 1 and titles(b.digest.new) == ["Utlysning open"]
    assert c.skipped_reason == "no members"
    # The run's own locks are released; the other process's is not.
    assert app.storage.acquire_lock(lock_name("b"), "next", timedelta(minutes=5), clock())
    assert not app.storage.acquire_lock(lock_name("a"), "next", timedelta(minutes=5), clock())
