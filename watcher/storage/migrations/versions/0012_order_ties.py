"""order ties: on PostgreSQL, an index that holds the list's whole order, newest first
and then the highest id

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-23
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# SQLite's indexes end in the rowid (the id), so the list's order "newest first, then the
# highest id" walks ix_items_relevant_first_seen already. A PostgreSQL B-tree holds no id:
# the items a poll stores share their first seen, and PostgreSQL sorted every relevant item
# to show the first page (115 ms of SQL at 100,000 items, 4 ms with this index).


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_items_relevant_first_seen_id", "items", ["relevant", "first_seen", "id"]
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_items_relevant_first_seen_id", table_name="items")
