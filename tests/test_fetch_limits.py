"""Fetching that ends: a poll through the real pipeline against a loopback server that
sends invalid UTF-8, asks for a pause (429/503 + Retry-After), hangs or drips.

Nothing here waits for a backoff: the polls use an ``HttpClient`` whose ``sleep`` records
the delays, so a poll that would sleep shows it in ``sleeps`` instead of taking the time.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.builders import feed, rss_item, src
from tests.conftest import T0, Clock, fetch_settings, write_config
from tests.loopback import LoopbackServer, Reply
from watcher.app import App
from watcher.cli import main
from watcher.http import HttpClient
from watcher.polling import MAX_RETRY_AFTER, next_attempt
from watcher.types import PollResult


class Sleeps:
    """A ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


MakeApp = Callable[..., App]


def one_source(make_app: MakeApp, loopback: LoopbackServer, **fetch: Any) -> App:
    return make_app(
        {
            "fetch": fetch_settings(loopback, **fetch),
            "sources": [src("s", loopback.url("/feed.xml"))],
        }
    )


async def poll(app: App, sleeps: Sleeps) -> PollResult:
    """Poll the app's one source with the app's settings and a recording ``sleep``."""
    cfg = app.config
    async with HttpClient(cfg.fetch, cfg.watcher.user_agent, sleep=sleeps, clock=app.now) as http:
        [result] = await app.poll(http=http)
    return result


@pytest.fixture
async def sleeps() -> AsyncIterator[Sleeps]:
    yield Sleeps()


# ── invalid UTF-8 ────────────────────────────────────────────────────────────────────────


async def test_invalid_utf8_costs_only_the_invalid_bytes_and_is_noted(
    make_app: MakeApp, loopback: LoopbackServer, sleeps: Sleeps
) -> None:
    # A feed declared UTF-8 (header and XML declaration) whose one title has a stray
    # Windows-1252 byte (0xF6, "ö") among valid UTF-8: constructed, after a real case.
    body = feed(
        rss_item("1", "Ansökan öppnar för små och medelstora företag", "https://x.example/1"),
        rss_item("2", "Vad gäller för STRAY?", "https://x.example/2"),
    ).encode("utf-8")
    body = body.replace(b"STRAY", b"st\xf6d")  # "stöd" with its ö in Windows-1252
    loopback.add("/feed.xml", body, content_type="application/rss+xml; charset=utf-8")
    app = one_source(make_app, loopback)
    result = await poll(app, sleeps)
    titles = sorted(i.title for i in app.storage.list_items())
    assert titles == [
        "Ansökan öppnar för små och medelstora företag",
        "Vad gäller för st\ufffdd?",
    ]
    [warning] = [w for w in result.warnings if "UTF-8" in w]
    assert "1 invalid byte sequence(s)" in warning and loopback.url("/feed.xml") in warning
    state = app.storage.source_state("s")
    assert state.warning is not None and "invalid UTF-8 repaired" in state.warning


# ── Retry-After ──────────────────────────────────────────────────────────────────────────


def http_date_in(seconds: int) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_ends_the_poll_as_rate_limited_until_then(
    make_app: MakeApp, loopback: LoopbackServer, sleeps: Sleeps, status: int
) -> None:
    loopback.add("/feed.xml", "", status=status, headers={"Retry-After": "120"})
    app = one_source(make_app, loopback, retries=2)
    result = await poll(app, sleeps)
    assert result.error is not None and result.error.code == "rate_limited"
    assert result.as_dict()["error"]["code"] == "rate_limited"  # as `poll --json` prints it
    assert loopback.hits("/feed.xml") == 1
    assert sleeps.delays == []  # nothing waited inline
    state = app.storage.source_state("s")
    assert state.last_error_code == "rate_limited"
    # The server's time wins over the first back-off (one minute).
    assert state.next_attempt_at == T0 + timedelta(seconds=120)


