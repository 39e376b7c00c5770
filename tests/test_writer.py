"""The batch writer: polls' writes queued, run in order, several per transaction; one bad
write fails alone; the duplicate index never keeps what a rolled-back transaction wrote."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, event
from sqlalchemy.dialects import sqlite

from tests.builders import CALL, GOOD, OTHER, SRC, items, poll_into, src
from tests.conftest import T0
from watcher.config import SourceConfig
from watcher.exceptions import StorageError
from watcher.pipeline.track import candidate_keys, decide
from watcher.storage import ItemFilter, Storage, Transaction
from watcher.storage.schema import UtcDateTime
from watcher.storage.writer import BatchWriter
from watcher.types import (
    Classification,
    Evidence,
    PollResult,
    PollStatus,
    RawItem,
    Tag,
    Unchanged,
)


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
        [cand] = txn.duplicate_candidates("other", *candidate_keys(its[:1]))
        assert storage.get_item(cand.item_id) is None  # not committed: other connections
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError), storage.begin() as conn:
        txn = Transaction(storage, conn)
        apply_call(txn)
        then_fail(txn)
    assert storage.count_items() == 0
    assert storage.duplicate_candidates("other", *candidate_keys(its[:1])) == []


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


# ── merges and takeovers (storage level) ──────────────────────────────────────────────


def poll_at(storage: Storage, source: SourceConfig, raw: RawItem, minutes: int) -> Any:
    return poll_into(storage, source, [raw], now=T0 + timedelta(minutes=minutes))


NEWS = RawItem(
    key="n1",
    title="Ny utlysning: HORIZON-CL5-2027-01-D3-02 om vätgas",
    link="https://vinnova.example/n1",
    budget="50 miljoner kronor",
    opening="2026-10-01",
    deadlines=("2027-03-16",),
    programme="Horisont Europa",
)
CALL_ITSELF = RawItem(
    key="HORIZON-CL5-2027-01-D3-02",
    title="Hydrogen valleys",
    link="https://ec.example/x",
    identifier="HORIZON-CL5-2027-01-D3-02",
    kind="call",
)


def test_a_takeover_keeps_what_only_the_news_item_knew(any_storage: Storage) -> None:
    [news_id] = poll_at(any_storage, SRC, NEWS, 0).new_ids
    out = poll_at(any_storage, OTHER, CALL_ITSELF, 60)
    assert out.merged_ids == (news_id,) and out.new_ids == ()
    item = any_storage.get_item(news_id)
    assert item is not None
    assert (item.source_id, item.title, item.identifier) == (
        "ft",
        "Hydrogen valleys",
        "HORIZON-CL5-2027-01-D3-02",
    )
    assert item.budget == "50 miljoner kronor" and item.programme == "Horisont Europa"
    assert item.opening is not None and len(item.deadlines) == 1
    [merged] = [h for h in any_storage.item_history(news_id) if h.kind == "merged"]
    fields = {c["field"]: c for c in merged.changes}
    assert "the record now comes from ft" in fields["sources"]["reason"]
    assert fields["title"]["old"].startswith("Ny utlysning") and fields["kind"]["new"] == "call"
    assert "budget" not in fields  # kept, so not a change
    # The index knows the call now: a later page naming it merges as usual.
    later = RawItem(
        key="x2",
        title="Påminnelse om HORIZON-CL5-2027-01-D3-02",
        link="https://region.example/x2",
    )
    third = SourceConfig(id="region", name="Region", kind="rss", url="https://region.example/")
    assert poll_at(any_storage, third, later, 120).merged_ids == (news_id,)


STAGE1 = RawItem(
    key="s1",
    title="Hydrogen valleys, first stage",
    identifier="HORIZON-CL5-2027-01-D3-01",
    kind="call",
    link="https://b.example/s1",
    deadlines=("2027-03-01",),
)
STAGE2 = RawItem(  # its title names stage 1; same deadline day
    key="s2",
    title="Second stage for proposals passing HORIZON-CL5-2027-01-D3-01",
    identifier="HORIZON-CL5-2027-01-D3-02",
    kind="call",
    link="https://a.example/s2",
    deadlines=("2027-03-01",),
)


@pytest.mark.parametrize("stage2_first", [True, False], ids=["stage2-first", "stage1-first"])
def test_a_call_whose_title_names_another_call_is_not_that_call(
    storage: Storage, stage2_first: bool
) -> None:
    """Two identifiers are two calls, in either order."""
    first, second = (STAGE2, STAGE1) if stage2_first else (STAGE1, STAGE2)
    poll_at(storage, OTHER, first, 0)
    out = poll_at(storage, SRC, second, 60)
    assert len(out.new_ids) == 1 and out.merged_ids == ()
    [stored] = storage.get_items(list(out.new_ids))
    assert stored.identifier == second.identifier
    assert storage.count_items() == 2


def test_no_takeover_of_an_item_that_has_an_identifier_of_its_own(storage: Storage) -> None:
    """A merge gave the news item an identifier (a regional call's): it is a call of its own
    now, and the EU call naming no one is stored beside it, not over it."""
    regional = SourceConfig(id="vgr", name="VGR", kind="rss", url="https://vgr.example/f")
    title = "Ny utlysning HORIZON-CL5-2027-01-D3-02 om vätgas i regionen"
    news = RawItem(key="n", title=title, link="https://a.example/n", deadlines=("2027-03-16",))
    regional_call = RawItem(
        key="v",
        title=title,
        link="https://v.example/n",
        deadlines=("2027-03-16",),
        identifier="VGR-2027-0001",
    )
    [news_id] = poll_at(storage, SRC, news, 0).new_ids
    assert poll_at(storage, regional, regional_call, 1).merged_ids == (news_id,)
    out = poll_at(storage, OTHER, CALL_ITSELF, 2)
    assert len(out.new_ids) == 1
    item = storage.get_item(news_id)
    assert item is not None and (item.source_id, item.identifier) == ("esf", "VGR-2027-0001")


def test_a_locked_database_fails_the_batch_once_without_running_each_job_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "watcher.db"
    storage = Storage(f"sqlite:///{path}")
    storage.upgrade()

    @event.listens_for(storage.engine, "connect")
    def short_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=100")

    storage.engine.dispose()
    runs: list[str] = []

    def counted(source_id: str) -> Any:
        job = not_modified(source_id)

        def run(txn: Transaction) -> str:
            runs.append(source_id)
            return job(txn)  # type: ignore[no-any-return]

        return run

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        out = storage.run_batch([counted(f"s{n}") for n in range(5)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert all(isinstance(o, StorageError) and o.code == "db_busy" for o in out)
    # No job ran a second time, one by one (a 304's record waits for the batch's end, so
    # the jobs all ran once before the lock was met).
    assert len(runs) == len(set(runs))
    storage.close()


async def test_a_failing_read_of_all_states_leaves_each_poll_to_read_its_own(
    make_app: Any, loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import fetch_settings

    loopback.add("/a.xml", GOOD, content_type="application/rss+xml")
    loopback.add("/b.xml", GOOD, content_type="application/rss+xml")
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [src("a", loopback.url("/a.xml")), src("b", loopback.url("/b.xml"))],
        }
    )

    def locked(**_kwargs: Any) -> None:
        raise StorageError("database error in source_states: database is locked")

    monkeypatch.setattr(app.storage, "source_states", locked)
    results = await app.poll()
    assert [(r.source_id, r.status.value) for r in results] == [("a", "ok"), ("b", "ok")]


def test_the_app_keeps_no_writer_for_a_closed_event_loop(make_app: Any) -> None:
    app = make_app({"sources": []})

    async def write() -> None:
        await app._writer().run(not_modified("s"))

    for _ in range(3):
        asyncio.run(write())
    gc.collect()
    assert len(app._writers) == 0


def test_a_takeover_records_only_real_changes(storage: Storage) -> None:
    """The same opening and deadline from both sources is no change, whatever offsets the
    values carry (stored ones come back in UTC)."""
    [news_id] = poll_at(storage, SRC, NEWS, 0).new_ids
    same = RawItem(
        **{
            **CALL_ITSELF.__dict__,
            "opening": "2026-10-01",
            "deadlines": ("2027-03-16",),
            "budget": "50 miljoner kronor",
        }
    )
    poll_at(storage, OTHER, same, 60)
    [merged] = [h for h in storage.item_history(news_id) if h.kind == "merged"]
    assert {c["field"] for c in merged.changes} == {"sources", "title", "link", "kind"}


def test_the_calls_later_updates_keep_what_other_sources_gave(storage: Storage) -> None:
    """After a takeover, the call's own update rewrites what it changed (its title), not
    the budget, programme, dates and status only the news item gave."""
    [news_id] = poll_at(storage, SRC, NEWS, 0).new_ids
    poll_at(storage, OTHER, CALL_ITSELF, 60)
    before = storage.get_item(news_id)
    renamed = RawItem(**{**CALL_ITSELF.__dict__, "title": "Hydrogen valleys (updated)"})
    assert poll_at(storage, OTHER, renamed, 120).updated_ids == (news_id,)
    item = storage.get_item(news_id)
    assert item is not None and before is not None
    assert item.title == "Hydrogen valleys (updated)"
    assert (item.budget, item.programme, item.opening, item.deadlines, item.status) == (
        before.budget,
        before.programme,
        before.opening,
        before.deadlines,
        before.status,
    )
    assert item.budget == "50 miljoner kronor" and len(item.deadlines) == 1
    # A field the call itself changes is rewritten, even to nothing.
    no_programme = RawItem(**{**renamed.__dict__, "programme": "Horizon Europe"})
    poll_at(storage, OTHER, no_programme, 180)
    assert storage.get_item(news_id).programme == "Horizon Europe"  # type: ignore[union-attr]


def test_a_takeover_keeps_a_budget_whole(storage: Storage) -> None:
    news = RawItem(**{**NEWS.__dict__, "budget_amount": 50e6, "currency": "SEK"})
    [news_id] = poll_at(storage, SRC, news, 0).new_ids
    call = RawItem(**{**CALL_ITSELF.__dict__, "budget": "EUR 12 000 000"})
    poll_at(storage, OTHER, call, 60)
    item = storage.get_item(news_id)
    assert item is not None and item.budget == "EUR 12 000 000"
    assert (item.budget_amount, item.currency) != (50e6, "SEK")  # never the news item's half


def test_records_made_by_several_sources_are_left_for_tagging_from_what_is_stored(
    storage: Storage,
) -> None:
    """A takeover, and the call's later update while the news page is linked, report the
    item as a merged record: the poll's tags of the call's entry alone are not written
    over the item's (the poller tags it from the stored record)."""
    energy = Classification((Tag("theme", "energy", "r1", (Evidence("summary", "vätgas"),)),), True)
    nothing = Classification((), False, "no rule")

    def poll_tagged(source: SourceConfig, raw: RawItem, minutes: int, cls: Classification) -> Any:
        its = items(source, raw, now=T0 + timedelta(minutes=minutes))
        cands = storage.duplicate_candidates(source.id, *candidate_keys(its))
        intents = [
            replace(i, classification=cls) if not isinstance(i, Unchanged) else i
            for i in decide(its, storage.known_slices(source.id), cands)
        ]
        return storage.apply(
            source.id,
            intents,
            PollResult(source.id, PollStatus.OK, parsed=1),
            T0 + timedelta(minutes=minutes),
        )

    [news_id] = poll_tagged(SRC, NEWS, 0, energy).new_ids
    taken = poll_tagged(OTHER, CALL_ITSELF, 60, nothing)
    assert taken.merged_records == (news_id,)
    renamed = RawItem(**{**CALL_ITSELF.__dict__, "title": "Hydrogen valleys (updated)"})
    update = poll_tagged(OTHER, renamed, 120, nothing)
    assert update.updated_ids == (news_id,) and update.merged_records == (news_id,)
    item = storage.get_item(news_id)
    assert item is not None and item.relevant and item.tag_ids("theme") == ["energy"]


def test_an_owners_update_never_reopens_a_call_its_kept_deadline_closed(
    storage: Storage,
) -> None:
    """The call took over a news item that knew the deadline; the call itself gives no
    dates, so its own status reads "open". After the deadline the item is closed, and the
    call's next update (a new title) leaves it closed."""
    [news_id] = poll_at(storage, SRC, NEWS, 0).new_ids
    poll_at(storage, OTHER, CALL_ITSELF, 60)
    after = datetime(2027, 4, 1, 9, 0, tzinfo=UTC)
    storage.refresh_statuses(after)
    assert storage.get_item(news_id).status == "closed"  # type: ignore[union-attr]
    renamed = RawItem(**{**CALL_ITSELF.__dict__, "title": "Hydrogen valleys (updated)"})
    out = poll_into(storage, OTHER, [renamed], now=after)
    assert out.updated_ids == (news_id,)
    item = storage.get_item(news_id)
    assert item is not None
    assert (item.title, item.status) == ("Hydrogen valleys (updated)", "closed")
    last = storage.item_history(news_id)[-1]
    assert [c["field"] for c in last.changes] == ["title"]


def test_an_unreachable_postgresql_fails_the_batch_once() -> None:
    storage = Storage("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    attempts: list[str] = []
    event.listen(storage.engine, "do_connect", lambda *_args: attempts.append("connect"))
    runs: list[str] = []

    def job(txn: Transaction) -> None:
        runs.append("ran")

    out = storage.run_batch([job, job, job])
    assert all(isinstance(o, StorageError) for o in out) and len(out) == 3
    assert runs == [] and len(attempts) == 1  # not one connection attempt per job
    storage.close()


async def test_polls_answered_not_modified_are_written_together(any_storage: Storage) -> None:
    """A round of 304s is two statements per batch, not two per source: the state rows
    (there since each source's first success) and the poll log, each as one executemany."""
    writer = BatchWriter(any_storage)
    await asyncio.gather(*(writer.run(not_modified(f"s{n}")) for n in range(6)))  # first rows
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(any_storage.engine, "before_cursor_execute", count)
    try:
        writer = BatchWriter(any_storage)
        await asyncio.gather(*(writer.run(not_modified(f"s{n}")) for n in range(6)))
    finally:
        event.remove(any_storage.engine, "before_cursor_execute", count)
    assert writer.batches == 1
    assert statements.count("UPDATE") == 1 and statements.count("INSERT") == 1
    assert [len(any_storage.poll_history(f"s{n}")) for n in range(6)] == [2] * 6


def test_a_batch_indexes_its_new_items_for_search_even_when_a_later_poll_takes_one_over(
    any_storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch puts its new items into SQLite's full-text index when it ends, in one
    statement; a poll later in the same batch that takes over one of them (its title
    changes, which a trigger re-indexes) must find it indexed already, or the index would
    be corrupt. Both polls' items are found by their words once the batch is written."""

    def poll(source: SourceConfig, raw: RawItem, minutes: int) -> Any:
        def job(txn: Transaction) -> Any:
            its = items(source, raw, now=T0 + timedelta(minutes=minutes))
            cands = txn.duplicate_candidates(source.id, *candidate_keys(its))
            intents = decide(its, txn.known_slices(source.id), cands)
            result = PollResult(source.id, PollStatus.OK, parsed=len(its))
            return txn.apply(source.id, intents, result, T0 + timedelta(minutes=minutes))

        return job

    third = SourceConfig(id="region", name="Region", kind="rss", url="https://region.example/")
    news, takeover, plain = any_storage.run_batch(
        [poll(SRC, NEWS, 0), poll(OTHER, CALL_ITSELF, 1), poll(third, CALL, 2)]
    )
    assert not isinstance(news, Exception) and not isinstance(takeover, Exception)
    assert not isinstance(plain, Exception)
    assert takeover.merged_ids == news.new_ids  # in the batch, not after it
    assert "one by one" not in caplog.text  # the batch was written whole, not job by job
    if any_storage.engine.dialect.name == "sqlite":
        with any_storage.engine.begin() as conn:  # raises when the index is corrupt
            conn.exec_driver_sql("INSERT INTO items_fts (items_fts) VALUES ('integrity-check')")

    def found(text: str) -> list[int]:
        return [i.id for i in any_storage.list_items(ItemFilter(text=text))]

    assert found("hydrogen valleys") == list(news.new_ids)
    assert found("kompetensförsörjning") == list(plain.new_ids)


def test_a_write_transaction_holds_sqlites_write_lock_from_its_first_read(tmp_path: Path) -> None:
    """What a poll's write reads first (what its source already stores, the duplicates of
    its items) must not change in another process before the write: on SQLite the driver
    begins a transaction only at its first write, so the transaction takes the write lock
    from the start. Another process that writes in between waits (here: fails, with a short
    busy timeout) instead of storing the same call a second time."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    ours, other = Storage(url), Storage(url, busy_timeout=0.2)
    ours.upgrade()
    meanwhile: list[str] = []

    def job(txn: Transaction) -> Any:
        its = items(SRC, CALL)
        known = txn.known_slices(SRC.id)  # the transaction's first statement: a read
        cands = txn.duplicate_candidates(SRC.id, *candidate_keys(its))
        try:
            poll_into(other, OTHER, [replace(CALL, key="x")])  # the same call, elsewhere
            meanwhile.append("stored")
        except StorageError as e:
            meanwhile.append(e.code)
        intents = decide(its, known, cands)
        return txn.apply(SRC.id, intents, PollResult(SRC.id, PollStatus.OK, parsed=1), T0)

    try:
        (outcome,) = ours.run_batch([job])
        assert meanwhile == ["db_busy"]
        assert not isinstance(outcome, Exception) and len(outcome.new_ids) == 1
        assert ours.count_items() == 1
    finally:
        ours.close()
        other.close()
