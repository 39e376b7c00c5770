"""``base.insert_rows``: many rows in few statements, stored exactly as SQLAlchemy stores them.

On SQLite the rows go to the driver as tuples (SQLAlchemy's per-row work was most of a first
poll's write time); these tests hold the stored values equal to what SQLAlchemy's own insert
writes: type conversions (UTC datetimes as text, JSON, booleans), a JSON column's None,
Python-side defaults of columns left out, and the rows a taken key skips.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from watcher.storage import Storage, base
from watcher.storage.schema import item_changes, items

AT = datetime(2027, 3, 16, 11, 0, 5, 123, tzinfo=UTC)


def record(uid: str, **over: Any) -> dict[str, Any]:
    """An items row as the poller writes it, leaving out columns that have defaults
    (``held``, ``baseline``, ``relevant``, ``extra``…)."""
    values: dict[str, Any] = {
        "uid": uid,
        "source_id": "s1",
        "title": f"Utlysning {uid}",
        "link": f"https://example.org/{uid}",
        "summary": "Sista ansökningsdag 16 mars 2027.",
        "language": "sv",
        "kind": "call",
        "status": "open",
        "programme": None,
        "identifier": None,
        "published": None,
        "opening": AT - timedelta(days=30),
        "deadline": AT.astimezone(UTC).replace(hour=23),
        "deadlines": [AT.isoformat()],
        "budget": None,
        "budget_amount": 1.5e6,
        "currency": "SEK",
        "regions": ["Västra Götaland"],
        "topics": [],
        "content_hash": "h",
        "first_seen": AT,
        "last_seen": AT,
        "incomplete": None,  # a JSON column's None, as SQLAlchemy stores it
        "search_text": "utlysning",
    }
    return values | over


def stored(storage: Storage, uid: str) -> dict[str, Any]:
    with storage.engine.connect() as conn:
        row = conn.execute(select(items).where(items.c.uid == uid)).mappings().one()
        raw = conn.exec_driver_sql(
            "SELECT deadline, incomplete, extra, relevant FROM items WHERE uid = "
            + ("?" if conn.dialect.name == "sqlite" else "%s"),
            (uid,),
        ).one()
    return {k: v for k, v in row.items() if k not in ("id", "uid", "title", "link")} | {
        "raw": tuple(raw)
    }


def test_rows_are_stored_as_sqlalchemy_stores_them(any_storage: Storage) -> None:
    with any_storage.engine.begin() as conn:
        conn.execute(insert(items), [record("core")])
        returned = base.insert_rows(conn, items, [record("fast")], returning=["uid"])
    assert returned == [("fast",)]
    core, fast = stored(any_storage, "core"), stored(any_storage, "fast")
    assert fast == core
    assert fast["deadline"] == AT.replace(hour=23)  # an aware UTC datetime again
    assert fast["extra"] == {} and fast["held"] is False and fast["relevant"] is True


def test_taken_keys_are_skipped_and_only_new_rows_return(any_storage: Storage) -> None:
    # More rows than one SQLite statement takes (32,766 parameters ÷ the columns), so the
    # rows go in several statements and every statement's new ids come back.
    uids = [f"u{i}" for i in range(2_500)]
    with any_storage.engine.begin() as conn:
        base.insert_rows(conn, items, [record(u) for u in uids[:10]])
        got = base.insert_rows(
            conn,
            items,
            # A key twice in one call: its first row is stored, and returned once.
            [record(u) for u in uids] + [record(uids[-1])],
            skip_taken=["uid"],
            returning=["id", "uid"],
        )
        total = {u: i for u, i in conn.execute(select(items.c.uid, items.c.id))}
    assert sorted(u for _i, u in got) == sorted(uids[10:])
    assert {u: i for i, u in got} == {u: total[u] for u in uids[10:]}  # each row's own id
    assert len(total) == 2_500


def test_no_other_process_stores_a_key_between_the_read_and_the_insert(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite the new rows are told from the taken ones by reading the keys first. The
    # driver would begin a transaction only at its first write, so a write transaction
    # (``Storage.begin``) holds the write lock from its start: another process that tries
    # to store the same key in between waits, and fails here (a short busy timeout),
    # instead of having its row reported as this transaction's.
    url = f"sqlite:///{tmp_path / 'w.db'}"
    ours, other = Storage(url), Storage(url, busy_timeout=0.2)
    ours.upgrade()
    run = base.sqlite_run
    tried: list[str] = []

    def between(conn: Any, sql: str, params: Any, *, many: bool = False) -> Any:
        found = run(conn, sql, params, many=many)
        if sql.startswith('SELECT "uid"') and not tried:
            try:
                with other.engine.begin() as theirs:
                    base.insert_rows(theirs, items, [record("a")])
                tried.append("stored")
            except Exception as e:  # the database is locked: ours holds the write lock
                tried.append(type(e).__name__)
        return found

    monkeypatch.setattr(base, "sqlite_run", between)
    try:
        with ours.begin() as conn:
            conn.execute(select(items.c.id)).all()  # a read first, as a poll's job reads
            got = base.insert_rows(
                conn, items, [record("a"), record("b")], skip_taken=["uid"], returning=["uid"]
            )
        assert tried == ["OperationalError"]
        assert sorted(got) == [("a",), ("b",)]  # both are ours
        assert len(stored_uids(ours)) == 2
    finally:
        ours.close()
        other.close()


def stored_uids(storage: Storage) -> list[str]:
    with storage.engine.connect() as conn:
        return list(conn.execute(select(items.c.uid)).scalars())


def test_rows_with_different_keys_each_get_their_defaults(any_storage: Storage) -> None:
    with any_storage.engine.begin() as conn:
        (item_id,) = base.insert_rows(conn, items, [record("a")], returning=["id"])[0]
        base.insert_rows(
            conn,
            item_changes,
            [
                {"item_id": item_id, "source_id": "s1", "at": AT, "kind": "new"},
                {
                    "item_id": item_id,
                    "source_id": "s1",
                    "at": AT,
                    "kind": "updated",
                    "changes": [{"field": "title", "old": "a", "new": "b"}],
                    "notable": True,
                },
            ],
        )
        found = conn.execute(
            select(item_changes.c.kind, item_changes.c.changes, item_changes.c.notable).order_by(
                item_changes.c.id
            )
        ).all()
    assert [tuple(r) for r in found] == [
        ("new", [], False),
        ("updated", [{"field": "title", "old": "a", "new": "b"}], True),
    ]


def test_an_unknown_column_is_an_error_not_a_silent_drop(storage: Storage) -> None:
    with storage.engine.begin() as conn, pytest.raises(ValueError, match="no column"):
        base.insert_rows(conn, items, [record("x", colour="blue")])


def test_new_items_enter_the_search_index_by_range_or_by_list(storage: Storage) -> None:
    """SQLite's full-text index is filled per write: a run of new ids by one range, ids
    with gaps (a taken key skipped in between) by a list; only the ids given."""
    with storage.engine.begin() as conn:
        got = base.insert_rows(
            conn, items, [record(f"i{n}") for n in range(6)], returning=["id", "uid"]
        )
        ids = {uid: item_id for item_id, uid in got}
        storage._index_for_search(conn, [ids["i0"], ids["i1"], ids["i2"]])
        storage._index_for_search(conn, [ids["i3"], ids["i5"]])
        found = conn.exec_driver_sql(
            "SELECT rowid FROM items_fts WHERE items_fts MATCH 'utlysning' ORDER BY rowid"
        ).all()
    assert [r[0] for r in found] == sorted(ids[u] for u in ("i0", "i1", "i2", "i3", "i5"))


def test_a_default_only_the_database_can_compute_is_refused_not_dropped() -> None:
    """A SQL-expression default is what Core renders into its statement; the fast path
    cannot, so it refuses instead of storing NULL. Two tables of one name (each with its own
    metadata) each keep their own columns."""
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, func

    engine = create_engine("sqlite://")
    stamped = Table(
        "t",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("at", String, default=func.current_timestamp()),
    )
    plain = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer))
    with engine.begin() as conn:
        plain.create(conn)
        base.insert_rows(conn, plain, [{"n": 1}])
        assert conn.execute(select(plain.c.n)).scalars().all() == [1]
        with pytest.raises(ValueError, match=r"cannot fill t\.at's default"):
            base.insert_rows(conn, stamped, [{"id": 2}])


def test_a_driver_error_is_sqlalchemys_and_becomes_a_storage_error(any_storage: Storage) -> None:
    """On SQLite the rows go through the driver's own cursor: its errors must still come out
    as SQLAlchemy's (what ``translate_errors`` turns into ``StorageError``), with the
    driver's error kept, and the transaction rolled back."""
    from sqlalchemy.exc import IntegrityError

    from watcher.exceptions import StorageError

    with any_storage.engine.begin() as conn:
        base.insert_rows(conn, items, [record("taken")])

    @base.translate_errors
    def insert_twice() -> None:
        with any_storage.engine.begin() as conn:
            base.insert_rows(conn, items, [record("fresh")])
            base.insert_rows(conn, items, [record("taken")], returning=["id"])

    with pytest.raises(StorageError) as caught:
        insert_twice()
    assert isinstance(caught.value.__cause__, IntegrityError)
    assert caught.value.__cause__.orig is not None
    with any_storage.engine.connect() as conn:
        uids = conn.execute(select(items.c.uid).order_by(items.c.uid)).scalars().all()
    assert uids == ["taken"]  # "fresh" went with the failed transaction