async def test_retry_after_as_an_http_date(
    make_app: MakeApp, loopback: LoopbackServer, sleeps: Sleeps
) -> None:
    # The date counts from the server's own Date header (the real clock here, like the
    # date written below); the source's next attempt counts from the poll's time.
    loopback.add_handler("/feed.xml", lambda r: Reply(503, {"Retry-After": http_date_in(600)}))
    app = one_source(make_app, loopback, retries=2)
    result = await poll(app, sleeps)
    assert result.error is not None and result.error.code == "rate_limited"
    assert loopback.hits("/feed.xml") == 1 and sleeps.delays == []
    after = app.storage.source_state("s").next_attempt_at
    assert after is not None
    # HTTP dates have whole seconds: the two dates may straddle a second.
    assert 598 <= (after - T0).total_seconds() <= 600


async def test_a_pause_of_days_is_capped_at_a_day(
    make_app: MakeApp, loopback: LoopbackServer, sleeps: Sleeps
) -> None:
    loopback.add("/feed.xml", "", status=429, headers={"Retry-After": str(7 * 86400)})
    app = one_source(make_app, loopback)
    await poll(app, sleeps)
    assert app.storage.source_state("s").next_attempt_at == T0 + MAX_RETRY_AFTER


def test_next_attempt_is_the_later_of_backoff_and_retry_after_within_a_day() -> None:
    hour = 3600
    assert next_attempt(1, hour, T0) == T0 + timedelta(minutes=1)
    assert next_attempt(1, hour, T0, asked=10) == T0 + timedelta(minutes=1)  # backoff later
    assert next_attempt(1, hour, T0, asked=600) == T0 + timedelta(minutes=10)
    assert next_attempt(1, hour, T0, asked=1e300) == T0 + timedelta(hours=24)
    # A source polled weekly that keeps failing waits its own back-off, past the day.
    week = 7 * 86400
    assert next_attempt(20, week, T0, asked=600) == T0 + timedelta(days=7)


def test_poll_json_shows_rate_limited(tmp_path: Path, loopback: LoopbackServer) -> None:
    loopback.add("/feed.xml", "", status=429, headers={"Retry-After": "3600"})
    cfg = write_config(
        tmp_path / "config.toml",
        {
            "watcher": {"database_url": f"sqlite:///{tmp_path / 'w.db'}"},
            "email": {"outbox": str(tmp_path / "outbox")},
            "fetch": fetch_settings(loopback, retries=2),
            "sources": [src("s", loopback.url("/feed.xml"))],
        },
    )
    res = CliRunner().invoke(main, ["--config", str(cfg), "poll", "--json"])
    assert res.exit_code == 0, res.output
    [line] = [json.loads(x) for x in res.stdout.splitlines()]
    assert (line["status"], line["error"]["code"]) == ("error", "rate_limited")
    assert "3600" in line["error"]["message"]
    assert loopback.hits("/feed.xml") == 1


# ── hanging and dripping servers ─────────────────────────────────────────────────────────


HANGS = {
    "never-answers": Reply.never(),
    # One byte each 0.1 s: every read gets a byte well within any read timeout.
    "drips": Reply(
        200,
        {"Content-Type": "application/rss+xml"},
        body=(b"<" for _ in range(10_000)),
        delay_per_chunk=0.1,
    ),
}


@pytest.mark.parametrize("reply", HANGS.values(), ids=HANGS.keys())
@pytest.mark.parametrize("robots", [False, True], ids=["robots-off", "robots-on"])
async def test_a_hanging_source_ends_after_one_timeout(
    make_app: MakeApp,
    loopback: LoopbackServer,
    sleeps: Sleeps,
    clock: Clock,
    reply: Reply,
    robots: bool,
) -> None:
    loopback.add_handler("/feed.xml", lambda r: reply)
    loopback.add_handler("/robots.txt", lambda r: reply)
    app = one_source(make_app, loopback, timeout=0.5, retries=2, respect_robots_txt=robots)
    result = await poll(app, sleeps)
    assert result.error is not None and result.error.code == "timeout"
    # One request in all: no inline retry of a timeout, and with robots.txt respected the
    # page is not asked for once the site has let its robots.txt time out.
    assert [r.route for r in loopback.requests] == ["/robots.txt" if robots else "/feed.xml"]
    assert sleeps.delays == []
    state = app.storage.source_state("s")
    assert state.last_error_code == "timeout"
    assert state.next_attempt_at == T0 + timedelta(minutes=1)  # the scheduler's back-off
