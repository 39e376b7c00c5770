"""Exactly-once digest delivery against a real SMTP server (aiosmtpd) on loopback.

The server refuses recipients (4xx, 5xx), drops the connection part-way, answers 421, is
not there at all, or holds a message while the test kills the sending process; after
each, a new run resumes and ``sink.count()`` proves every member got exactly one copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from notifications.delivery import LEASE, run_digests
from notifications.email import Outgoing
from notifications.transports import SmtpTransport
from tests.conftest import REPO
from tests.digest_builders import ItemBuilder, RunningSmtp, SmtpSink, free_port, start_smtp
from watcher.storage.deliveries import DeliveryStore

MEMBERS = [f"m{i}@kommun.example.se" for i in range(1, 6)]


@pytest.fixture
def smtp() -> Iterator[Callable[..., RunningSmtp]]:
    """Start SMTP sinks; every one is stopped at the end of the test."""
    running: list[Iterator[RunningSmtp]] = []

    def start(sink: SmtpSink | None = None, **kwargs: Any) -> RunningSmtp:
        gen = start_smtp(sink or SmtpSink(), **kwargs)
        running.append(gen)
        return next(gen)

    yield start
    for gen in running:
        gen.close()


def config(server: RunningSmtp | None, port: int | None = None, **email: Any) -> dict[str, Any]:
    smtp_settings = (
        server.settings()
        if server
        else {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5}
    )
    return {
        "email": {
            "backend": "smtp",
            "sender": "EU-bevakning <eu-bevakning@goteborgsregionen.se>",
            "retry_delay": 60,
            "max_attempts": 3,
            "smtp": smtp_settings,
            **email,
        },
        "networks": [
            {
                "id": "gr-eu",
                "name": "GR:s EU-nätverk",
                "members": MEMBERS,
                "schedule": "mon 08:00",
            }
        ],
    }


def seed(app: Any, clock: Any, n: int = 2) -> ItemBuilder:
    items = ItemBuilder(app.storage, clock)
    for i in range(n):
        items.add(f"c{i}", deadlines=[clock() + timedelta(days=30 + i)], baseline=True)
    return items


class Killed(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs."""


class DiesAfter:
    """A transport that passes ``n`` messages on, then 'dies' before sending the next."""

    def __init__(self, inner: SmtpTransport, n: int) -> None:
        self.inner, self.n = inner, n

    def send(self, message: Outgoing, sender: str, recipient: str) -> None:
        if self.n == 0:
            raise Killed
        self.n -= 1
        self.inner.send(message, sender, recipient)

    def close(self) -> None:
        self.inner.close()


def log(app: Any) -> dict[str, Any]:
    return {r.address: r for r in DeliveryStore(app.storage).delivery_log()}


def test_each_member_gets_one_copy_with_list_headers(make_app, clock, smtp):
    server = smtp()
    app = make_app(config(server))
    seed(app, clock)
    [o] = run_digests(app)
    assert (o.network, o.new, o.recipients, o.sent, o.skipped_reason) == ("gr-eu", 2, 5, 5, None)
    assert server.sink.count() == {m: 1 for m in MEMBERS}
    msg = server.sink.accepted[0].message
    # A non-ASCII list name travels as encoded words, never half inside quotes.
    assert msg["List-Id"] == "GR:s EU-nätverk <gr-eu.digest.goteborgsregionen.se>"
    raw = msg.as_bytes().split(b"List-Id:", 1)[1].split(b"\n", 1)[0]
    assert b'"' not in raw and b"=?utf-8?" in raw
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/")
    assert msg["Subject"] == "GR:s EU-nätverk: 2 nya – 2 november 2026"
    assert msg.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in msg.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    url = msg["List-Unsubscribe"].strip("<>")
    assert url in msg.get_body(("plain",)).get_content()
    # The Message-ID is the one recorded before sending.
    by_addr = log(app)
    assert by_addr[msg["To"]].message_id == msg["Message-ID"]
    assert {r.status for r in by_addr.values()} == {"sent"}


def test_triggered_twice_sends_nothing_twice(make_app, clock, smtp):
    server = smtp()
    app = make_app(config(server))
    seed(app, clock)
    run_digests(app)
    [again] = run_digests(app)  # same instant: the same window
    clock.advance(minutes=5)
    [later] = run_digests(app)  # a by-hand run right after the scheduled one
    assert again.sent == 0 and again.skipped_reason == "nothing new"
    assert later.sent == 0 and later.skipped_reason == "nothing new"
    assert server.sink.count() == {m: 1 for m in MEMBERS}


