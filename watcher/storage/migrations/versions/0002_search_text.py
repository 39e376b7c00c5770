"""search_text: case-folded searchable text of each item

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
    # Fill it for the items already stored, the way the storage layer writes it.
    items = sa.table(
        "items",
        sa.column("id", sa.Integer),
        sa.column("title", sa.Text),
        sa.column("summary", sa.Text),
        sa.column("identifier", sa.String),
        sa.column("programme", sa.String),
        sa.column("search_text", sa.Text),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(items.c.id, items.c.title, items.c.summary, items.c.identifier, items.c.programme)
    ).all()
    for r in rows:
        text = " \n".join(
            x for x in (r.title, r.identifier, r.programme, r.summary) if x
        ).casefold()
        conn.execute(items.update().where(items.c.id == r.id).values(search_text=text))


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("search_text")
