"""digests.selection (what a network's digests have looked at, as ids) and digest_schedule
(each network's next scheduled digest and the slots missed while no process ran)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import watcher.storage.schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("selection", sa.JSON(), nullable=True))
    op.create_table(
        "digest_schedule",
        sa.Column("network_id", sa.String(length=64), nullable=False),
        sa.Column("schedule", sa.String(length=64), nullable=False),
        sa.Column("next_run_at", watcher.storage.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", watcher.storage.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("missed_from", watcher.storage.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("missed_until", watcher.storage.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("missed_count", sa.Integer(), nullable=False),
        sa.Column(
            "missed_noted_at", watcher.storage.schema.UtcDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("network_id", name=op.f("pk_digest_schedule")),
    )


def downgrade() -> None:
    op.drop_table("digest_schedule")
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.drop_column("selection")
