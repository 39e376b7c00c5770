"""The batch writer: polls' writes queued, run in order, several per transaction; one bad
write fails alone; the duplicate index never keeps what a rolled-back transaction wrote."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from tests.conftest import T0
from tests.test_storage import CALL, SRC, items
from watcher.exceptions import StorageError
from watcher.pipeline.track import decide
from watcher.pipeline.writer import BatchWriter
from watcher.storage import Storage
from watcher.storage.schema import UtcDateTime
from watcher.storage.store import Transaction
from watcher.types import PollResult, PollStatus


def not_modified(source_id: str) -> Any:
    def job(txn: Transaction) -> str:
        txn.record_not_modified(
            source_id, PollResult(source_id, PollStatus.NOT_MODIFIED), T0, ('"v1"', None)
        )
        return source_id

    return job


def failing(source_id: str) -> Any:
    def job(txn: Transaction) -> str:
        txn.record_not_modified(
            source_id, PollResult(source_id, PollStatus.NOT_MODIFIED), T0, (None, None)
        )
        raise RuntimeError(f"{source_id} broke")

    return job


async def test_queued_writes_share_one_transaction_in_order(any_storage: Storage) -> None:
    writer = BatchWriter(any_storage)
    done = await asyncio.gather(*(writer.run(not_modified(f"s{n}")) for n in range(5)))
    assert done == [f"s{n}" for n in range(5)]
    assert writer.batches == 1
    for n in range(5):
        assert any_storage.source_state(f"s{n}").etag == '"v1"'


async def test_one_failing_write_fails_alone(any_storage: Storage) -> None:
    writer = BatchWriter(any_storage)
    jobs = [not_modified("a"), failing("b"), not_modified("c")]
    outcomes = await asyncio.gather(*(writer.run(j) for j in jobs), return_exceptions=True)
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], RuntimeError) and "b broke" in str(outcomes[1])
    assert any_storage.source_state("a").last_success_at == T0
    assert any_storage.source_state("c").last_success_at == T0
    assert any_storage.source_state("b").last_success_at is None  # rolled back whole


def test_a_database_error_in_a_batch_comes_back_as_a_storage_error(storage: Storage) -> None:
    def broken(txn: Transaction) -> None:
        txn._conn.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")

    out = storage.run_batch([not_modified("a"), broken])
    assert out[0] == "a"
    assert isinstance(out[1], StorageError) and "no_such_table" in str(out[1])


def test_the_duplicate_index_forgets_a_rolled_back_write(storage: Storage) -> None:
    """A poll's items enter the duplicate index inside its transaction (the next poll of
    the batch must see them); when the transaction is rolled back they must leave it."""
    its = items(SRC, CALL)

    def apply_call(txn: Transaction) -> tuple[int, ...]:
        intents = decide(its, {}, [])
        result = PollResult(SRC.id, PollStatus.OK, new=1, parsed=1)
        return txn.apply(SRC.id, intents, result, T0).new_ids

    def then_fail(txn: Transaction) -> None:
        # The call is in the index now, under the id this transaction gave it.
        [cand] = txn.duplicate_candidates("other", [], its[0].deadlines)
        assert storage.get_item(cand.item_id) is None  # not committed: other connections
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError), storage.begin() as conn:
        txn = Transaction(storage, conn)
        apply_call(txn)
        then_fail(txn)
    assert storage.count_items() == 0
    assert storage.duplicate_candidates("other", [], its[0].deadlines) == []


def test_sqlite_timestamps_are_written_as_sqlalchemy_writes_them() -> None:
    """Our one-step SQLite timestamp text must equal SQLAlchemy's own (stored values and
    query parameters are compared as strings)."""
    dialect = sqlite.dialect()
    ours = UtcDateTime().bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    for value in (
        datetime(2027, 3, 16, 12, 0, tzinfo=UTC),
        datetime(2027, 3, 16, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1999, 12, 31, 23, 0, 0, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 10, 25, 2, 30, tzinfo=timezone(timedelta(hours=2))),
    ):
        assert ours(value) == theirs(value.astimezone(UTC).replace(tzinfo=None))
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive"):
        ours(datetime(2027, 1, 1))
