"""Items: filters, full-text search, lists, counts, one item with its tags and sources, its
history, and items held for the admin.

Search (``ItemFilter.text``) looks for ``watcher.text.search_terms``: each word of the
query cut to its Swedish stem, all of them. On SQLite an FTS5 index over ``items.title``
and ``items.search_text`` finds words that begin with each term (``"kompetens"*`` finds
"kompetensförsörjningen"), and ``bm25`` ranks them (the title weighs more). On PostgreSQL
a Swedish tsvector (the title weighs A) finds word prefixes the same way and ``ts_rank``
ranks them; with ``pg_trgm``, a trigram index on ``search_text`` also finds a term inside
a word (a compound's last part: "försörjning" in "kompetensförsörjning"). The database
keeps the indexes in step with every write of ``items`` (triggers on SQLite, a generated
column on PostgreSQL: migration 0008)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.engine import Connection, RowMapping

from watcher.storage import base, rows
from watcher.storage.core import StorageCore
from watcher.storage.schema import item_changes, item_sources, items, tags
from watcher.text import search_terms
from watcher.types import ItemChange, SourceLink, StoredItem, StoredTag

# SQLite's FTS5 index of the items (migration 0008); its rowid is the item's id.
items_fts = table("items_fts", column("rowid"), column("title"), column("search_text"))
ORDERS = ("relevance", "newest", "deadline")
_WORD_RE = re.compile(r"\w")


@dataclass(frozen=True)
class ItemFilter:
    """Filters for listing items (CLI, web, API, digests)."""

    source: str | None = None
    since: datetime | None = None  # first seen at or after
    changed_since: datetime | None = None
    area: str | None = None
    theme: str | None = None
    status: str | None = None
    programme: str | None = None
    kind: str | None = None
    text: str | None = None
    deadline_from: datetime | None = None
    deadline_to: datetime | None = None
    relevant: bool | None = None
    include_held: bool = True
    # relevance (best match first, then the latest deadline, then the newest: only with
    # ``text``, otherwise newest) | newest | deadline
    order: str = "newest"
    limit: int = 100
    offset: int = 0


class ItemsRoom(StorageCore):
    # -- reading items ---------------------------------------------------------------------

    def _filtered(self, f: ItemFilter, *, ranked: bool = False) -> Any:
        """The items ``f`` selects; ``ranked``: with a ``rank`` column, the search's
        relevance (smaller is better), 0 without a search."""
        q = select(items)
        rank: Any = literal(0.0)
        if f.text and (terms := search_terms(f.text)):
            q, rank = self._searched(q, terms, ranked)
        if ranked:
            q = q.add_columns(rank.label("rank"))
        if f.source:
            q = q.where(
                items.c.id.in_(
                    select(item_sources.c.item_id).where(item_sources.c.source_id == f.source)
                )
            )
        if f.since:
            q = q.where(items.c.first_seen >= f.since)
        if f.changed_since:
            q = q.where(items.c.changed_at >= f.changed_since)
        for kind, tag in (("area", f.area), ("theme", f.theme)):
            if tag:
                q = q.where(
                    items.c.id.in_(
                        select(tags.c.item_id).where(tags.c.kind == kind, tags.c.tag == tag)
                    )
                )
        if f.status:
            q = q.where(items.c.status == f.status)
        if f.programme:
            q = q.where(
                func.lower(items.c.programme).contains(f.programme.lower(), autoescape=True)
            )
        if f.kind:
            q = q.where(items.c.kind == f.kind)
        if f.deadline_from:
            q = q.where(items.c.deadline >= f.deadline_from)
        if f.deadline_to:
            q = q.where(items.c.deadline <= f.deadline_to)
        if f.relevant is not None:
            q = q.where(items.c.relevant == f.relevant)
        if not f.include_held:
            q = q.where(items.c.held.is_(False))
        return q

    def _searched(self, q: Any, terms: list[str], ranked: bool) -> tuple[Any, Any]:
        """``q`` narrowed to the items containing every term, and their rank."""
        if self.dialect == "sqlite":
            # Each term a quoted phrase (its words in a row, not FTS5 syntax), the last
            # word a prefix: "kompetens"* finds "kompetensförsörjningen".
            indexed = [t for t in terms if _WORD_RE.search(t)]
            for t in terms:
                if t not in indexed:  # no word to look up ("%", "–")
                    q = q.where(items.c.search_text.contains(t, autoescape=True))
            if not indexed:
                return q, literal(0.0)
            match = " ".join('"' + t.replace('"', '""') + '"*' for t in indexed)
            if not ranked:
                found = select(items_fts.c.rowid).where(text("items_fts MATCH :match"))
                return q.where(items.c.id.in_(found.params(match=match))), literal(0.0)
            fts = (
                select(
                    items_fts.c.rowid.label("id"),
                    # bm25 is smaller for better matches; a word in the title counts 4 times.
                    func.bm25(literal_column("items_fts"), 4.0, 1.0).label("rank"),
                )
                .where(text("items_fts MATCH :match").bindparams(match=match))
                .subquery()
            )
            return q.join(fts, fts.c.id == items.c.id), fts.c.rank
        vector: Any = literal_column("items.search_vector")
        # The rank's query: each term's words as prefixes of Swedish stems, any of them
        # (\w+ only: nothing of the user's reaches tsquery syntax).
        words = [w for t in terms for w in re.findall(r"\w+", t)]
        tsquery = func.to_tsquery("swedish", " | ".join(f"{w}:*" for w in words) or "''")
        trigrams = self._has_trigrams()
        for t in terms:
            parts = re.findall(r"\w+", t)
            like = items.c.search_text.like(
                "%" + t.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%", escape="/"
            )
            if not parts:
                q = q.where(like)
                continue
            each = func.to_tsquery("swedish", " <-> ".join(f"{w}:*" for w in parts))
            # A stop word ("för") leaves no lexeme to look for: it is left out, as the
            # tsvector left it out.
            cond = or_(func.numnode(each) == 0, vector.op("@@")(each))
            q = q.where(or_(cond, like) if trigrams else cond)
        # ts_rank is larger for better matches: negated, smaller is better on both databases.
        return q, -func.ts_rank(vector, tsquery) if ranked else literal(0.0)

    def _has_trigrams(self) -> bool:
        """Whether PostgreSQL has the trigram index (``pg_trgm`` could be created)."""
        known: bool | None = getattr(self, "_trigrams", None)
        if known is None:
            with self.engine.connect() as conn:
                known = bool(
                    conn.execute(
                        text("SELECT to_regclass('ix_items_search_trgm') IS NOT NULL")
                    ).scalar_one()
                )
            self._trigrams = known
        return known

    @base.translate_errors
    def list_items(
        self, f: ItemFilter = ItemFilter(), *, with_tags: bool = True
    ) -> list[StoredItem]:
        order = f.order if f.order in ORDERS else "newest"
        if order == "relevance" and not (f.text and search_terms(f.text)):
            order = "newest"
        q = self._filtered(f, ranked=order == "relevance")
        if order == "relevance":
            # Equal ranks go to the latest deadline (the call still open), then the newest.
            q = q.order_by(
                literal_column("rank").asc(),
                items.c.deadline.desc().nulls_last(),
                items.c.first_seen.desc(),
                items.c.id.desc(),
            )
        elif order == "deadline":
            q = q.order_by(items.c.deadline.asc().nulls_last(), items.c.id.desc())
        else:
            q = q.order_by(items.c.first_seen.desc(), items.c.id.desc())
        q = q.limit(f.limit).offset(f.offset)
        with self.engine.connect() as conn:
            found_rows = conn.execute(q).mappings().all()
            return self._hydrate(conn, found_rows, with_tags=with_tags, with_sources=with_tags)

    @base.translate_errors
    def count_items(self, f: ItemFilter = ItemFilter()) -> int:
        q = select(func.count()).select_from(self._filtered(f).subquery())
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    @base.translate_errors
    def get_item(self, item_id: int) -> StoredItem | None:
        with self.engine.connect() as conn:
            found_rows = conn.execute(select(items).where(items.c.id == item_id)).mappings().all()
            found = self._hydrate(conn, found_rows)
        return found[0] if found else None

    @base.translate_errors
    def get_items(self, ids: Sequence[int]) -> list[StoredItem]:
        with self.engine.connect() as conn:
            return self._get_items_in(conn, ids)

    def _get_items_in(self, conn: Connection, ids: Sequence[int]) -> list[StoredItem]:
        out: list[StoredItem] = []
        for chunk in rows.chunks(list(ids), 500):
            found = conn.execute(select(items).where(items.c.id.in_(chunk))).mappings().all()
            out.extend(self._hydrate(conn, found))
        order = {i: n for n, i in enumerate(ids)}
        return sorted(out, key=lambda it: order.get(it.id, 0))

    def _hydrate(
        self,
        conn: Connection,
        found: Sequence[RowMapping],
        *,
        with_tags: bool = True,
        with_sources: bool = True,
    ) -> list[StoredItem]:
        ids = [r["id"] for r in found]
        tag_map: dict[int, list[StoredTag]] = {}
        src_map: dict[int, list[SourceLink]] = {}
        for chunk in rows.chunks(ids, 500):
            if with_tags:
                for t in conn.execute(
                    select(tags).where(tags.c.item_id.in_(chunk)).order_by(tags.c.kind, tags.c.tag)
                ).mappings():
                    tag_map.setdefault(t["item_id"], []).append(rows.tag_of(t))
            if with_sources:
                # Not the tracked values (a JSON document per link): pages never show them.
                for s in conn.execute(
                    select(
                        item_sources.c.item_id,
                        item_sources.c.source_id,
                        item_sources.c.key,
                        item_sources.c.link,
                        item_sources.c.first_seen,
                        item_sources.c.last_seen,
                    )
                    .where(item_sources.c.item_id.in_(chunk))
                    .order_by(item_sources.c.id)
                ).mappings():
                    src_map.setdefault(s["item_id"], []).append(rows.link_of(s))
        return [rows.item_of(r, tag_map.get(r["id"], ()), src_map.get(r["id"], ())) for r in found]

    @base.translate_errors
    def item_history(self, item_id: int) -> list[ItemChange]:
        with self.engine.connect() as conn:
            found_rows = (
                conn.execute(
                    select(item_changes)
                    .where(item_changes.c.item_id == item_id)
                    .order_by(item_changes.c.id)
                )
                .mappings()
                .all()
            )
        return [
            ItemChange(
                r["at"], r["source_id"], r["kind"], tuple(r["changes"] or ()), bool(r["notable"])
            )
            for r in found_rows
        ]

    @base.translate_errors
    def all_item_ids(self, since: datetime | None = None) -> list[int]:
        q = select(items.c.id).order_by(items.c.id)
        if since is not None:
            q = q.where(items.c.first_seen >= since)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(q).all()]

    @base.translate_errors
    def release_held(
        self,
        source_id: str | None = None,
        *,
        discard: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Let held items go out in the next digests, as new at ``now`` (or, with
        ``discard``, mark them as baseline: never mailed)."""
        q = update(items).where(items.c.held.is_(True))
        if source_id:
            q = q.where(items.c.source_id == source_id)
        values: dict[str, Any] = {"held": False}
        if discard:
            values["baseline"] = True
        else:
            values["released_at"] = now or datetime.now(UTC)
        with self.begin() as conn:
            return conn.execute(q.values(**values)).rowcount

    @base.translate_errors
    def held_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    select(items.c.source_id, func.count())
                    .where(items.c.held.is_(True))
                    .group_by(items.c.source_id)
                ).all()
            )
