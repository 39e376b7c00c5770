"""A new database is made in one step (``watcher.storage.fresh``): it must be the database
the migrations make one after the other, on both databases, to the last index, trigger
and generated column, and at the same revision."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from tests.conftest import pg_schema_url
from watcher.storage import Storage, base, fresh


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes new, empty databases of one kind (their URLs), dropped after the test."""
    with ExitStack() as cleanup:

        def make() -> str:
            if request.param == "sqlite":
                return f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
            schemas = pg_schema_url()
            url = next(schemas)
            cleanup.callback(next, schemas, None)  # drops the schema
            return url

        yield make


def _tables(storage: Storage) -> list[str]:
    with storage.engine.connect() as conn:
        return inspect(conn).get_table_names()


def _schema(engine: Engine) -> dict[str, Any]:
    """Everything about the schema that can differ: per table its columns (type,
    nullability, default, generated expression), keys, indexes and checks; on SQLite the
    triggers and the FTS table's definition; the revision."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        insp = inspect(conn)
        for table in sorted(insp.get_table_names()):
            columns = {
                c["name"]: (
                    str(c["type"]),
                    c["nullable"],
                    c.get("default"),
                    str(c.get("computed", {}).get("sqltext")) if c.get("computed") else None,
                )
                for c in insp.get_columns(table)
            }
            indexes = {
                i["name"]: (tuple(i["column_names"]), bool(i["unique"]), i.get("expressions"))
                for i in insp.get_indexes(table)
            }
            foreign = sorted(
                (
                    tuple(f["constrained_columns"]),
                    f["referred_table"],
                    tuple(f["referred_columns"]),
                    tuple(sorted((f.get("options") or {}).items())),
                )
                for f in insp.get_foreign_keys(table)
            )
            uniques = sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table))
            checks = sorted(_squeeze(c["sqltext"]) for c in insp.get_check_constraints(table))
            primary = tuple(insp.get_pk_constraint(table)["constrained_columns"])
            out[table] = (columns, indexes, foreign, uniques, checks, primary)
        if conn.dialect.name == "sqlite":
            for kind, name, sql in conn.execute(
                text(
                    "SELECT type, name, sql FROM sqlite_master WHERE type = 'trigger' OR name = 'items_fts'"
                )
            ):
                out[f"{kind} {name}"] = _squeeze(sql)
        else:
            # Without schema names: the tests' databases are schemas of one database, and
            # pg_trgm lives in whichever made it first.
            out["indexes using gin"] = sorted(
                re.sub(r"\b\w+\.(items|gin_trgm_ops)\b", r"\1", _squeeze(r[0]))
                for r in conn.execute(
                    text(
                        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                        "AND indexdef LIKE '%USING gin%'"
                    )
                )
            )
    out["revision"] = base.current_revision(engine)
    return out


def _squeeze(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def test_a_new_database_is_the_one_the_migrations_make(new_database) -> None:
    migrated, made = Storage(new_database()), Storage(new_database())
    try:
        base.migrate(migrated.engine)
        assert _tables(made) == []
        made.ensure_schema()  # new: made in one step
        assert _tables(made) != []
        expected, got = _schema(migrated.engine), _schema(made.engine)
    finally:
        migrated.close()
        made.close()
    assert got["revision"] == base.HEAD_REVISION
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key] == expected[key], key


def test_a_database_made_in_one_step_takes_the_next_migration(tmp_path: Path) -> None:
    """It is stamped at the newest revision as Alembic stamps: Alembic reads the same
    revision, and a database with tables goes through Alembic (``migrate``)."""
    from alembic.runtime.migration import MigrationContext

    storage = Storage(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        storage.ensure_schema()
        with storage.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == base.HEAD_REVISION
        base.upgrade(storage.engine)  # not new: Alembic finds nothing to do
        assert storage.revision() == base.HEAD_REVISION
    finally:
        storage.close()


def test_a_start_that_fails_while_making_the_database_leaves_it_empty(
    new_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing: tables without a revision would send the next start to the
    migrations, which fail on tables that exist, on every start after."""
    from watcher.exceptions import StorageError

    url = new_database()
    broken = "CREATE VIRTUAL TABLE nope USING no_such_module()"
    if not url.startswith("sqlite"):
        broken = "SELECT no_such_function()"
    monkeypatch.setattr(fresh, "SQLITE_SEARCH", (*fresh.SQLITE_SEARCH, broken))
    monkeypatch.setattr(fresh, "POSTGRESQL_SEARCH", (*fresh.POSTGRESQL_SEARCH, broken))
    storage = Storage(url)
    try:
        with pytest.raises(StorageError, match="made again on the next start"):
            storage.ensure_schema()
        assert _tables(storage) == []
        monkeypatch.undo()
        storage.ensure_schema()
        assert storage.revision() == base.HEAD_REVISION
    finally:
        storage.close()


def test_processes_starting_together_on_a_new_database_take_turns(
    new_database: Callable[[], str],
) -> None:
    """One makes the schema; the others find it made and go on."""
    import threading

    url = new_database()
    storages = [Storage(url) for _ in range(3)]
    start = threading.Barrier(len(storages))
    errors: list[BaseException] = []

    def begin(storage: Storage) -> None:
        start.wait()
        try:
            storage.ensure_schema()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=begin, args=(s,)) for s in storages]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert {s.revision() for s in storages} == {base.HEAD_REVISION}
    finally:
        for s in storages:
            s.close()