def test_two_runs_at_once_record_one_digest(make_app, clock, smtp):
    server = smtp()
    app = make_app(config(server))
    seed(app, clock)
    results: list[Any] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            results.extend(run_digests(app))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(o.sent for o in results) == 5
    assert server.sink.count() == {m: 1 for m in MEMBERS}
    sent_digests = [d for d in DeliveryStore(app.storage).digests("gr-eu") if d.item_ids]
    assert len(sent_digests) == 1


def test_killed_mid_run_resumes_without_duplicates_or_gaps(make_app, clock, smtp):
    server = smtp()
    app = make_app(config(server))
    seed(app, clock)
    dying = DiesAfter(SmtpTransport(app.config.email.smtp), 2)
    with pytest.raises(Killed):
        run_digests(app, transport=dying)
    dying.close()
    assert len(server.sink.accepted) == 2
    statuses = sorted(r.status for r in log(app).values())
    assert statuses == ["pending", "pending", "sending", "sent", "sent"]
    # A new run at once sends the untouched ones; the one the dead sender had claimed waits
    # for its lease to run out (it might be a live sender elsewhere).
    [o] = run_digests(app)
    assert o.sent == 2 and o.skipped_reason == "nothing new"
    clock.advance(seconds=LEASE.total_seconds() + 1)
    [o] = run_digests(app)
    assert o.sent == 1
    assert server.sink.count() == {m: 1 for m in MEMBERS}
    assert {r.status for r in log(app).values()} == {"sent"}
    assert [d.status for d in DeliveryStore(app.storage).digests("gr-eu") if d.item_ids] == ["done"]


KILL_SCRIPT = """
import sys
from datetime import datetime
from watcher.app import App
from notifications.delivery import run_digests

at = datetime.fromisoformat(sys.argv[2])
app = App.from_path(sys.argv[1], clock=lambda: at)
run_digests(app)
"""


def test_killed_process_resumes_without_duplicates_or_gaps(make_app, clock, smtp, tmp_path):
    # The server holds the 3rd message; meanwhile the sending process is killed (SIGKILL).
    sink = SmtpSink(hold=3)
    server = smtp(sink)
    app = make_app(config(server))
    seed(app, clock)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "config.toml"), clock().isoformat()],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert sink.holding.wait(60), "the sender never reached the 3rd message"
    finally:
        proc.kill()
        proc.wait(30)
    sink.release.set()
    assert len(sink.accepted) == 2
    clock.advance(seconds=LEASE.total_seconds() + 1)
    [o] = run_digests(app)
    assert o.sent == 3
    assert sink.count() == {m: 1 for m in MEMBERS}


def test_4xx_is_retried_with_backoff_and_sent_once(make_app, clock, smtp):
    busy = MEMBERS[2]
    sink = SmtpSink(rcpt={busy: "450 4.2.1 mailbox busy"})
    server = smtp(sink)
    app = make_app(config(server))
    seed(app, clock)
    t0 = clock()
    [o] = run_digests(app)
    assert (o.sent, o.deferred, o.failed) == (4, 1, 0)
    entry = log(app)[busy]
    assert (entry.status, entry.attempts) == ("pending", 1)
    assert entry.next_attempt_at == t0 + timedelta(seconds=60)
    assert "450" in (entry.last_error or "")
    run_digests(app)  # not due yet: not even tried
    assert sink.rcpt_attempts.count(busy) == 1
    clock.advance(seconds=61)
    run_digests(app)  # still busy: the delay doubles
    entry = log(app)[busy]
    assert (entry.attempts, entry.next_attempt_at) == (2, clock() + timedelta(seconds=120))
    sink.rcpt.clear()
    clock.advance(seconds=121)
    [o] = run_digests(app)
    assert o.sent == 1
    assert sink.count() == {m: 1 for m in MEMBERS}


def test_4xx_gives_up_after_max_attempts(make_app, clock, smtp):
    busy = MEMBERS[0]
    server = smtp(SmtpSink(rcpt={busy: "451 4.3.0 try later"}))
    app = make_app(config(server, max_attempts=2))
    seed(app, clock)
    run_digests(app)
    clock.advance(seconds=61)
    [o] = run_digests(app)
    assert o.failed == 1
    entry = log(app)[busy]
    assert entry.status == "failed" and "gave up after 2 attempts" in (entry.last_error or "")
    assert [d.status for d in DeliveryStore(app.storage).digests("gr-eu")] == ["empty", "done"]


