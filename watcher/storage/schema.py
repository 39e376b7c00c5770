"""The database schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` mirror it.

Every timestamp is stored as an aware UTC datetime (``UtcDateTime``), on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite keeps text: the same text SQLAlchemy's SQLite DATETIME writes
        # ("2027-03-16 12:00:00.000000", always with microseconds, so that stored values
        # and parameters compare as strings), made in one step instead of two: a poll
        # writes tens of thousands of these.
        # The last value's text is kept: a poll's rows carry the same "now" many times over
        # (first and last seen, history, tags), and converting it is most of the cost. One
        # (value, text) pair, swapped whole: threads share this processor.
        memo: list[tuple[datetime | None, str | None]] = [(None, None)]

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            seen, text = memo[0]
            if value is seen:
                return text
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the database")
            text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            memo[0] = (value, text)
            return text

        return process

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


sources_state = Table(
    "sources_state",
    metadata,
    Column("source_id", String(64), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_poll_at", UtcDateTime),
    Column("last_success_at", UtcDateTime),
    Column("last_error_at", UtcDateTime),
    Column("last_error_code", String(64)),
    Column("last_error_message", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime),
    Column("last_parsed", Integer),
    Column("warning", Text),
    Column("baseline_done", Boolean, nullable=False, default=False),
    Column("field_profile", JSON),
)

poll_log = Table(
    "poll_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source_id", String(64), nullable=False, index=True),
    Column("started_at", UtcDateTime, nullable=False, index=True),
    Column("finished_at", UtcDateTime),
    Column("status", String(16), nullable=False),
    Column("new", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("parsed", Integer, nullable=False, default=0),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("warnings", JSON),
    # A source's first poll: calls open or forthcoming announced to the networks, and items
    # kept as the silent baseline.
    Column("announced", Integer),
    Column("baselined", Integer),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(600), nullable=False, unique=True),
    Column("source_id", String(64), nullable=False, index=True),  # the first source that saw it
    Column("title", Text, nullable=False),
    Column("link", Text, nullable=False, default=""),
    Column("summary", Text, nullable=False, default=""),
    Column("language", String(8), nullable=False, default="und"),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), index=True),
    Column("programme", String(255)),
    Column("identifier", String(255), index=True),
    Column("published", UtcDateTime),
    Column("opening", UtcDateTime),
    Column("deadline", UtcDateTime, index=True),  # the last deadline, for sorting and filters
    Column("deadlines", JSON, nullable=False, default=list),
    Column("budget", Text),
    Column("budget_amount", Float),
    Column("currency", String(8)),
    Column("regions", JSON, nullable=False, default=list),
    Column("topics", JSON, nullable=False, default=list),
    Column("content_hash", String(64), nullable=False),
    Column("relevant", Boolean, nullable=False, default=True),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("changed_at", UtcDateTime, index=True),  # last notable update
    Column("baseline", Boolean, nullable=False, default=False),  # seen in a first poll: silent
    Column("held", Boolean, nullable=False, default=False),  # part of a flood held for the admin
    Column("released_at", UtcDateTime),  # when the admin let a held item go to digests
    # What the record lacks because a part of its source failed (a detail page): the
    # reason and the missing fields; None when complete.
    Column("incomplete", JSON),
    Column("extra", JSON, nullable=False, default=dict),
    # Title, summary, identifier and programme, case-folded: what full-text search scans
    # (SQLite's lower() folds ASCII only, so Å/Ä/Ö would not match case-insensitively).
    # (The database's default '' too, as migration 0002 added it to rows already stored.)
    Column("search_text", Text, nullable=False, default="", server_default=""),
)

# The lists' most common filter and orders (migration 0008): counts read the index alone.
Index("ix_items_relevant_deadline", items.c.relevant, items.c.deadline)
Index("ix_items_relevant_first_seen", items.c.relevant, items.c.first_seen)
# What a search by relevance reads of every match, on SQLite (migration 0011, ``items.py``).
Index(
    "ix_items_search_keys",
    items.c.id,
    items.c.relevant,
    items.c.held,
    items.c.deadline,
    items.c.first_seen,
).ddl_if(dialect="sqlite")
# The list's whole order on PostgreSQL, whose B-trees, unlike SQLite's, do not end in the
# id (migration 0012).
Index("ix_items_relevant_first_seen_id", items.c.relevant, items.c.first_seen, items.c.id).ddl_if(
    dialect="postgresql"
)
# Newest first, then the highest id: SQLite's index on the date ends in the id already; a
# PostgreSQL B-tree needs the id (migration 0014: a search newest first reads the first
# items of this order, ``items.py``).
Index("ix_items_first_seen", items.c.first_seen).ddl_if(dialect="sqlite")
Index("ix_items_first_seen_id", items.c.first_seen, items.c.id).ddl_if(dialect="postgresql")
# Search indexes are not tables here (migration 0008, ``items.py``): on SQLite the FTS5
# table items_fts and its triggers, on PostgreSQL the generated column items.search_vector.

item_sources = Table(
    "item_sources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("source_id", String(64), nullable=False),
    Column("key", String(500), nullable=False),
    Column("link", Text, nullable=False, default=""),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("values", JSON, nullable=False),  # this source's tracked values, for change tracking
    UniqueConstraint("source_id", "key", name="uq_item_sources_source_key"),
)

item_changes = Table(
    "item_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("source_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # new | updated | merged
    Column("changes", JSON, nullable=False, default=list),  # [{"field", "old", "new"}]
    Column("notable", Boolean, nullable=False, default=False),
)

tags = Table(
    "tags",
    metadata,
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(8), primary_key=True),  # area | theme
    Column("tag", String(64), primary_key=True),
    Column("rule_id", String(128), nullable=False),
    Column("evidence", JSON, nullable=False, default=list),
    Column("score", Float, nullable=False, default=1.0),
    Index("ix_tags_kind_tag", "kind", "tag"),
)

tag_changes = Table(
    "tag_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("at", UtcDateTime, nullable=False),
    Column("added", JSON, nullable=False, default=list),
    Column("removed", JSON, nullable=False, default=list),
    Column("rules_version", String(64)),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text),
)

digests = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("network_id", String(64), nullable=False),
    Column("window_start", UtcDateTime),
    Column("window_end", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),  # pending | sending | done | empty
    Column("subject", Text),
    Column("item_ids", JSON, nullable=False, default=list),
    Column("payload", JSON, nullable=False, default=dict),
    # What the network's digests have looked at, up to this one: item and change ids as
    # ranges, items seen held (``deliveries.Seen``). Null in digests made before 0006.
    Column("selection", JSON),
    UniqueConstraint("network_id", "window_end", name="uq_digests_network_window"),
)

# Each network's next scheduled digest, kept across restarts (``notifications/schedule.py``):
# a slot that passed while no process ran is sent once at start when it is recent enough,
# or recorded here as missed for the admin.
digest_schedule = Table(
    "digest_schedule",
    metadata,
    Column("network_id", String(64), primary_key=True),
    Column("schedule", String(64), nullable=False),  # the schedule next_run_at belongs to
    Column("next_run_at", UtcDateTime, nullable=False),
    Column("last_run_at", UtcDateTime),
    # The latest slots missed beyond the grace: first and last, how many, when noticed.
    Column("missed_from", UtcDateTime),
    Column("missed_until", UtcDateTime),
    Column("missed_count", Integer, nullable=False, default=0),
    Column("missed_noted_at", UtcDateTime),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "digest_id",
        Integer,
        ForeignKey("digests.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("address", String(254), nullable=False),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("status", String(16), nullable=False),  # pending | sent | failed | opted_out
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("next_attempt_at", UtcDateTime),
    Column("sent_at", UtcDateTime),
    UniqueConstraint("digest_id", "address", name="uq_deliveries_digest_address"),
)

optouts = Table(
    "optouts",
    metadata,
    Column("network_id", String(64), primary_key=True),
    Column("address", String(254), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False, default=""),
    Column("details", JSON, nullable=False, default=dict),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# The admin's logged-in sessions (``sessions.py``): the cookie holds a random session id,
# the table only its SHA-256, so reading the table gives nobody a session. A session ends
# at ``expires_at`` (login + ``[web] session_max_age``, never extended) or when its row is
# deleted (logout, a password change, ``watcher admin revoke-sessions``).
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("username", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)

corrections = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("kind", String(16), nullable=False),  # area | theme | relevance
    Column("tag", String(64), nullable=False, default=""),  # "" for relevance
    Column("present", Boolean, nullable=False),  # added / relevant (True), removed / not
    Column("username", String(128), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("item_id", "kind", "tag", name="uq_corrections_item_label"),
)

# What the admin is told (``events.py``, ``notifications/alerts.py``): one row per alert, the
# unit of sending. ``key`` makes recording idempotent: an open problem's key ("source_failing:
# esf") is cleared when it is resolved, so the next failure opens a new row; a one-off
# event's key (a delivery, a missed slot) stays, so it is never recorded twice.
admin_events = Table(
    "admin_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("subject", String(255), nullable=False, default=""),  # a source, network …
    Column("key", String(255), unique=True),
    Column("message", Text),
    Column("details", JSON, nullable=False, default=dict),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("resolved_at", UtcDateTime),
    Column("resolves", Integer),  # the event a recovery closed
    # Sending: pending | sending (claimed until next_send_at) | sent | failed | none (no
    # one to tell); the targets done so far, so a retry never sends to one twice.
    Column("send_status", String(16), nullable=False),
    Column("send_attempts", Integer, nullable=False, default=0),
    Column("send_error", Text),
    Column("next_send_at", UtcDateTime),
    Column("sent_to", JSON, nullable=False, default=list),
    Column("sent_at", UtcDateTime),
)

# Self-service subscriptions (``subscriptions.py``, ``notifications/subscriptions.py``): a
# person is an address and their choices, nothing more. ``key`` names the person's own
# digest (``p-<key>`` where a network id goes), random so that a deleted person's digest
# history never passes to the next person given the same row id.
subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(254), nullable=False, unique=True),  # lower-cased
    Column("key", String(32), nullable=False, unique=True),
    Column("frequency", String(8), nullable=False, default="weekly"),  # daily | weekly
    Column("created_at", UtcDateTime, nullable=False),
)

# One choice of a person: a network's digest, areas and themes, or a saved search
# ("bevakning"). Nothing is active before the confirmation link is followed: ``status`` is
# pending with the SHA-256 of the link's secret until then.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("kind", String(16), nullable=False),  # network | topics | search
    Column("network_id", String(64)),
    Column("areas", JSON, nullable=False, default=list),
    Column("themes", JSON, nullable=False, default=list),
    Column("kinds", JSON, nullable=False, default=list),
    Column("query", Text),
    Column("status", String(16), nullable=False),  # pending | active
    Column("confirm_hash", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime),
)
