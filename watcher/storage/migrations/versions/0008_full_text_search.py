"""full-text search: an FTS5 index on SQLite; a Swedish tsvector and a trigram index on
PostgreSQL, kept in step with ``items`` by the database itself

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# SQLite: an external-content FTS5 table over items.title and items.search_text (the
# case-folded text merge writes), words as Unicode tokens with å, ä and ö kept apart from
# a and o (searches are word prefixes: "kompetens*"); triggers keep it in step with every
# insert, update and delete of an item.
SQLITE = [
    "CREATE VIRTUAL TABLE items_fts USING fts5(title, search_text, content='items', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 0', prefix='3')",
    "CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN "
    "INSERT INTO items_fts(rowid, title, search_text) "
    "VALUES (new.id, new.title, new.search_text); END",
    "CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN "
    "INSERT INTO items_fts(items_fts, rowid, title, search_text) "
    "VALUES ('delete', old.id, old.title, old.search_text); END",
    "CREATE TRIGGER items_fts_update AFTER UPDATE OF title, search_text ON items BEGIN "
    "INSERT INTO items_fts(items_fts, rowid, title, search_text) "
    "VALUES ('delete', old.id, old.title, old.search_text); "
    "INSERT INTO items_fts(rowid, title, search_text) "
    "VALUES (new.id, new.title, new.search_text); END",
    "INSERT INTO items_fts(items_fts) VALUES ('rebuild')",
]

# PostgreSQL: a generated tsvector (Swedish stems; the title weighs A, the rest B) for
# ranking, and a trigram index on search_text for matching inside compounds.
POSTGRESQL = [
    "ALTER TABLE items ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('swedish', title), 'A') || "
    "setweight(to_tsvector('swedish', search_text), 'B')) STORED",
    "CREATE INDEX ix_items_search_vector ON items USING gin (search_vector)",
]
# The operator class named with the extension's schema: an extension created earlier in
# another schema (public) than the one on the search path is found all the same.
TRIGRAM = "CREATE INDEX ix_items_search_trgm ON items USING gin (search_text {schema}.gin_trgm_ops)"


def upgrade() -> None:
    # What the lists filter and sort on most (relevant items, by deadline or newest): a
    # count of them reads the index alone, not the wide rows.
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index("ix_items_relevant_deadline", ["relevant", "deadline"])
        batch_op.create_index("ix_items_relevant_first_seen", ["relevant", "first_seen"])
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for statement in SQLITE:
            conn.execute(sa.text(statement))
        return
    for statement in POSTGRESQL:
        conn.execute(sa.text(statement))
    # pg_trgm is a contrib extension: a server without it (or a user who may not create it)
    # searches by the tsvector alone (whole words and prefixes, not inside compounds).
    try:
        with conn.begin_nested():
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            schema = conn.execute(
                sa.text(
                    "SELECT quote_ident(n.nspname) FROM pg_extension e "
                    "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
                )
            ).scalar_one()
            conn.execute(sa.text(TRIGRAM.format(schema=schema)))
    except sa.exc.DBAPIError as e:
        log.warning("pg_trgm not available (%s): search matches by the tsvector alone", e)


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index("ix_items_relevant_first_seen")
        batch_op.drop_index("ix_items_relevant_deadline")
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for name in ("items_fts_insert", "items_fts_delete", "items_fts_update"):
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}"))
        conn.execute(sa.text("DROP TABLE IF EXISTS items_fts"))
        return
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_items_search_trgm"))
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_items_search_vector"))
    conn.execute(sa.text("ALTER TABLE items DROP COLUMN IF EXISTS search_vector"))
