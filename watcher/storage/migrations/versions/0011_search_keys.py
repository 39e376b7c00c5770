"""search keys: on SQLite, an index of each item's id with what a ranked search reads of
every match (relevance, held, and the deadline and first seen its ties are sorted by)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-22
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# A search by relevance ranks every item the FTS index finds, and reads these columns of
# each to filter and to break ties: from this narrow index rather than the wide rows, a
# search at 100,000 items takes about half the time (``watcher/storage/items.py`` names it
# with INDEXED BY). PostgreSQL ranks by the tsvector, which is in the row anyway.
COLUMNS = ["id", "relevant", "held", "deadline", "first_seen"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_items_search_keys", "items", COLUMNS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_items_search_keys", table_name="items")