def test_5xx_marks_that_delivery_failed_for_the_admin(make_app, clock, smtp):
    gone = MEMBERS[1]
    sink = SmtpSink(rcpt={gone: "550 5.1.1 no such user"})
    server = smtp(sink)
    app = make_app(config(server))
    seed(app, clock)
    [o] = run_digests(app)
    assert (o.sent, o.failed) == (4, 1)
    [failed] = DeliveryStore(app.storage).delivery_log(status="failed")
    assert failed.address == gone and "550" in (failed.last_error or "")
    clock.advance(days=1)
    run_digests(app)
    assert sink.rcpt_attempts.count(gone) == 1  # never tried again by itself
    assert DeliveryStore(app.storage).retry_failed() == 1  # the admin re-queues it
    sink.rcpt.clear()
    [o] = run_digests(app)
    assert o.sent == 1 and sink.count()[gone] == 1


def test_connection_dropped_part_way_resumes(make_app, clock, smtp):
    sink = SmtpSink(data=lambda n: "drop" if n == 3 else None)
    server = smtp(sink)
    app = make_app(config(server))
    seed(app, clock)
    [o] = run_digests(app)
    assert (o.sent, o.deferred) == (4, 1)
    clock.advance(seconds=61)
    [o] = run_digests(app)
    assert o.sent == 1
    assert sink.count() == {m: 1 for m in MEMBERS}


def test_421_stops_the_run_and_counts_no_attempt(make_app, clock, smtp):
    sink = SmtpSink(data=lambda n: "421 4.3.2 shutting down" if n == 2 else None)
    server = smtp(sink)
    app = make_app(config(server))
    seed(app, clock)
    [o] = run_digests(app)
    assert o.sent == 1 and o.errors
    entries = log(app)
    assert sorted(r.status for r in entries.values()) == ["pending"] * 4 + ["sent"]
    assert max(r.attempts for r in entries.values()) <= 1
    assert [r.attempts for r in entries.values() if r.status == "pending"] == [0, 0, 0, 0]
    clock.advance(seconds=61)
    run_digests(app)
    assert sink.count() == {m: 1 for m in MEMBERS}


def test_server_down_leaves_everything_for_later(make_app, clock, smtp):
    port = free_port()
    app = make_app(config(None, port=port))
    seed(app, clock)
    [o] = run_digests(app)
    assert o.sent == 0 and o.recipients == 5 and "cannot connect" in o.errors[0]
    assert {r.status for r in log(app).values()} == {"pending"}
    sink = SmtpSink()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)  # the server comes back
    ctl.start()
    try:
        clock.advance(seconds=61)
        [o] = run_digests(app)
        assert o.sent == 5
    finally:
        ctl.stop()
    assert sink.count() == {m: 1 for m in MEMBERS}


def test_opted_out_member_is_not_mailed(make_app, clock, smtp):
    server = smtp()
    app = make_app(config(server))
    seed(app, clock)
    DeliveryStore(app.storage).add_optout("gr-eu", MEMBERS[0].upper(), clock())
    [o] = run_digests(app)
    assert (o.recipients, o.sent) == (4, 4)
    assert MEMBERS[0] not in server.sink.count()
    assert log(app)[MEMBERS[0]].status == "opted_out"


def test_member_who_opts_out_before_a_resume_is_not_mailed(make_app, clock, smtp):
    server = smtp()
    app = make_app(config(server))
    seed(app, clock)
    with pytest.raises(Killed):
        run_digests(app, transport=DiesAfter(SmtpTransport(app.config.email.smtp), 1))
    late = next(a for a, r in log(app).items() if r.status == "pending")
    DeliveryStore(app.storage).add_optout("gr-eu", late, clock())
    clock.advance(seconds=LEASE.total_seconds() + 1)
    run_digests(app)
    assert late not in server.sink.count()
    assert len(server.sink.accepted) == 4
    assert log(app)[late].status == "opted_out"


def test_nothing_new_sends_nothing_and_no_members_is_skipped(make_app, clock, smtp):
    server = smtp()
    data = config(server)
    data["networks"].append({"id": "tom", "name": "Tom", "members": []})
    app = make_app(data)
    outcomes = {o.network: o for o in run_digests(app)}
    assert outcomes["gr-eu"].skipped_reason == "nothing new"
    assert outcomes["tom"].skipped_reason == "no members"
    assert server.sink.accepted == []


def test_dry_run_records_and_sends_nothing(make_app, clock, smtp):
    server = smtp()
    app = make_app(config(server))
    seed(app, clock)
    [o] = run_digests(app, dry_run=True)
    assert (o.new, o.recipients, o.sent, o.skipped_reason) == (2, 5, 0, "dry run")
    assert server.sink.accepted == []
    assert DeliveryStore(app.storage).digests() == []
