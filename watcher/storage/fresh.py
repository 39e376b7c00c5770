"""A new database, made in one step: the tables from ``schema.metadata``, the search
indexes that are not tables (SQLite's FTS5 table and triggers, PostgreSQL's generated
tsvector column and its GIN indexes), and Alembic's version table at the newest revision.

This is the schema the migrations build one after the other (Alembic's recipe "building an
up to date database from scratch"), without loading Alembic and every migration script: a
first start took 0.14 s and 13 MiB more for them, which a process kept for as long as it
ran. A database with any table in it goes through the migrations as before. A test builds
a database both ways, on both databases, and finds the same schema.
"""

from __future__ import annotations

import logging

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from watcher.storage.schema import metadata

log = logging.getLogger(__name__)

# Migrations 0008 and 0013: an external-content FTS5 index over title and search_text,
# kept in step by triggers on update and delete (new items enter it in bulk,
# ``ItemsRoom._index_for_search``).
SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE items_fts USING fts5(title, search_text, content='items', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 0', prefix='3')",
    "CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN "
    "INSERT INTO items_fts(items_fts, rowid, title, search_text) "
    "VALUES ('delete', old.id, old.title, old.search_text); END",
    "CREATE TRIGGER items_fts_update AFTER UPDATE OF title, search_text ON items BEGIN "
    "INSERT INTO items_fts(items_fts, rowid, title, search_text) "
    "VALUES ('delete', old.id, old.title, old.search_text); "
    "INSERT INTO items_fts(rowid, title, search_text) "
    "VALUES (new.id, new.title, new.search_text); END",
)

# Migration 0008: Swedish stems (the title weighs A, the rest B), and trigrams for matching
# inside compounds where the pg_trgm extension can be had.
POSTGRESQL_SEARCH = (
    "ALTER TABLE items ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('swedish', title), 'A') || "
    "setweight(to_tsvector('swedish', search_text), 'B')) STORED",
    "CREATE INDEX ix_items_search_vector ON items USING gin (search_vector)",
)
TRIGRAM = "CREATE INDEX ix_items_search_trgm ON items USING gin (search_text {schema}.gin_trgm_ops)"

# Alembic's own version table, as it creates it.
VERSION_TABLE = (
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
)


def create(engine: Engine, revision: str) -> bool:
    """Make the whole schema in a database that has no table yet, at ``revision`` (the
    newest), in one transaction: a failure (a full disk, a process stopped half-way)
    leaves the database empty, to be made again on the next start. Processes starting
    together take turns (a write lock on SQLite, an advisory lock on PostgreSQL); whoever
    comes second finds tables and makes nothing. Whether this call made the schema (False
    for a database with tables: it is for the migrations)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            # The driver begins no transaction before DDL by itself: each CREATE would
            # commit on its own, and a failure half-way leave tables without a revision.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        if inspect(conn).get_table_names():
            return False  # not new, or another process made it meanwhile
        metadata.create_all(conn)
        if conn.dialect.name == "sqlite":
            for statement in SQLITE_SEARCH:
                conn.execute(text(statement))
        else:
            for statement in POSTGRESQL_SEARCH:
                conn.execute(text(statement))
            _trigrams(conn)
        conn.execute(text(VERSION_TABLE))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": revision})
    return True


# PostgreSQL's advisory lock, held while a new database is made (the project takes no
# other advisory lock).
_LOCK_KEY = 0x6575_6276  # "eubv"


def _trigrams(conn: Connection) -> None:
    """pg_trgm is a contrib extension: a server without it (or a user who may not create
    it) searches by the tsvector alone, as after migration 0008."""
    try:
        with conn.begin_nested():
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            schema = conn.execute(
                text(
                    "SELECT quote_ident(n.nspname) FROM pg_extension e "
                    "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
                )
            ).scalar_one()
            conn.execute(text(TRIGRAM.format(schema=schema)))
    except DBAPIError as e:
        log.warning("pg_trgm not available (%s): search matches by the tsvector alone", e)
