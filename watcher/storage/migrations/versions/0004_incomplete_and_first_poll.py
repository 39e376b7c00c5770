"""items.incomplete (what a record lacks because part of its source failed) and the first
poll's counts in poll_log (announced, baselined)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("incomplete", sa.JSON(), nullable=True))
    with op.batch_alter_table("poll_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("announced", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("baselined", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("poll_log", schema=None) as batch_op:
        batch_op.drop_column("baselined")
        batch_op.drop_column("announced")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("incomplete")
