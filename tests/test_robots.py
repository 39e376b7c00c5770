"""robots.txt parsing and matching (RFC 9309), and the per-origin cache."""

from __future__ import annotations

import asyncio

import pytest

from watcher.robots import (
    RobotsCache,
    RobotsEntry,
    RobotsRules,
    RobotsStatus,
    normalise_path,
    product_token,
)

UA = "EU-bevakning/0.1 (+https://goteborgsregionen.se; contact: eu@example.org)"


def allows(text: str, path: str, ua: str = UA) -> bool:
    return RobotsRules.parse(text, ua).allows(path)


def test_product_token_is_the_name_before_the_version() -> None:
    assert product_token(UA) == "eu-bevakning"
    assert product_token("Googlebot-News") == "googlebot-news"
    assert product_token("  ") == ""


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [
        ("User-agent: *\nDisallow: /private\n", "/private/x", False),
        ("User-agent: *\nDisallow: /private\n", "/public", True),
        ("User-agent: *\nDisallow: /\n", "/anything", False),
        ("User-agent: *\nDisallow:\n", "/anything", True),
        ("", "/anything", True),
        # Longest match wins; robotparser would take the first matching line.
        ("User-agent: *\nDisallow: /a\nAllow: /a/b\n", "/a/b/c", True),
        ("User-agent: *\nAllow: /a\nDisallow: /a/b\n", "/a/b/c", False),
        # Equal length: Allow wins.
        ("User-agent: *\nDisallow: /page\nAllow: /page\n", "/page", True),
        # Wildcards and the end anchor.
        ("User-agent: *\nDisallow: /*.pdf$\n", "/docs/call.pdf", False),
        ("User-agent: *\nDisallow: /*.pdf$\n", "/docs/call.pdf?x=1", True),
        ("User-agent: *\nDisallow: /search*q=\n", "/search/?q=ESF", False),
        ("User-agent: *\nDisallow: /*?\n", "/list?page=2", False),
        ("User-agent: *\nDisallow: /*?\n", "/list", True),
        # The query is part of what is matched.
        ("User-agent: *\nDisallow: /list?page=\n", "/list?page=3", False),
        # robots.txt itself is always allowed.
        ("User-agent: *\nDisallow: /\n", "/robots.txt", True),
        # Comments, blank lines, BOM, odd spacing and case of keys.
        ("\ufeff# hi\nUSER-AGENT : *  # all\n\n DISALLOW :  /x # no\n", "/x/1", False),
        # Rules before any user-agent line belong to no group.
        ("Disallow: /x\nUser-agent: *\nDisallow: /y\n", "/x", True),
        # Sitemap and unknown lines do not end a group.
        (
            "User-agent: *\nSitemap: https://e.org/s.xml\nCrawl-delay: 5\nDisallow: /y\n",
            "/y",
            False,
        ),
    ],
)
def test_rules(text: str, path: str, expected: bool) -> None:
    assert allows(text, path) is expected


def test_a_group_naming_our_token_replaces_the_star_group() -> None:
    text = (
        "User-agent: *\nDisallow: /\n\n"
        "User-agent: eu-bevakning\nDisallow: /admin\n\n"
        "User-agent: otherbot\nDisallow: /calls\n"
    )
    assert allows(text, "/calls")
    assert not allows(text, "/admin/x")
    assert not allows(text, "/calls", ua="otherbot/2.0")
    assert not allows(text, "/calls", ua="somebody-else/1.0")


def test_groups_for_our_token_are_merged_and_shared_groups_apply() -> None:
    text = (
        "User-agent: a-bot\nUser-agent: EU-bevakning/0.1\nDisallow: /one\n\n"
        "User-agent: EU-Bevakning\nDisallow: /two\n"
    )
    assert not allows(text, "/one")
    assert not allows(text, "/two")
    assert allows(text, "/three")


def test_our_token_must_match_whole_not_as_a_prefix() -> None:
    text = "User-agent: eu\nDisallow: /\n"
    assert allows(text, "/page")


def test_full_urls_are_matched_by_path_and_query() -> None:
    rules = RobotsRules.parse("User-agent: *\nDisallow: /p?x=1\n", UA)
    assert not rules.allows("https://example.org/p?x=1")
    assert rules.allows("https://example.org/p?x=2")
    assert rules.allows("https://example.org")


def test_percent_encoding_is_normalised_on_both_sides() -> None:
    assert normalise_path("/a%7eb") == "/a~b"
    assert normalise_path("/a%2fb") == "/a%2Fb"  # reserved: stays encoded
    assert normalise_path("/utlysning/ä") == "/utlysning/%C3%A4"
    assert not allows("User-agent: *\nDisallow: /utlysning/ä\n", "/utlysning/%c3%a4/1")
    assert not allows("User-agent: *\nDisallow: /a%7Eb\n", "/a~b")
    assert allows("User-agent: *\nDisallow: /a%2Fb\n", "/a/b")


