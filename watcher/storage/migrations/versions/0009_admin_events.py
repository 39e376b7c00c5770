"""admin_events: what the admin is told (a source failing and recovering, a changed layout,
a delivery failed for good, a held flood, a missed digest), each sent once

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import watcher.storage.schema

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = watcher.storage.schema.UtcDateTime(timezone=True)
    op.create_table(
        "admin_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("at", utc, nullable=False),
        sa.Column("resolved_at", utc, nullable=True),
        sa.Column("resolves", sa.Integer(), nullable=True),
        sa.Column("send_status", sa.String(length=16), nullable=False),
        sa.Column("send_attempts", sa.Integer(), nullable=False),
        sa.Column("send_error", sa.Text(), nullable=True),
        sa.Column("next_send_at", utc, nullable=True),
        sa.Column("sent_to", sa.JSON(), nullable=False),
        sa.Column("sent_at", utc, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_events")),
        sa.UniqueConstraint("key", name=op.f("uq_admin_events_key")),
    )
    with op.batch_alter_table("admin_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admin_events_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("admin_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_events_at"))
    op.drop_table("admin_events")
