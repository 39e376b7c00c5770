"""Self-service subscriptions: the storage room on both databases, the pure parts, and
(further down) the whole flow over HTTP with a real SMTP server on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select

from watcher.storage import Storage
from watcher.storage.schema import deliveries, digests, metadata, optouts
from watcher.storage.subscriptions import PENDING_TTL, Choice, confirm_hash

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
NETWORK = Choice("network", network_id="gr-eu")
TOPICS = Choice("topics", areas=("kompetens",), themes=("utbildning",))


# -- storage ------------------------------------------------------------------------------


def test_a_choice_is_pending_until_confirmed(any_storage: Storage) -> None:
    sub = any_storage.add_subscription("Anna@Kommun.se", NETWORK, confirm_hash("s3cret"), T0)
    person = any_storage.subscriber("anna@kommun.se")
    assert person is not None and person.address == "anna@kommun.se"
    assert [s.status for s in person.subscriptions] == ["pending"]
    assert any_storage.network_subscribers() == {}
    assert any_storage.pending_subscription(sub, confirm_hash("wrong"), T0) is None
    assert any_storage.confirm_subscription(sub, confirm_hash("wrong"), T0) is None
    assert any_storage.pending_subscription(sub, confirm_hash("s3cret"), T0) == (
        "anna@kommun.se",
        NETWORK,
    )
    assert any_storage.confirm_subscription(sub, confirm_hash("s3cret"), T0) == "anna@kommun.se"
    assert any_storage.network_subscribers() == {"gr-eu": ("anna@kommun.se",)}
    # A link works once.
    assert any_storage.confirm_subscription(sub, confirm_hash("s3cret"), T0) is None


def test_a_stale_link_confirms_nothing_and_is_cleared(any_storage: Storage) -> None:
    sub = any_storage.add_subscription("a@kommun.se", NETWORK, confirm_hash("x"), T0)
    late = T0 + PENDING_TTL + timedelta(minutes=1)
    assert any_storage.confirm_subscription(sub, confirm_hash("x"), late) is None
    any_storage.add_subscription("b@kommun.se", TOPICS, confirm_hash("y"), late)
    assert any_storage.subscriber("a@kommun.se") is None  # nothing left of a


def test_confirming_twice_the_same_choice_keeps_one(any_storage: Storage) -> None:
    a = any_storage.add_subscription("a@kommun.se", TOPICS, confirm_hash("1"), T0)
    b = any_storage.add_subscription("a@kommun.se", TOPICS, confirm_hash("2"), T0)
    any_storage.confirm_subscription(a, confirm_hash("1"), T0)
    any_storage.confirm_subscription(b, confirm_hash("2"), T0)
    person = any_storage.subscriber("a@kommun.se")
    assert person is not None and [s.id for s in person.active] == [b]
    assert person.personal_id.startswith("p-")


def test_change_frequency_and_end(any_storage: Storage) -> None:
    a = any_storage.add_subscription("a@kommun.se", TOPICS, confirm_hash("1"), T0)
    n = any_storage.add_subscription("a@kommun.se", NETWORK, confirm_hash("2"), T0)
    any_storage.confirm_subscription(a, confirm_hash("1"), T0)
    any_storage.confirm_subscription(n, confirm_hash("2"), T0)
    assert any_storage.set_frequency("a@kommun.se", "daily")
    changed = Choice("topics", areas=("partners",))
    assert any_storage.change_subscription("a@kommun.se", a, changed)
    assert not any_storage.change_subscription("b@kommun.se", a, changed)
    person = any_storage.subscriber("a@kommun.se")
    assert person is not None and person.frequency == "daily"
    assert person.personal[0].choice.areas == ("partners",)
    assert any_storage.end_subscriptions("a@kommun.se", [n]) == 1
    assert any_storage.network_subscribers() == {}
    assert any_storage.end_subscriptions("a@kommun.se") == 1
    assert any_storage.subscriber("a@kommun.se") is None  # nobody kept without a choice


def test_deleting_a_person_removes_everything_of_theirs(any_storage: Storage) -> None:
    a = any_storage.add_subscription("a@kommun.se", TOPICS, confirm_hash("1"), T0)
    any_storage.confirm_subscription(a, confirm_hash("1"), T0)
    person = any_storage.subscriber("a@kommun.se")
    assert person is not None
    with any_storage.begin() as conn:
        own = conn.execute(
            insert(digests)
            .values(network_id=person.personal_id, window_end=T0, created_at=T0, status="done")
            .returning(digests.c.id)
        ).scalar_one()
        other = conn.execute(
            insert(digests)
            .values(network_id="gr-eu", window_end=T0, created_at=T0, status="done")
            .returning(digests.c.id)
        ).scalar_one()
        for digest_id, addr, mid in (
            (own, "a@kommun.se", "<1@x>"),
            (other, "A@kommun.se", "<2@x>"),
            (other, "b@kommun.se", "<3@x>"),
        ):
            conn.execute(
                insert(deliveries).values(
                    digest_id=digest_id, address=addr, message_id=mid, status="sent"
                )
            )
        conn.execute(insert(optouts).values(network_id="gr-eu", address="a@kommun.se", at=T0))
    assert any_storage.delete_subscriber("A@kommun.se")
    assert not any_storage.delete_subscriber("a@kommun.se")
    with any_storage.engine.connect() as conn:
        assert conn.execute(select(deliveries.c.address)).scalars().all() == ["b@kommun.se"]
        assert conn.execute(select(digests.c.network_id)).scalars().all() == ["gr-eu"]
        assert conn.execute(select(optouts)).all() == []
    assert any_storage.subscribers() == []


def test_the_tables_are_what_the_migration_makes(any_storage: Storage) -> None:
    with any_storage.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)

    def mine(diff: Any) -> bool:
        return any("subscri" in repr(x) for x in (diff if isinstance(diff, list) else [diff]))

    assert [d for d in diffs if mine(d)] == []