def test_entries_from_outcomes() -> None:
    entry = RobotsEntry.fetched(b"User-agent: *\nDisallow: /x\n\xff\n", UA)
    assert entry.status is RobotsStatus.FETCHED
    assert not entry.allows("/x")
    missing = RobotsEntry.missing("http_404")
    assert (missing.status, missing.reason, missing.allows("/x")) == (
        RobotsStatus.MISSING,
        "http_404",
        True,
    )
    down = RobotsEntry.unreachable("timeout")
    assert (down.status, down.allows("/x")) == (RobotsStatus.UNREACHABLE, True)


async def test_cache_fetches_each_origin_once_even_when_asked_concurrently() -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def fetch(origin: str) -> RobotsEntry:
        calls.append(origin)
        await gate.wait()
        return RobotsEntry.fetched(b"User-agent: *\nDisallow: /x\n", UA)

    cache = RobotsCache(fetch)
    waiting = [asyncio.create_task(cache.get("https://a.example")) for _ in range(5)]
    other = asyncio.create_task(cache.get("https://b.example"))
    await asyncio.sleep(0)
    gate.set()
    entries = await asyncio.gather(*waiting, other)
    assert sorted(calls) == ["https://a.example", "https://b.example"]
    assert all(e is entries[0] for e in entries[:5])
    assert not entries[0].allows("/x/y")
    assert set(cache.entries) == {"https://a.example", "https://b.example"}
    await cache.get("https://a.example")
    assert len(calls) == 2


async def test_a_copy_is_used_for_a_day_and_an_unreachable_file_keeps_the_last_one() -> None:
    """RFC 9309 §2.4: at most 24 hours from the cache; while the file cannot be fetched the
    last copy stays in force, and it is tried again after an hour."""
    now = [0.0]
    answers = [
        RobotsEntry.fetched(b"User-agent: *\nDisallow: /old\n", UA),
        RobotsEntry.unreachable("http_503"),
        RobotsEntry.fetched(b"User-agent: *\nDisallow: /new\n", UA),
    ]
    calls: list[float] = []

    async def fetch(origin: str) -> RobotsEntry:
        calls.append(now[0])
        return answers[len(calls) - 1]

    cache = RobotsCache(fetch, clock=lambda: now[0])
    assert not (await cache.get("https://a.example")).allows("/old")
    now[0] = 23 * 3600.0
    await cache.get("https://a.example")
    assert calls == [0.0]  # still fresh
    now[0] = 24 * 3600.0
    kept = await cache.get("https://a.example")  # refetched: 503, the last copy holds
    assert calls == [0.0, 24 * 3600.0]
    assert not kept.allows("/old") and kept.status is RobotsStatus.FETCHED
    assert cache.stale("https://a.example") == "http_503"  # shown on source health
    now[0] += 1800
    await cache.get("https://a.example")
    assert len(calls) == 2  # an unreachable file is tried again after an hour, not sooner
    now[0] += 1800
    fresh = await cache.get("https://a.example")
    assert len(calls) == 3
    assert fresh.allows("/old") and not fresh.allows("/new")
    assert cache.stale("https://a.example") is None


async def test_a_file_unreachable_from_the_start_is_tried_again_after_an_hour() -> None:
    now = [0.0]
    calls: list[float] = []

    async def fetch(origin: str) -> RobotsEntry:
        calls.append(now[0])
        if len(calls) == 1:
            return RobotsEntry.unreachable("timeout")
        return RobotsEntry.fetched(b"User-agent: *\nDisallow: /x\n", UA)

    cache = RobotsCache(fetch, clock=lambda: now[0])
    first = await cache.get("https://b.example")
    assert first.status is RobotsStatus.UNREACHABLE and first.allows("/x")
    assert cache.entries["https://b.example"].reason == "timeout"  # shown on source health
    now[0] = 3599.0
    await cache.get("https://b.example")
    assert len(calls) == 1
    now[0] = 3600.0
    assert not (await cache.get("https://b.example")).allows("/x")
    assert len(calls) == 2


