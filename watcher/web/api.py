"""The JSON API: ``/api/items`` (filters, pagination), ``/api/items/{id}``, ``/api/sources``.

Read-only and public, like the pages. The response models below are the OpenAPI
description (``/api/openapi.json``). Times are ISO 8601 in UTC. Text fields are returned as
stored: they come from the sources and are untrusted, so a client that renders them as
HTML must escape them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from watcher.calls import next_deadline
from watcher.calls import status as status_at
from watcher.config import AREAS, THEMES
from watcher.config_edit import redact_url
from watcher.storage import ItemFilter
from watcher.types import Kind, SourceState, StoredItem
from watcher.web.render import app_of, page

router = APIRouter(prefix="/api")

MAX_LIMIT = 200
# The total is counted up to this many items past the page's end (as the web list's).
COUNT_LIMIT = 1000


class TagOut(BaseModel):
    kind: str = Field(description="area or theme")
    tag: str = Field(description="the area or theme id")
    rule: str = Field(description="the rule that gave the tag")
    evidence: list[dict[str, str]] = Field(description="what the rule matched: field and text")


class ItemSourceOut(BaseModel):
    source: str
    key: str
    link: str
    first_seen: datetime
    last_seen: datetime


class ItemOut(BaseModel):
    id: int
    url: str = Field(description="the item's page on this site")
    title: str
    link: str = Field(description="the item at its source (untrusted: check the scheme)")
    summary: str
    kind: str
    status: str | None = Field(description="the status at the time of the answer (dates win)")
    programme: str | None
    identifier: str | None
    language: str
    published: datetime | None
    opening: datetime | None
    deadline: datetime | None = Field(description="the final deadline")
    next_deadline: datetime | None = Field(
        description="the first deadline still ahead; the last one when all have passed"
    )
    deadlines: list[datetime] = Field(description="every deadline, first first")
    budget: str | None
    relevant: bool
    first_seen: datetime
    last_seen: datetime
    changed_at: datetime | None = Field(description="the last notable update")
    areas: list[str]
    themes: list[str]
    tags: list[TagOut]
    sources: list[ItemSourceOut]


class ItemPage(BaseModel):
    total: int = Field(
        description="items matching the filters, counted up to 1,000 past this page's end "
        "(a count reads every match): more match when ``more`` is true"
    )
    more: bool = Field(description="more items match than ``total`` counts")
    limit: int
    offset: int
    next: str | None = Field(description="the next page's URL, if any")
    items: list[ItemOut]


class ChangeOut(BaseModel):
    at: datetime
    source: str
    kind: str = Field(description="new, updated or merged")
    changes: list[dict[str, Any]] = Field(description="field, old and new value")


class TagChangeOut(BaseModel):
    at: datetime
    added: list[str]
    removed: list[str]
    rules_version: str | None


class ItemDetail(ItemOut):
    history: list[ChangeOut]
    tag_history: list[TagChangeOut]


class SourceErrorOut(BaseModel):
    at: datetime | None
    code: str | None = Field(
        description="what failed, as a short stable word (http_500, timeout, db_busy …); "
        "the message behind it is for the admin only"
    )


class SourceOut(BaseModel):
    id: str
    name: str
    kind: str
    url: str
    enabled: bool
    schedule: str
    areas: list[str]
    themes: list[str]
    last_success: datetime | None
    last_error: SourceErrorOut | None
    consecutive_failures: int
    items: int = Field(description="items stored from this source")
    items_30d: int = Field(description="items first seen in the last 30 days")
    warning: str | None = Field(description="a possible layout change, and the like")


def item_out(item: StoredItem, base_url: str, now: datetime) -> ItemOut:
    return ItemOut(
        id=item.id,
        url=f"{base_url.rstrip('/')}/items/{item.id}",
        title=item.title,
        link=item.link,
        summary=item.summary,
        kind=item.kind,
        status=status_at(item, now),
        programme=item.programme,
        identifier=item.identifier,
        language=item.language,
        published=item.published,
        opening=item.opening,
        deadline=item.deadline,
        next_deadline=next_deadline(item, now),
        deadlines=sorted(item.deadlines),
        budget=item.budget,
        relevant=item.relevant,
        first_seen=item.first_seen,
        last_seen=item.last_seen,
        changed_at=item.changed_at,
        areas=item.tag_ids("area"),
        themes=item.tag_ids("theme"),
        tags=[
            TagOut(
                kind=t.kind,
                tag=t.tag,
                rule=t.rule_id,
                evidence=[{str(k): str(v) for k, v in e.items()} for e in t.evidence],
            )
            for t in item.tags
        ],
        sources=[
            ItemSourceOut(
                source=s.source_id,
                key=s.key,
                link=s.link,
                first_seen=s.first_seen,
                last_seen=s.last_seen,
            )
            for s in item.sources
        ],
    )


def _when(value: str | None, tz: Any, *, end: bool = False) -> datetime | None:
    """A date (``2026-11-30``, local day; ``end`` = its last moment) or an ISO datetime."""
    if not value:
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            start = datetime.combine(d, time(0), tzinfo=tz)
            return start + timedelta(days=1, microseconds=-1) if end else start
        dt = datetime.fromisoformat(value)
    except ValueError as e:
        raise HTTPException(422, f"not a date or ISO datetime: {value[:40]!r}") from e
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@router.get("/items", response_model=ItemPage, tags=["items"])
async def list_items(
    request: Request,
    q: str | None = Query(
        None,
        max_length=200,
        description="words to find, all of them, anywhere in a word and in any inflection",
    ),
    area: str | None = Query(None, description="area id, e.g. fonder-program"),
    theme: str | None = Query(None, description="theme id, e.g. arbetsmarknad"),
    source: str | None = Query(None, description="source id"),
    programme: str | None = Query(None, max_length=100, description="programme name contains"),
    status: Literal["forthcoming", "open", "closed"] | None = None,
    kind: str | None = Query(None, description="call, consultation, news …"),
    deadline_from: str | None = Query(None, description="date or ISO datetime"),
    deadline_to: str | None = Query(None, description="date (inclusive) or ISO datetime"),
    since: str | None = Query(None, description="first seen on or after (date or datetime)"),
    include_irrelevant: bool = Query(False, description="also items not relevant to networks"),
    sort: Literal["relevance", "newest", "deadline"] | None = Query(
        None,
        description="relevance (the default with q: the 1,000 newest matches best first, "
        "then older matches newest first), newest, deadline",
    ),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> ItemPage:
    """Stored items, newest first (or by deadline), with filters and pagination."""
    app = app_of(request)
    tz = app.config.tz
    # An unknown area, theme, kind or source is a mistake in the request, not an empty list.
    for name, value, known in (
        ("area", area, AREAS),
        ("theme", theme, THEMES),
        ("kind", kind, tuple(k.value for k in Kind)),
        ("source", source, tuple(s.id for s in app.config.sources)),
    ):
        if value and value not in known:
            raise HTTPException(400, f"unknown {name} {value[:40]!r}; known: {', '.join(known)}")
    f = ItemFilter(
        text=q or None,
        area=area or None,
        theme=theme or None,
        source=source or None,
        programme=programme or None,
        status=status,
        kind=kind or None,
        deadline_from=_when(deadline_from, tz),
        deadline_to=_when(deadline_to, tz, end=True),
        since=_when(since, tz),
        relevant=None if include_irrelevant else True,
        order=sort or ("relevance" if q else "newest"),
        limit=limit,
        offset=offset,
    )
    return await page(request, lambda: _listed(request, f), costly=not f.reads_few_rows)


def _listed(request: Request, f: ItemFilter) -> ItemPage:
    app = app_of(request)
    limit, offset = f.limit, f.offset
    found, total, more = app.storage.list_counted(f, limit + COUNT_LIMIT)
    nxt = None
    if offset + limit < total:
        nxt = str(request.url.include_query_params(offset=offset + limit))
    base, now = app.config.watcher.base_url, app.now()
    return ItemPage(
        total=total,
        more=more,
        limit=limit,
        offset=offset,
        next=nxt,
        items=[item_out(it, base, now) for it in found],
    )


@router.get(
    "/items/{item_id}",
    response_model=ItemDetail,
    tags=["items"],
    responses={404: {"description": "no such item"}},
)
async def get_item(request: Request, item_id: int) -> ItemDetail:
    """One item with its change history and tag history."""
    return await page(request, lambda: _item_detail(request, item_id))


def _item_detail(request: Request, item_id: int) -> ItemDetail:
    app = app_of(request)
    item = app.storage.get_item(item_id)
    if item is None:
        raise HTTPException(404, "no such item")
    out = item_out(item, app.config.watcher.base_url, app.now())
    return ItemDetail(
        **out.model_dump(),
        history=[
            ChangeOut(
                at=h.at, source=h.source_id, kind=h.kind, changes=[dict(c) for c in h.changes]
            )
            for h in app.storage.item_history(item.id)
        ],
        tag_history=[
            TagChangeOut(
                at=t["at"],
                added=list(t["added"] or []),
                removed=list(t["removed"] or []),
                rules_version=t["rules_version"],
            )
            for t in app.storage.tag_history(item.id)
        ],
    )


@router.get("/sources", response_model=list[SourceOut], tags=["sources"])
def list_sources(request: Request) -> list[SourceOut]:
    """Every configured source with its health."""
    app = app_of(request)
    now = app.now()
    states = app.storage.source_states()
    recent = app.storage.recent_item_counts(now - timedelta(days=30))
    out = []
    for s in app.config.sources:
        st = states.get(s.id) or SourceState(source_id=s.id)
        out.append(
            SourceOut(
                id=s.id,
                name=s.name,
                kind=s.kind,
                url=redact_url(s.url),  # a key in a source's URL is not for the public
                enabled=s.enabled,
                schedule=s.schedule,
                areas=list(s.areas),
                themes=list(s.themes),
                last_success=st.last_success_at,
                last_error=(
                    # The code only: a message can carry internals (SQL, a driver's or a
                    # server's words, internal addresses); the admin's pages show it.
                    SourceErrorOut(at=st.last_error_at, code=st.last_error_code)
                    if st.last_error_code
                    else None
                ),
                consecutive_failures=st.consecutive_failures,
                items=st.item_count,
                items_30d=recent.get(s.id, 0),
                warning=st.warning,
            )
        )
    return out
