"""The exactly-once store on SQLite and PostgreSQL (``any_storage``): recording, claims
and leases, the digest window's uniqueness, the admin's views, opt-outs, the signing key,
and a whole killed-and-resumed run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from notifications.delivery import LEASE, run_digests
from notifications.email import Outgoing
from tests.conftest import T0
from tests.digest_builders import ItemBuilder
from watcher.exceptions import StorageError
from watcher.storage import Storage
from watcher.storage.deliveries import DeliveryStore, NewDelivery, lock_name


def record(
    store: DeliveryStore, network: str = "net", end=T0, addrs=("a@x.se", "b@x.se"), seen=None
):
    return store.record_digest(
        network,
        window_start=None,
        window_end=end,
        created_at=end,
        subject="Ämne",
        item_ids=[1, 2],
        payload={"change_ids": [7]},
        recipients=[NewDelivery(a, f"<{network}.{end.timestamp()}.{a}>") for a in addrs],
        seen=seen,
    )


def test_record_is_once_per_network_window(any_storage):
    store = DeliveryStore(any_storage)
    first = record(store)
    again = record(store)
    assert first[1] is True and again == (first[0], False)
    assert len(store.deliveries(first[0])) == 2
    other, created = record(store, network="other")
    assert created and other != first[0]


def test_a_claim_has_one_winner_and_a_lease(any_storage):
    store = DeliveryStore(any_storage)
    digest_id, _ = record(store)
    d = store.deliveries(digest_id)[0]
    won = store.claim(d.id, T0, LEASE)
    assert won is not None and won.status == "sending" and won.attempts == 1
    assert store.claim(d.id, T0, LEASE) is None  # a second sender loses
    assert store.claim(d.id, T0 + LEASE - timedelta(seconds=1), LEASE) is None
    taken_over = store.claim(d.id, T0 + LEASE, LEASE)  # the first sender died
    assert taken_over is not None and taken_over.attempts == 2
    store.mark_sent(d.id, T0 + LEASE)
    assert store.claim(d.id, T0 + 10 * LEASE, LEASE) is None  # sent is final


def test_retry_failed_and_finish(any_storage):
    store = DeliveryStore(any_storage)
    digest_id, _ = record(store)
    a, b = store.deliveries(digest_id)
    store.claim(a.id, T0, LEASE)
    store.mark_sent(a.id, T0)
    store.claim(b.id, T0, LEASE)
    store.mark_retry(b.id, "450 busy", T0 + timedelta(minutes=1))
    assert store.claim(b.id, T0, LEASE) is None  # backing off
    assert store.next_due(T0) == T0 + timedelta(minutes=1)
    assert store.finish_if_done(digest_id) is False
    store.claim(b.id, T0 + timedelta(minutes=1), LEASE)
    store.mark_retry(b.id, "server down", T0 + timedelta(minutes=2), count=False)
    assert store.deliveries(digest_id)[1].attempts == 1  # the unreachable try is given back
    store.claim(b.id, T0 + timedelta(minutes=2), LEASE)
    store.mark_final(b.id, "failed", "550 no such user")
    assert store.finish_if_done(digest_id) is True
    assert store.get_digest(digest_id).status == "done"
    assert store.next_due(T0) is None
    [failed] = store.delivery_log(status="failed")
    assert (failed.address, failed.last_error) == ("b@x.se", "550 no such user")
    assert store.retry_failed(digest_id) == 1
    assert store.get_digest(digest_id).status == "sending"
    assert [d.status for d in store.unfinished_digests("net")] == ["sending"]


def test_history_and_admin_views(any_storage):
    store = DeliveryStore(any_storage)
    assert store.network_history("net", T0).epoch is None
    record(store, end=T0)
    record(store, end=T0 + timedelta(days=7), addrs=("a@x.se",))
    h = store.network_history("net", T0 + timedelta(days=7))
    assert (h.epoch, h.last_window_end) == (T0, T0 + timedelta(days=7))
    # Digests recorded without what they looked at (before 0006) are read by their rules.
    assert 1 in h.seen.items and 2 in h.seen.items and 7 in h.seen.changes
    digests = store.digests("net")
    assert [d.window_end for d in digests] == [T0 + timedelta(days=7), T0]
    assert digests[0].counts == {"pending": 1}
    log = store.delivery_log("net", address="A@X.SE")
    assert [e.window_end for e in log] == [T0 + timedelta(days=7), T0]


def test_optouts_and_secret(any_storage):
    store = DeliveryStore(any_storage)
    assert store.add_optout("net", "Anna@Kommun.se", T0) is True
    assert store.add_optout("net", "anna@kommun.se", T0) is False
    assert store.opted_out("net") == {"anna@kommun.se"}
    assert [(o.network_id, o.address) for o in store.optouts()] == [("net", "anna@kommun.se")]
    assert store.remove_optout("net", "ANNA@kommun.se") is True
    assert store.optouts("net") == []
    key = store.secret()
    assert len(key) >= 40 and store.secret() == key


def test_lock_names_fit_the_locks_table():
    assert lock_name("gr-eu") == "digest:gr-eu"
    assert len(lock_name("x" * 63)) <= 64


def test_database_errors_become_storage_errors(any_storage, monkeypatch):
    store = DeliveryStore(any_storage)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("connection lost"))

    monkeypatch.setattr(store.engine, "connect", broken)
    monkeypatch.setattr(store.engine, "begin", broken)
    for call in (
        lambda: store.network_history("net", T0),
        lambda: store.claim(1, T0, LEASE),
        lambda: store.delivery_log(),
        lambda: store.optouts(),
        lambda: store.add_optout("net", "a@x.se", T0),
    ):
        with pytest.raises(StorageError):
            call()


class Recorder:
    """A transport that keeps what it was given, and can 'die' after n messages."""

    def __init__(self, die_after: int | None = None) -> None:
        self.sent: list[tuple[str, str]] = []
        self.die_after = die_after

    def send(self, message: Outgoing, sender: str, recipient: str) -> None:
        if self.die_after is not None and len(self.sent) >= self.die_after:
            raise SystemExit("killed")
        self.sent.append((recipient, str(message["Message-ID"])))

    def close(self) -> None:
        return None


def test_killed_run_resumes_exactly_once_on_each_database(make_app, clock, any_storage):
    members = [f"p{i}@x.se" for i in range(6)]
    app = make_app(
        {"networks": [{"id": "net", "name": "Nät", "members": members}]}, storage=any_storage
    )
    items = ItemBuilder(app.storage, clock)
    items.add("a", deadlines=[clock() + timedelta(days=40)], baseline=True)
    first = Recorder(die_after=4)
    with pytest.raises(SystemExit):
        run_digests(app, transport=first)
    clock.advance(seconds=LEASE.total_seconds() + 1)
    second = Recorder()
    [o] = run_digests(app, transport=second)
    assert o.sent == 2
    got = [r for r, _ in first.sent + second.sent]
    assert sorted(got) == sorted(members)
    ids = [m for _, m in first.sent + second.sent]
    assert len(set(ids)) == 6
    # A second digest only carries what is new since.
    items.add("b", deadlines=[clock() + timedelta(days=50)])
    clock.advance(hours=1)
    third = Recorder()
    [o] = run_digests(app, transport=third)
    assert (o.new, o.sent) == (1, 6)
    assert not set(m for _, m in third.sent) & set(ids)


def test_an_item_committed_late_is_mailed_once(make_app, clock, any_storage):
    """On PostgreSQL an id is handed out before its transaction commits: a digest may see
    item n+1 while item n (another process's poll) is still uncommitted. The digest keeps
    n out of what it has looked at, so the next digest mails it; once every such id is
    settled (a digest built ``LATE_COMMITS`` later) the ranges close up again."""
    if any_storage.dialect == "sqlite":
        pytest.skip("SQLite has one writer: ids commit in order")
    app = make_app(
        {"networks": [{"id": "net", "name": "Nät", "members": ["a@x.se"]}]}, storage=any_storage
    )
    run_digests(app, transport=Recorder())  # the network's first digest
    clock.advance(hours=1)
    other = Storage(any_storage.url)  # another process
    open_txn, release = threading.Event(), threading.Event()
    real_begin = other.begin

    @contextmanager
    def held_open() -> Iterator[Any]:
        with real_begin() as conn:
            yield conn
            open_txn.set()
            release.wait(30)  # the poll's transaction commits when the test says

    other.begin = held_open  # type: ignore[method-assign]
    deadline = [clock() + timedelta(days=30)]
    late = threading.Thread(
        target=ItemBuilder(other, clock).add,
        args=("late",),
        kwargs={"source": "other-src", "deadlines": deadline},
    )
    late.start()
    try:
        assert open_txn.wait(30)
        ItemBuilder(app.storage, clock).add("early", deadlines=deadline)
        [o] = run_digests(app, transport=Recorder())
        assert [e.title for e in o.digest.new] == ["Utlysning early"]
    finally:
        release.set()
        late.join(30)
        other.close()
    clock.advance(days=1)
    [o] = run_digests(app, transport=Recorder())
    assert [e.title for e in o.digest.new] == ["Utlysning late"]
    clock.advance(days=1)
    [o] = run_digests(app, transport=Recorder())
    assert o.skipped_reason == "nothing new"
    seen = DeliveryStore(app.storage).network_history("net", clock()).seen
    assert len(seen.items.ranges) == 1  # every hole settled


def test_closing_soon_reads_only_items_with_a_deadline_in_the_window(any_storage, clock):
    """A digest after a network's first reads, for "closing soon", only the items with a
    deadline ahead within the window (a two-stage call by its next stage), not every open
    call; a first digest still reads every current one."""
    items = ItemBuilder(any_storage, clock)
    d = timedelta(days=1)
    soon = items.add("soon", deadlines=[clock() + 5 * d])
    two_stage = items.add("two", deadlines=[clock() - 2 * d, clock() + 6 * d, clock() + 90 * d])
    later = items.add("later", deadlines=[clock() + 40 * d])
    items.add("closed", status="closed", deadlines=[clock() + 3 * d])
    items.add("passed", deadlines=[clock() - 3 * d])
    store = DeliveryStore(any_storage)
    assert store.closing_soon_ids(clock(), clock() + 14 * d) == sorted([soon, two_stage])
    assert later in store.current_item_ids(clock())