async def test_a_seeded_copy_is_used_until_a_day_old_and_then_holds_while_unreachable() -> None:
    """A copy another process kept (``RobotsCache.seed``) counts its age from its fetch."""
    now = [0.0]
    calls: list[float] = []

    async def fetch(origin: str) -> RobotsEntry:
        calls.append(now[0])
        return RobotsEntry.unreachable("http_503")

    cache = RobotsCache(fetch, clock=lambda: now[0])
    cache.seed("https://a.example", RobotsEntry.parsed("User-agent: *\nDisallow: /x\n", UA), 3600)
    cache.seed("https://b.example", RobotsEntry.missing("http_404"), 25 * 3600.0)
    assert not (await cache.get("https://a.example")).allows("/x")
    assert calls == []  # kept an hour ago: fresh for 23 more hours
    now[0] = 23 * 3600.0 - 1
    await cache.get("https://a.example")
    assert calls == []
    now[0] = 23 * 3600.0
    held = await cache.get("https://a.example")  # a day old: fetched again, which fails
    assert calls == [now[0]] and not held.allows("/x")
    assert cache.stale("https://a.example") == "http_503"
    assert (await cache.get("https://b.example")).status is RobotsStatus.MISSING  # too old
    assert len(calls) == 2


async def test_a_copy_kept_in_the_future_is_fetched_again() -> None:
    """A copy whose fetch time is later than now (the clock moved back) is too old."""
    fetched: list[str] = []

    async def fetch(origin: str) -> RobotsEntry:
        fetched.append(origin)
        return RobotsEntry.parsed("User-agent: *\nAllow: /\n", UA)

    cache = RobotsCache(fetch, clock=lambda: 0.0)
    cache.seed("https://a.example", RobotsEntry.parsed("User-agent: *\nDisallow: /\n", UA), -60)
    assert (await cache.get("https://a.example")).allows("/x")
    assert fetched == ["https://a.example"]


def test_copies_are_kept_by_origin(any_storage) -> None:
    from datetime import UTC, datetime

    from watcher.robots import RobotsCopy

    at = datetime(2027, 3, 1, 8, tzinfo=UTC)
    long_origin = "https://" + "a" * 80 + ".example"
    copies = [
        RobotsCopy("https://a.example", RobotsStatus.FETCHED, at, "User-agent: *\nDisallow: /å\n"),
        RobotsCopy("http://b.example:8080", RobotsStatus.MISSING, at, reason="http_404"),
        RobotsCopy(long_origin, RobotsStatus.FETCHED, at, "User-agent: *\nAllow: /\n"),
    ]
    any_storage.save_robots_copies(copies)
    assert any_storage.robots_copies() == {c.origin: c for c in copies}
    assert not any_storage.robots_copies()[copies[0].origin].entry(UA).allows("/%C3%A5")
    later = RobotsCopy("https://a.example", RobotsStatus.MISSING, at, reason="http_410")
    any_storage.save_robots_copies([later])
    kept = any_storage.robots_copies()
    assert kept["https://a.example"] == later and len(kept) == 3
    assert kept[long_origin].entry(UA).status is RobotsStatus.FETCHED
    assert RobotsCopy.of("x", RobotsEntry.parsed("a", UA), at).text == "a"


async def test_a_second_process_uses_the_kept_robots_txt_for_a_day(
    make_app, loopback, clock
) -> None:
    """Issue 14: each `watcher poll` fetched every host's robots.txt again before its feeds.
    Apps on one database stand for successive `watcher poll` processes."""
    from tests.conftest import fetch_settings

    feed = """<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>
    <item><guid>1</guid><title>Utlysning</title><link>https://x.example/1</link></item>
    </channel></rss>"""
    loopback.add("/robots.txt", "User-agent: *\nDisallow: /hidden\n", content_type="text/plain")
    loopback.add("/f.xml", feed, content_type="application/rss+xml")
    loopback.add("/hidden/f.xml", feed, content_type="application/rss+xml")
    config = {
        "fetch": fetch_settings(loopback, respect_robots_txt=True),
        "sources": [
            {"id": "feed", "name": "Feed", "kind": "rss", "url": loopback.url("/f.xml")},
            {"id": "hidden", "name": "Dold", "kind": "rss", "url": loopback.url("/hidden/f.xml")},
        ],
    }

    async def poll_in_a_new_app() -> dict[str, str]:
        app = make_app(config)
        results = await app.poll()
        return {r.source_id: r.error.code if r.error else r.status.value for r in results}

    first = await poll_in_a_new_app()
    assert first == {"feed": "ok", "hidden": "robots_disallowed"}
    assert loopback.hits("/robots.txt") == 1
    clock.advance(hours=23, minutes=59)
    again = await poll_in_a_new_app()
    assert again["hidden"] == "robots_disallowed"  # the kept copy's rules hold
    assert loopback.hits("/robots.txt") == 1  # and it was not fetched again
    assert loopback.hits("/f.xml") == 2
    clock.advance(minutes=1)
    await poll_in_a_new_app()
    assert loopback.hits("/robots.txt") == 2  # a day old: fetched again (RFC 9309 §2.4)
    await poll_in_a_new_app()
    assert loopback.hits("/robots.txt") == 2  # and that copy kept in turn
