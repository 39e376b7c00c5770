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
column on PostgreSQL: migration 0008).

At size (100,000 items and more) a list is read in two steps: the page's ids first (a
narrow query over the filter and sort columns, ``LIMIT``/``OFFSET``), then those rows with
their tags and links; counts can stop at a cap (``count_items(limit=…)``); area and theme
are ``EXISTS`` probes of the tags' primary key; a search sorted by date on SQLite
walks the date index when the words match many items (see ``_walk_order``); and a search on
PostgreSQL reads the first items of its order before it reads more (see
``_searched_in_steps``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Integer,
    any_,
    cast,
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
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.selectable import Alias

from watcher.storage import base, rows
from watcher.storage.core import StorageCore
from watcher.storage.schema import item_changes, item_sources, items, tags
from watcher.text import search_terms
from watcher.types import ItemChange, SourceLink, StoredItem, StoredTag

# SQLite's FTS5 index of the items (migration 0008); its rowid is the item's id.
items_fts = table("items_fts", column("rowid"), column("title"), column("search_text"))
ORDERS = ("relevance", "newest", "deadline")
# A search by relevance ranks at most this many matches, the newest (``_ranked_candidates``).
RANKED_CANDIDATES = 1000
# PostgreSQL: a search reads the first this many items of its order first (by id and
# newest first, the rows lie about in that order on disk; by deadline each row is a page
# read of its own, 200 ms for 20,000), and when the matches it needs are not all there,
# reads them through the search indexes if it expects at most ``FEW_MATCHES`` in all
# (``ItemsRoom._searched_in_steps``).
SEARCH_WINDOWS = {"id": 20_000, "newest": 20_000, "deadline": 5_000}
FEW_MATCHES = 5_000
# The filters that bound an order's own column: a walk along that order's index begins
# where they say (``ItemFilter.narrowed``, ``_window``).
ORDER_BOUNDS = {"deadline": ("deadline_from", "deadline_to"), "newest": ("since",)}
_WORD_RE = re.compile(r"\w")
# What a stored item is made of: not the search columns, the widest of a row (and the
# content hash), which only merge and search read.
SHOWN = [c for c in items.c if c.name not in ("search_text", "content_hash")]


class _IndexedBy(Alias):
    """``items`` read through ``ix_items_search_keys`` (migration 0011): SQLite's
    ``INDEXED BY``, which SQLAlchemy does not write. Without statistics (``ANALYZE``)
    SQLite looks an id up in the table, never in this narrower index."""

    inherit_cache = True


@compiles(_IndexedBy, "sqlite")
def _indexed_by(element: _IndexedBy, compiler: Any, **kw: Any) -> str:
    out: str = compiler.visit_alias(element, **kw)
    return f"{out} INDEXED BY ix_items_search_keys" if kw.get("asfrom") else out


_SEARCH_KEYS = _IndexedBy._construct(items, name="k")


def _order_of(t: Any, order: str) -> list[Any]:
    """A list's order over ``t``: newest first (by when first seen), by deadline (the
    earliest first, none last), or by id, newest first (``"id"``, a search's candidates)."""
    if order == "deadline":
        return [t.c.deadline.asc().nulls_last(), t.c.id.desc()]
    if order == "newest":
        return [t.c.first_seen.desc(), t.c.id.desc()]
    return [t.c.id.desc()]


def _date_bounds(t: Any, f: ItemFilter) -> dict[str, Any]:
    """The filter's bounds on an item's dates, each a condition on ``t``, by the filter's
    field (first seen since, changed since, deadlines from or to a day)."""
    bounds: dict[str, Any] = {}
    if f.since:
        bounds["since"] = t.c.first_seen >= f.since
    if f.changed_since:
        bounds["changed_since"] = t.c.changed_at >= f.changed_since
    if f.deadline_from:
        bounds["deadline_from"] = t.c.deadline >= f.deadline_from
    if f.deadline_to:
        bounds["deadline_to"] = t.c.deadline <= f.deadline_to
    return bounds


def _window(order: str, f: ItemFilter) -> Any:
    """PostgreSQL: the first ``SEARCH_WINDOWS[order]`` items in ``order``, read along the order's
    index, as a table named ``items`` (its ``search_vector`` too, so that a search's
    conditions read the same names as on the table). A query over it reads at most that many
    rows, and stops as soon as it has what it asks for. Where ``f`` bounds the order's
    own column (deadlines from or to a day, first seen since), the window begins there."""
    vector: Any = literal_column("items.search_vector").label("search_vector")
    # Not the item's wide texts (title, summary, extra …): the window sorts what it reads.
    narrow = [items.c[name] for name in _WINDOW_COLUMNS]
    own = ORDER_BOUNDS.get(order, ())
    bounds = [c for name, c in _date_bounds(items, f).items() if name in own]
    first = select(*narrow, vector).where(*bounds).order_by(*_order_of(items, order))
    return first.limit(SEARCH_WINDOWS[order]).subquery("items")


# What the filters, orders and ranking of a search read of an item (``_window``);
# ``search_text`` for the trigram match inside words.
_WINDOW_COLUMNS = (
    "id",
    "first_seen",
    "changed_at",
    "deadline",
    "status",
    "programme",
    "kind",
    "relevant",
    "held",
    "search_text",
)


def _terms_of(f: ItemFilter) -> list[str]:
    return search_terms(f.text) if f.text else []


def _ts_rank(vector: Any, terms: list[str]) -> Any:
    """PostgreSQL's rank of ``vector`` for the search terms, negated: ``ts_rank`` is larger
    for better matches, and smaller is better on both databases. The rank's query: each
    term's words as prefixes of Swedish stems, any of them (\\w+ only: nothing of the
    user's reaches tsquery syntax). Terms without a word ("%", "–") rank every match the
    same: an empty tsquery would be a syntax error."""
    words = [w for t in terms for w in re.findall(r"\w+", t)]
    if not words:
        return literal(0.0)
    tsquery = func.to_tsquery("swedish", " | ".join(f"{w}:*" for w in words))
    return -func.ts_rank(vector, tsquery)


def _fts_match(terms: list[str]) -> str | None:
    """The FTS5 query for these search terms (SQLite), or None when no term has a word.

    Each term is a quoted phrase (its words in a row, not FTS5 syntax), its last word a
    prefix: "kompetens"* finds "kompetensförsörjningen"."""
    indexed = [t for t in terms if _WORD_RE.search(t)]
    if not indexed:
        return None
    return " ".join('"' + t.replace('"', '""') + '"*' for t in indexed)


@dataclass(frozen=True)
class _Selected:
    """The query of the items a filter selects (``ItemsRoom._filtered``): ``q`` selects
    their ids (and rank, when asked); ``t`` is what it reads the items' columns from, to
    order by: ``items``, or on SQLite, when a search leads, ``items`` through
    ``ix_items_search_keys``; ``newest`` orders them newest first (descending) as the
    query can walk it: on SQLite, where the FTS index leads a search, its rowid (FTS5 reads
    its index backwards), else the items' id."""

    q: Any
    t: Any
    newest: Any


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

    def narrowed(self, within: str | None = None) -> bool:
        """Whether the filter asks more of an item than its words, its relevance and its
        being shown: an area, a source, a status, dates …; ``within`` an order, not
        counting the bounds on that order's own column (``ORDER_BOUNDS``), where a walk
        along its index begins."""
        own = ORDER_BOUNDS.get(within or "", ())
        return any(getattr(self, name) for name in _NARROWING if name not in own)

    @property
    def reads_few_rows(self) -> bool:
        """Whether listing (and counting) these items reads few rows: the newest first, or
        by deadline from a day on, each by walking its index, at most ``FEW_ROWS`` deep,
        and no other filter than relevance and held items. At 100,000 items on SQLite such
        a page takes 4 to 5 ms; a search, a filter by programme (a substring), kind, area,
        theme, status, source or dates, or a deep page take 6 to 80 ms, mostly in the
        database's own code (``Storage.reads_here``: those go to a thread)."""
        walked = self.order == "newest" or (self.order == "deadline" and not self.deadline_to)
        # Newest first walks from the newest item, so a bound on when first seen counts.
        within = "deadline" if self.order == "deadline" else None
        narrowed = bool(self.text) or self.narrowed(within)
        return walked and not narrowed and self.offset + self.limit <= FEW_ROWS


# What ``ItemFilter.narrowed`` asks about: every filter but the words, relevance and held.
_NARROWING = (
    "source",
    "since",
    "changed_since",
    "area",
    "theme",
    "status",
    "programme",
    "kind",
    "deadline_from",
    "deadline_to",
)


# How deep a page of a plain list may be for ``ItemFilter.reads_few_rows`` (at 100,000 items
# on SQLite: 4 ms at 2,000 rows deep, 8 ms at 10,000, 18 ms at 50,000).
FEW_ROWS = 5_000


class ItemsRoom(StorageCore):
    # -- reading items ---------------------------------------------------------------------

    def _filtered(
        self,
        f: ItemFilter,
        *,
        ranked: bool = False,
        walk: bool = False,
        step: str | None = None,
        order: str = "id",
    ) -> _Selected:
        """The query of the items ``f`` selects. ``ranked``: with a ``rank`` column, the
        search's relevance on SQLite (smaller is better; 0 without a search, and on
        PostgreSQL, which ranks in ``_ranked_candidates``); ``walk``: the search
        probes each item found in the sort order's index instead of leading the query
        (SQLite, see ``_walk_order``); ``step``: a search's step on PostgreSQL
        (``_searched_in_steps``): ``"window"`` reads only the first items of ``order``,
        ``"indexed"`` finds the matches through the search indexes first."""
        t: Any = items
        terms = _terms_of(f)
        if self.dialect == "sqlite" and not walk and _fts_match(terms):
            # The FTS index finds the items: the filter and order columns of every match are
            # read (to rank, sort or count them) from the narrow index rather than the wide
            # rows, which SQLite would otherwise pick.
            t = _SEARCH_KEYS
        if terms and step == "window":
            t = _window(order, f)
        q = select(t.c.id)
        rank: Any = literal(0.0)
        newest: Any = t.c.id
        if terms and step == "indexed":
            # The matches' ids, gathered once through the search indexes (``_searched`` over
            # the table alone), then the filters and the order over those rows only.
            found, _rank, _newest = self._searched(
                select(func.array_agg(items.c.id)), items, terms, False, False
            )
            ids = cast(found.correlate(None).scalar_subquery(), ARRAY(Integer))  # one array
            q = q.where(t.c.id == any_(ids))
        elif terms:
            q, rank, newest = self._searched(q, t, terms, ranked, walk)
        if ranked:
            q = q.add_columns(rank.label("rank"))
        if f.source:
            q = q.where(
                t.c.id.in_(
                    select(item_sources.c.item_id).where(item_sources.c.source_id == f.source)
                )
            )
        q = q.where(*_date_bounds(t, f).values())
        for kind, tag in (("area", f.area), ("theme", f.theme)):
            if tag:
                # A probe of the tags' primary key (item, kind, tag) per item: an area holds a
                # large share of the items, so the list's order, not the tag, leads.
                q = q.where(
                    select(tags.c.item_id)
                    .where(tags.c.item_id == t.c.id, tags.c.kind == kind, tags.c.tag == tag)
                    .exists()
                )
        if f.status:
            q = q.where(t.c.status == f.status)
        if f.programme:
            q = q.where(func.lower(t.c.programme).contains(f.programme.lower(), autoescape=True))
        if f.kind:
            q = q.where(t.c.kind == f.kind)
        if f.relevant is not None:
            q = q.where(t.c.relevant == f.relevant)
        if not f.include_held:
            q = q.where(t.c.held.is_(False))
        return _Selected(q, t, newest)

    def _searched(
        self, q: Any, t: Any, terms: list[str], ranked: bool, walk: bool
    ) -> tuple[Any, Any, Any]:
        """``q`` (reading ``t``) narrowed to the items containing every term, their rank,
        and the column that orders them newest first (``_Selected.newest``)."""
        if self.dialect == "sqlite":
            for term in terms:
                if not _WORD_RE.search(term):  # no word to look up ("%", "–")
                    q = q.where(t.c.search_text.contains(term, autoescape=True))
            match = _fts_match(terms)
            if match is None:
                return q, literal(0.0), t.c.id
            if walk:
                found = select(items_fts.c.rowid).where(text("items_fts MATCH :match"))
                # ``id + 0`` is no column SQLite can look up by: the search becomes a set
                # each item of the sort order's index is probed in (``_walk_order``).
                return q.where((t.c.id + 0).in_(found.params(match=match))), literal(0.0), t.c.id
            if not ranked:
                # The FTS index leads, each match probed in ``t`` as it is read, so a count
                # that stops stops reading matches (``IN`` would first gather every one:
                # 5.1 against 1.7 ms to count 1,001 of 17,000 matches with an area).
                hits = (
                    select(items_fts.c.rowid.label("id"))
                    .where(text("items_fts MATCH :match").bindparams(match=match))
                    .subquery()
                )
                return q.join(hits, hits.c.id == t.c.id), literal(0.0), hits.c.id
            # bm25 is smaller for better matches; a word in the title counts 4 times.
            score = func.bm25(literal_column("items_fts"), 4.0, 1.0)
            ranks = (
                select(items_fts.c.rowid.label("id"), score.label("rank"))
                .where(text("items_fts MATCH :match").bindparams(match=match))
                .subquery()
            )
            return q.join(ranks, ranks.c.id == t.c.id), ranks.c.rank, ranks.c.id
        vector: Any = literal_column("items.search_vector")
        trigrams = self._has_trigrams()
        for term in terms:
            parts = re.findall(r"\w+", term)
            like = t.c.search_text.like(
                "%" + term.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%",
                escape="/",
            )
            if not parts:
                q = q.where(like)
                continue
            each = func.to_tsquery("swedish", " <-> ".join(f"{w}:*" for w in parts))
            # A stop word ("för") leaves no lexeme to look for: it is left out, as the
            # tsvector left it out.
            cond = or_(func.numnode(each) == 0, vector.op("@@")(each))
            q = q.where(or_(cond, like) if trigrams else cond)
        # PostgreSQL ranks the candidates a search found (``_ranked_candidates``), not here.
        return q, literal(0.0), t.c.id

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

    def _walk_order(self, conn: Connection, f: ItemFilter) -> bool:
        """Whether a search sorted by date (SQLite) should walk the order's index, probing
        each item in the set of matches, rather than sort every match.

        Walking stops after the page's items; it reads about ``(offset + limit) · items /
        matches`` index entries (matches spread over the dates), sorting all matches reads
        each of them: walk when the words match more items than that. SQLite's planner
        cannot tell (it does not know how many items an FTS query finds): one query to the
        FTS index, as cheap as its matches are few, tells."""
        match = _fts_match(_terms_of(f)) if self.dialect == "sqlite" else None
        if match is None:
            return False
        matches, highest = conn.execute(
            select(
                select(func.count())
                .select_from(items_fts)
                .where(text("items_fts MATCH :match"))
                .params(match=match)
                .scalar_subquery(),
                select(func.max(items.c.id)).scalar_subquery(),
            )
        ).one()
        return bool(matches) and matches * matches > (f.offset + f.limit) * (highest or 0)

    @base.translate_errors
    def list_items(
        self,
        f: ItemFilter = ItemFilter(),
        *,
        with_tags: bool = True,
        with_evidence: bool = True,
    ) -> list[StoredItem]:
        """The items ``f`` selects, in its order; ``with_evidence=False``: their tags
        without what the rules matched (a list shows the tags only)."""
        with self.engine.connect() as conn:
            return self._listed(conn, f, with_tags, with_evidence)[0]

    @base.translate_errors
    def list_counted(
        self, f: ItemFilter, past: int, *, with_tags: bool = True, with_evidence: bool = True
    ) -> tuple[list[StoredItem], int, bool]:
        """``list_items``, and how many items ``f`` selects, counted at most ``past`` beyond
        its offset, and whether there are more (a list page and its count; a first page
        that is not full is the count, with no second scan). A search by relevance counts
        from its ranking: the newest ``RANKED_CANDIDATES``
        matches it ranked are every match when they are fewer, and otherwise only the
        matches older than the oldest of them are counted, as many as the count needs (one
        for the web's first page). Counting every match again read the same rows twice: on
        PostgreSQL at 1,000,000 items, 30 ms each for a common word."""
        with self.engine.connect() as conn:
            found, ranked = self._listed(conn, f, with_tags, with_evidence)
            if f.offset == 0 and len(found) < f.limit:
                return found, len(found), False
            if ranked is not None:
                return found, *self._count_past_ranking(conn, f, past, *ranked)
            cap = f.offset + past
            total = self._count_in(conn, f, limit=cap + 1)
            return found, min(total, cap), total > cap

    def _listed(
        self, conn: Connection, f: ItemFilter, with_tags: bool, with_evidence: bool
    ) -> tuple[list[StoredItem], tuple[int, int] | None]:
        """The page's items, and what its ranking tells a count (``_page_ids``)."""
        ids, ranked = self._page_ids(conn, f)
        found = self._read(
            conn, ids, with_tags=with_tags, with_sources=with_tags, with_evidence=with_evidence
        )
        return found, ranked

    def _page_ids(
        self, conn: Connection, f: ItemFilter
    ) -> tuple[list[int], tuple[int, int] | None]:
        """The ids of ``f``'s page in its order, and for a search by relevance whose page
        began among the ranked matches, how many were ranked and the oldest (lowest) id
        among them."""
        order = f.order if f.order in ORDERS else "newest"
        if order == "relevance" and not (f.text and search_terms(f.text)):
            order = "newest"
        if order == "relevance":
            return self._ranked_ids(conn, f)
        if self.dialect != "sqlite" and _terms_of(f):
            found = self._searched_in_steps(
                conn,
                f,
                order,
                lambda step: self._page(f, order, step=step),
                f.offset + f.limit,
                lambda rows: f.offset + len(rows),
            )
            return [r[0] for r in found], None
        walk = bool(f.text) and self._walk_order(conn, f)
        return [r[0] for r in conn.execute(self._page(f, order, walk=walk)).all()], None

    def _searched_in_steps(
        self,
        conn: Connection,
        f: ItemFilter,
        order: str,
        query: Callable[[str | None], Any],
        needed: int,
        matched: Callable[[Sequence[Any]], int],
    ) -> Sequence[Any]:
        """A search on PostgreSQL, in steps. Its planner cannot tell how many items a
        search's words match (a word it has no statistics for is 2 % of the items to it, one
        in no item too), and at 1,000,000 items its guesses cost seconds: walking an order's
        index through every row for words that match a few items (1.5 s by relevance, 4 s
        by deadline), or reading every match to sort them for words that match many (0.4 to
        0.9 s newest first). So:

        1. the first ``SEARCH_WINDOWS[order]`` items (``query("window")``): when they
           hold the ``needed`` matches, those are the answer (words that match many);
        2. else, when there are more items than that and the matches in the window
           (``matched`` of its rows) promise at most ``FEW_MATCHES`` in all, the matches
           are found through the search indexes first (``query("indexed")``);
        3. else the query as one (``query(None)``), as the planner sees fit.

        Step 2 reads every item the words match, whatever else ``f`` asks: with another
        filter (an area, a source …) the window's matches tell too little of how many
        that is ("utlysning" in one area: 170,000 items read, 4 s), so the newest items'
        matches of the words alone are counted for it (``_word_share``), unless the filter
        only bounds the order's own column, where the window begins.
        """
        rows = conn.execute(query("window")).all()
        seen = matched(rows)
        if seen >= needed:
            return rows
        window = SEARCH_WINDOWS[order]
        size = conn.execute(select(func.max(items.c.id))).scalar_one() or 0
        if size <= window:  # the window was every item
            return rows
        # The filter's bounds on the order's own column bound the window too (``_window``).
        if f.narrowed(within=order):
            seen, window = self._word_share(conn, f), SEARCH_WINDOWS["id"]
        if seen * size <= FEW_MATCHES * window:
            return conn.execute(query("indexed")).all()
        return conn.execute(query(None)).all()

    def _word_share(self, conn: Connection, f: ItemFilter) -> int:
        """PostgreSQL: how many of the newest ``SEARCH_WINDOWS["id"]`` items hold the words
        of ``f``, whatever its other filters ask."""
        words = self._filtered(ItemFilter(text=f.text), step="window")
        count = select(func.count()).select_from(words.q.subquery())
        return int(conn.execute(count).scalar_one())

    def _ranked_ids(
        self, conn: Connection, f: ItemFilter
    ) -> tuple[list[int], tuple[int, int] | None]:
        """The ids of a page of a search by relevance: the newest ``RANKED_CANDIDATES``
        matches best first (``_ranked_candidates``), then the older matches, newest first.
        Each match has one place, whatever the page's size, so paging on shows every match
        once; a page that spans the bound takes its two parts from the two orders. Also,
        when the page began among the ranked matches, how many were ranked and the lowest
        id among them."""
        bound = RANKED_CANDIDATES
        ids: list[int] = []
        ranked: tuple[int, int] | None = None
        if f.offset < bound:
            page = replace(f, limit=min(f.limit, bound - f.offset))
            found: Sequence[Any]
            if self.dialect == "sqlite":
                found = conn.execute(self._ranked_candidates(page)).all()
            else:
                found = self._searched_in_steps(
                    conn,
                    f,
                    "id",
                    lambda step: self._ranked_candidates(page, step),
                    bound,
                    # How many matches the window held: counted beside each row (none
                    # beyond the page's start when it has no row).
                    lambda rows: int(rows[0][2]) if rows else f.offset,
                )
            ids = [r[0] for r in found]
            if found:
                ranked = (found[0][2], found[0][3])
        end = f.offset + f.limit
        if end > bound:
            start = max(f.offset, bound)
            q = self._newest_first(f).limit(end - start).offset(start)
            ids += [r[0] for r in conn.execute(q).all()]
        return ids, ranked

    def _newest_first(self, f: ItemFilter, *, older_than: int | None = None) -> Any:
        """The ids of the items ``f`` selects, newest first as the query walks them (a
        search's FTS index backwards on SQLite, the primary key on PostgreSQL); with
        ``older_than``, only those below that id."""
        s = self._filtered(f)
        q = s.q if older_than is None else s.q.where(s.newest < older_than)
        return q.order_by(s.newest.desc())

    def _count_past_ranking(
        self, conn: Connection, f: ItemFilter, past: int, ranked: int, oldest: int
    ) -> tuple[int, bool]:
        """``list_counted``'s count for a search by relevance that ranked ``ranked`` matches, the
        oldest with id ``oldest``: fewer than the bound are every match; with as many,
        only the older matches the count still needs are counted."""
        cap = f.offset + past
        if ranked < RANKED_CANDIDATES:
            return min(ranked, cap), ranked > cap
        if cap < ranked:
            return cap, True
        # Walked on from the oldest ranked match, backwards, as the ranking walked.
        q = self._newest_first(f, older_than=oldest).limit(cap - ranked + 1)
        total = ranked + int(
            conn.execute(select(func.count()).select_from(q.subquery())).scalar_one()
        )
        return min(total, cap), total > cap

    def _page(
        self, f: ItemFilter, order: str, *, walk: bool = False, step: str | None = None
    ) -> Any:
        """The ids of the page of items ``f`` asks for, newest first or by deadline: only
        the columns filters and order read, so the wide rows are read for the page alone.
        ``step``: see ``_filtered`` (PostgreSQL)."""
        found = self._filtered(f, walk=walk, step=step, order=order)
        return found.q.order_by(*_order_of(found.t, order)).limit(f.limit).offset(f.offset)

    def _ranked_candidates(self, f: ItemFilter, step: str | None = None) -> Any:
        """A search by relevance: the ids of the page (which ends within the bound), ranked
        among the newest ``RANKED_CANDIDATES`` matches (the highest ids); equal ranks go to
        the latest deadline (the call still open), then the newest. With no more matches
        than the bound the order is exactly the ranking's; beyond it, an older match comes
        after the ranked ones however well it ranks (``_ranked_ids``).

        Ranking costs for every match: SQLite's ``bm25`` about 1.5 µs and PostgreSQL's
        ``ts_rank`` about 10 µs, beside a bitmap of matches that reads every match's row
        there. A common word matches 13,000 of 100,000 items and 130,000 of 1,000,000: 20
        ms on SQLite, far past 150 ms on PostgreSQL. The newest matches are found on SQLite
        by reading the FTS index backwards, each probed in ``ix_items_search_keys`` for the
        filters and ties, and ranked as they are read; on PostgreSQL by walking the primary
        key backwards (the rows in about the order they lie on disk) when the words match
        many items, and from the bitmap when few, then ranked (``_searched_in_steps``
        chooses; ``step``: see ``_filtered``)."""
        sqlite = self.dialect == "sqlite"
        # SQLite ranks as it reads; PostgreSQL after.
        s = self._filtered(f, ranked=sqlite, step=step)
        kept = [s.t.c.deadline, s.t.c.first_seen]
        if not sqlite:
            kept.append(literal_column("items.search_vector").label("vector"))
        found = (
            s.q.add_columns(*kept)
            .order_by(s.newest.desc())
            .limit(RANKED_CANDIDATES)
            .subquery("candidates")
        )
        rank = found.c.rank if sqlite else _ts_rank(found.c.vector, _terms_of(f)).label("rank")
        return (
            select(
                found.c.id,
                rank,
                func.count().over().label("ranked"),
                func.min(found.c.id).over().label("oldest"),
            )
            .order_by(
                rank.asc(),
                found.c.deadline.desc().nulls_last(),
                found.c.first_seen.desc(),
                found.c.id.desc(),
            )
            .limit(f.limit)
            .offset(f.offset)
        )

    def _read(
        self,
        conn: Connection,
        ids: Sequence[int],
        *,
        with_tags: bool = True,
        with_sources: bool = True,
        with_evidence: bool = True,
    ) -> list[StoredItem]:
        """The items with these ids, in this order (ids not found are left out)."""
        found: dict[int, RowMapping] = {}
        for chunk in rows.chunks(list(ids), 500):
            for r in conn.execute(select(*SHOWN).where(items.c.id.in_(chunk))).mappings().all():
                found[r["id"]] = r
        return self._hydrate(
            conn,
            [found[i] for i in ids if i in found],
            with_tags=with_tags,
            with_sources=with_sources,
            with_evidence=with_evidence,
        )

    @base.translate_errors
    def count_items(self, f: ItemFilter = ItemFilter(), *, limit: int | None = None) -> int:
        """How many items ``f`` selects (its order, limit and offset aside); with ``limit``,
        counting stops there: ``min(count, limit)``, as cheap as ``limit`` is small."""
        with self.engine.connect() as conn:
            return self._count_in(conn, f, limit=limit)

    def _count_in(self, conn: Connection, f: ItemFilter, *, limit: int | None = None) -> int:
        q = self._filtered(f).q
        if limit is not None:
            q = q.limit(limit)
        return int(conn.execute(select(func.count()).select_from(q.subquery())).scalar_one())

    @base.translate_errors
    def get_item(self, item_id: int) -> StoredItem | None:
        with self.engine.connect() as conn:
            found = self._read(conn, [item_id])
        return found[0] if found else None

    @base.translate_errors
    def get_items(self, ids: Sequence[int]) -> list[StoredItem]:
        with self.engine.connect() as conn:
            return self._get_items_in(conn, ids)

    def _get_items_in(self, conn: Connection, ids: Sequence[int]) -> list[StoredItem]:
        """The items with these ids, each once, in the order given."""
        return self._read(conn, list(dict.fromkeys(ids)))

    def _index_for_search(self, conn: Connection, ids: Sequence[int]) -> None:
        """Put new items into SQLite's full-text index (migration 0013: one statement per
        write, not a trigger per row, which made inserting twice as slow). PostgreSQL's
        index is a generated column and needs nothing."""
        if conn.dialect.name != "sqlite" or not ids:
            return
        fill = (
            "INSERT INTO items_fts (rowid, title, search_text)"
            " SELECT id, title, search_text FROM items WHERE id "
        )
        # One statement text for any number of ids, which SQLite's statement cache keeps:
        # new ids are mostly one run (one insert's), else they go as a JSON list.
        low, high = min(ids), max(ids)
        if high - low + 1 == len(set(ids)):
            base.sqlite_run(conn, fill + "BETWEEN ? AND ?", (low, high))
        else:
            base.sqlite_run(
                conn, fill + "IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),)
            )

    def _hydrate(
        self,
        conn: Connection,
        found: Sequence[RowMapping],
        *,
        with_tags: bool = True,
        with_sources: bool = True,
        with_evidence: bool = True,
    ) -> list[StoredItem]:
        ids = [r["id"] for r in found]
        tag_map: dict[int, list[StoredTag]] = {}
        src_map: dict[int, list[SourceLink]] = {}
        for chunk in rows.chunks(ids, 500):
            if with_tags and with_evidence:
                for t in (
                    conn.execute(
                        select(tags)
                        .where(tags.c.item_id.in_(chunk))
                        .order_by(tags.c.item_id, tags.c.kind, tags.c.tag)
                    )
                    .mappings()
                    .all()
                ):
                    tag_map.setdefault(t["item_id"], []).append(rows.tag_of(t))
            elif with_tags:
                tag_map.update(tags_without_evidence(conn, chunk))
            if with_sources:
                src_map.update(links_of(conn, chunk))
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


def tags_without_evidence(conn: Connection, ids: Sequence[int]) -> dict[int, list[StoredTag]]:
    """The tags of these items (at most 500 ids) without their evidence, by item: the
    evidence is a JSON document per tag, and decoding it was most of reading a long list,
    which does not show it."""
    out: dict[int, list[StoredTag]] = {}
    for item_id, kind, tag, rule_id, score in conn.execute(
        select(tags.c.item_id, tags.c.kind, tags.c.tag, tags.c.rule_id, tags.c.score)
        .where(tags.c.item_id.in_(ids))
        .order_by(tags.c.item_id, tags.c.kind, tags.c.tag)
    ):
        out.setdefault(item_id, []).append(StoredTag(kind, tag, rule_id, (), score))
    return out


def links_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[SourceLink]]:
    """The source links of these items (at most 500 ids), by item, in the order they were
    made; without the tracked values (a JSON document per link), which pages never show."""
    out: dict[int, list[SourceLink]] = {}
    for item_id, *link in conn.execute(
        select(
            item_sources.c.item_id,
            item_sources.c.source_id,
            item_sources.c.key,
            item_sources.c.link,
            item_sources.c.first_seen,
            item_sources.c.last_seen,
        )
        .where(item_sources.c.item_id.in_(ids))
        .order_by(item_sources.c.id)
    ):
        out.setdefault(item_id, []).append(SourceLink(*link))
    return out
