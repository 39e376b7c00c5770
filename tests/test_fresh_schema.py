"""A new database is made in one step (``watcher.storage.fresh``): it must be the database
the migrations make one after the other, on both databases, to the last index, trigger
and generated column, and at the same revision."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from tests.conftest import pg_schema_url
from watcher.storage import Storage, base, fresh


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def two_empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Storage, Storage]]:
    """Two empty databases of one kind."""
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"]
        made = [Storage(u) for u in urls]
        yield made[0], made[1]
        for s in made:
            s.close()
        return
    for first in pg_schema_url():
        for second in pg_schema_url():
            a, b = Storage(first), Storage(second)
            try:
                yield a, b
            finally:
                a.close()
                b.close()


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


def test_a_new_database_is_the_one_the_migrations_make(two_empty) -> None:
    migrated, made = two_empty
    base.migrate(migrated.engine)
    assert fresh.is_new(made.engine)
    made.ensure_schema()  # new: made in one step
    assert not fresh.is_new(made.engine)
    expected, got = _schema(migrated.engine), _schema(made.engine)
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.db'}"
    else:
        yield from pg_schema_url()


def test_a_start_that_fails_while_making_the_database_leaves_it_empty(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing: tables without a revision would send the next start to the
    migrations, which fail on tables that exist, on every start after."""
    from watcher.exceptions import StorageError

    broken = "CREATE VIRTUAL TABLE nope USING no_such_module()"
    if not empty_url.startswith("sqlite"):
        broken = "SELECT no_such_function()"
    monkeypatch.setattr(fresh, "SQLITE_SEARCH", (*fresh.SQLITE_SEARCH, broken))
    monkeypatch.setattr(fresh, "POSTGRESQL_SEARCH", (*fresh.POSTGRESQL_SEARCH, broken))
    storage = Storage(empty_url)
    try:
        with pytest.raises(StorageError, match="made again on the next start"):
            storage.ensure_schema()
        assert fresh.is_new(storage.engine)
        monkeypatch.undo()
        storage.ensure_schema()
        assert storage.revision() == base.HEAD_REVISION
    finally:
        storage.close()


def test_processes_starting_together_on_a_new_database_take_turns(empty_url: str) -> None:
    """One makes the schema; the others find it made and go on."""
    import threading

    storages = [Storage(empty_url) for _ in range(3)]
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
