"""The public web: item list with search and filters, item page, deadline timeline, the
subscription page and the language switch.

The pages render through ``watcher.web.render`` (labels, language, ``Formatter``,
templates); a call's status and next deadline come from ``watcher.calls`` at the request's
``now``. No route writes to the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from functools import cache
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from notifications.wording import sentences
from watcher.app import App
from watcher.calls import next_deadline, upcoming_deadlines
from watcher.calls import status as status_at
from watcher.classify import suggestions_for
from watcher.config import AREAS, THEMES
from watcher.storage import ItemFilter
from watcher.types import StoredItem
from watcher.web import charts
from watcher.web.render import (
    KIND_LABELS,
    LANG_COOKIE,
    LANGS,
    STATIC_DIR,
    STATUS_LABELS,
    Formatter,
    Kept,
    app_of,
    local_path,
    page,
    render,
    request_lang,
)

PAGE_SIZE = 50
# Results counted past a page's start: beyond, the list says "1 000+" rather than count
# every match of a broad search (a count reads each one).
COUNT_LIMIT = 1000
# Deadlines on one timeline page (choose an area or theme, or fewer weeks, for the rest):
# rendering is most of the page's time, and 200 rows is more than anyone reads at once.
TIMELINE_LIMIT = 200
DEADLINE_WINDOWS = (7, 14, 30, 90)


@dataclass(frozen=True)
class Row:
    """One item as a list or timeline shows it: display values computed once in Python
    (a template that calls macros and filters per item is several times slower)."""

    id: int
    title: str
    status: str | None
    status_label: str
    kind_label: str
    programme: str | None
    due_iso: str
    due_text: str
    due_days: str  # "om 5 dagar", or "" when passed or none
    sources: str
    seen_iso: str
    seen_text: str
    tags: tuple[tuple[str, str, str], ...]  # (kind, id, label)


def rows_for(items: Sequence[StoredItem], fmt: Formatter, names: Mapping[str, str]) -> list[Row]:
    # Babel formats a date in tens of microseconds, and a timeline's 200 rows share a few
    # dozen days: each date is written once per page.
    moment, days_left, day = (cache(f) for f in (fmt.moment, fmt.days_left, fmt.day))
    tag_label = cache(fmt.tag)
    out = []
    for it in items:
        due = next_deadline(it, fmt.now)
        status = status_at(it, fmt.now)
        source_ids = dict.fromkeys(s.source_id for s in it.sources) or {it.source_id: None}
        out.append(
            Row(
                id=it.id,
                title=it.title,
                status=status,
                status_label=fmt.status(status),
                kind_label=fmt.kind(it.kind),
                programme=it.programme,
                due_iso=fmt.iso(due),
                due_text=moment(due) if due else "",
                due_days=days_left(due) if due else "",
                sources=", ".join(names.get(s, s) for s in source_ids),
                seen_iso=fmt.iso(it.first_seen),
                seen_text=day(fmt.local(it.first_seen).date()),
                tags=tuple((t.kind, t.tag, tag_label(t.kind, t.tag)) for t in it.tags),
            )
        )
    return out


# -- filters from the query string ------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """The item list's filters as the form shows them (strings, leniently parsed)."""

    q: str = ""
    area: str = ""
    theme: str = ""
    source: str = ""
    programme: str = ""
    status: str = ""
    kind: str = ""
    within: str = ""
    date_from: str = ""
    date_to: str = ""
    sort: str = "newest"
    include_all: bool = False
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str], sources: Sequence[str]) -> ListQuery:
        def pick(name: str, allowed: Sequence[str]) -> str:
            v = params.get(name, "")
            return v if v in allowed else ""

        try:
            page = max(1, min(int(params.get("page", "1")), 100_000))
        except ValueError:
            page = 1
        q = params.get("q", "").strip()[:200]
        return cls(
            q=q,
            area=pick("area", AREAS),
            theme=pick("theme", THEMES),
            source=pick("source", sources),
            programme=params.get("programme", "").strip()[:100],
            status=pick("status", tuple(STATUS_LABELS)),
            kind=pick("kind", tuple(KIND_LABELS)),
            within=pick("within", [str(d) for d in DEADLINE_WINDOWS]),
            date_from=_iso_date(params.get("from", "")),
            date_to=_iso_date(params.get("to", "")),
            sort=_sort(params.get("sort", ""), q),
            include_all=params.get("all") == "1",
            page=page,
        )

    def item_filter(self, now: datetime, tz: tzinfo) -> ItemFilter:
        deadline_from: datetime | None = None
        deadline_to: datetime | None = None
        if self.within:
            deadline_from, deadline_to = now, now + timedelta(days=int(self.within))
        if self.date_from:
            deadline_from = _local_midnight(self.date_from, tz)
        if self.date_to:
            deadline_to = _local_midnight(self.date_to, tz) + timedelta(days=1, microseconds=-1)
        if self.sort == "deadline" and deadline_from is None and self.status != "closed":
            # "Nearest deadline first" means upcoming ones, not calls closed years ago.
            deadline_from = now
        return ItemFilter(
            text=self.q or None,
            area=self.area or None,
            theme=self.theme or None,
            source=self.source or None,
            programme=self.programme or None,
            status=self.status or None,
            kind=self.kind or None,
            deadline_from=deadline_from,
            deadline_to=deadline_to,
            relevant=None if self.include_all else True,
            order=self.sort,
            limit=PAGE_SIZE,
            offset=(self.page - 1) * PAGE_SIZE,
        )

    def params(self, **override: Any) -> dict[str, str]:
        """The non-empty filters as query parameters (for pagination and feed links)."""
        values = {
            "q": self.q,
            "area": self.area,
            "theme": self.theme,
            "source": self.source,
            "programme": self.programme,
            "status": self.status,
            "kind": self.kind,
            "within": self.within,
            "from": self.date_from,
            "to": self.date_to,
            "sort": "" if self.sort == _sort("", self.q) else self.sort,
            "all": "1" if self.include_all else "",
            "page": "" if self.page == 1 else str(self.page),
        }
        values.update({k: str(v) for k, v in override.items()})
        return {k: v for k, v in values.items() if v and not (k == "page" and v == "1")}

    def url(self, **override: Any) -> str:
        p = self.params(**override)
        return "/" + (f"?{urlencode(p)}" if p else "")

    @property
    def active(self) -> bool:
        return any(
            (
                self.q,
                self.area,
                self.theme,
                self.source,
                self.programme,
                self.status,
                self.kind,
                self.within,
                self.date_from,
                self.date_to,
                self.include_all,
            )
        )


SORTS = ("relevance", "newest", "deadline")


def _sort(value: str, q: str) -> str:
    """The list's order: as asked, else best match first with a search, newest without."""
    if value in SORTS and (value != "relevance" or q):
        return value
    return "relevance" if q else "newest"


def _iso_date(value: str) -> str:
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return ""


def _local_midnight(iso: str, tz: tzinfo) -> datetime:
    d = date.fromisoformat(iso)
    return datetime(d.year, d.month, d.day, tzinfo=tz)


# -- pages ---------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


def _source_names(app: App) -> dict[str, str]:
    return {s.id: s.name for s in app.config.sources}


@router.get("/", response_class=HTMLResponse)
async def item_list(request: Request) -> HTMLResponse:
    """The item list: full-text search, filters, sort, pages."""
    app = app_of(request)
    names = _source_names(app)
    query = ListQuery.from_params(request.query_params, list(names))
    now = app.now()
    f = query.item_filter(now, app.config.tz)
    return await page(
        request, lambda: _item_list(request, names, query, now, f), costly=not f.reads_few_rows
    )


def _item_list(
    request: Request, names: dict[str, str], query: ListQuery, now: datetime, f: ItemFilter
) -> HTMLResponse:
    app = app_of(request)
    found, total, more = app.storage.list_counted(f, COUNT_LIMIT, with_evidence=False)
    pages = max(1, -(-total // PAGE_SIZE))
    fmt = Formatter(request_lang(request), app.config.tz, now)
    feeds = []
    if query.area:
        feeds.append(("area", query.area))
    if query.theme:
        feeds.append(("theme", query.theme))
    return render(
        request,
        "list.html",
        {
            "query": query,
            "rows": rows_for(found, fmt, names),
            "total": total,
            "more": more,  # more than ``total``, not counted
            "pages": pages,
            "source_names": names,
            "windows": DEADLINE_WINDOWS,
            "feeds": feeds,
        },
    )


@router.get("/items/{item_id}", response_class=HTMLResponse)
async def item_page(request: Request, item_id: str) -> HTMLResponse:
    """One item: the call record, every source link, change history, tags and why."""
    return await page(
        request, lambda: render(request, "item.html", item_context(request, item_id, admin=False))
    )


def item_context(request: Request, item_id: str, *, admin: bool) -> dict[str, Any]:
    """What the item page shows; with ``admin`` also the one-click corrections and the
    model's suggestions (the admin's view of the page, ``/admin/items/{id}``: the admin's
    session cookie is scoped to ``/admin``). 404 for no such item. Reads only."""
    app = app_of(request)
    item = app.storage.get_item(int(item_id)) if item_id.isdigit() and len(item_id) < 12 else None
    if item is None:
        raise StarletteHTTPException(404)
    now = app.now()
    lang = request_lang(request)
    history = [
        (h, sentences(h.changes, lang, app.config.tz)) for h in app.storage.item_history(item.id)
    ]
    return {
        "item": item,
        "history": history,
        "tag_history": app.storage.tag_history(item.id),
        "source_names": _source_names(app),
        "now": now,
        "status": status_at(item, now),
        "next_deadline": next_deadline(item, now),
        "admin": admin,
        "corrections": app.storage.corrections_of(item.id) if admin else [],
        "suggestions": suggestions_for(app.storage, item) if admin else [],
        "areas": AREAS,
        "themes": THEMES,
    }


@dataclass(frozen=True)
class Week:
    year: int
    number: int
    start: date
    end: date
    rows: list[Row]


CHART_LIMIT = 60  # bars on the deadline chart (the list below it has every deadline)


def _deadline_chart(
    dated: Sequence[tuple[datetime, StoredItem]], fmt: Formatter, area: str, today: date, weeks: int
) -> dict[str, Any]:
    """The timeline chart of the open and forthcoming calls among ``dated`` (nearest
    deadline first), by area, and the same bars as table rows."""
    day, month = charts.short_labels(cache(fmt.day))
    groups: dict[str, list[tuple[charts.CallSpan, StoredItem]]] = {}
    shown = left_out = 0
    for due, it in dated:
        status = status_at(it, fmt.now)
        if status not in ("open", "forthcoming"):
            continue
        if shown == CHART_LIMIT:
            left_out += 1
            continue
        shown += 1
        span = charts.CallSpan(
            label=it.title,
            deadline=fmt.local(due).date(),
            opening=fmt.local(it.opening).date() if it.opening else None,
            status=status,
            later=tuple(fmt.local(d).date() for d in upcoming_deadlines(it, due)),
        )
        for a in [area] if area else (it.tag_ids("area") or [""]):
            groups.setdefault(a, []).append((span, it))
    order = [a for a in (*AREAS, "") if a in groups]
    _ = fmt.gettext
    names = {a: fmt.area(a) if a else _("Utan område") for a in order}
    svg = charts.timeline_chart(
        [(names[a], [s for s, _it in groups[a]]) for a in order],
        today,
        today + timedelta(weeks=weeks),
        charts.TimelineText(
            title=_("Öppna och kommande utlysningar: från öppning till sista ansökningsdag"),
            today=_("i dag"),
            bar=_("{label}: öppnar {opening}, sista dag {deadline}"),
            unknown=_("okänt"),
        ),
        day,
        month,
    )
    table = [(names[a], span, it.id) for a in order for span, it in groups[a]]
    return {"chart": svg, "chart_rows": table, "chart_shown": shown, "chart_left_out": left_out}


@router.get("/deadlines", response_class=HTMLResponse)
async def deadlines(request: Request) -> HTMLResponse:
    """Upcoming deadlines, week by week. The timeline is kept for a while
    (``TimelineCache``); building it reads and lays out hundreds of calls, so a page that
    must build it is costly (``render.page``)."""
    app = app_of(request)
    params = request.query_params
    area = params.get("area", "") if params.get("area") in AREAS else ""
    theme = params.get("theme", "") if params.get("theme") in THEMES else ""
    try:
        weeks = max(1, min(int(params.get("weeks", "12")), 52))
    except ValueError:
        weeks = 12
    lang = request_lang(request)
    timeline = request.app.state.timeline_cache
    key = (lang, area, theme, weeks)

    def make() -> HTMLResponse:
        data = timeline.get(key, lambda now: {key: _timeline(app, now, lang, area, theme, weeks)})
        return render(request, "deadlines.html", data)

    return await page(request, make, costly=timeline.fresh(key) is None)


def _timeline(
    app: App, now: datetime, lang: str, area: str, theme: str, weeks: int
) -> dict[str, Any]:
    """What the deadline timeline shows at ``now`` (when the cache made it): its weeks and
    rows, and the chart."""
    fmt = Formatter(lang, app.config.tz, now)
    f = ItemFilter(
        area=area or None,
        theme=theme or None,
        deadline_from=now,
        deadline_to=now + timedelta(weeks=weeks),
        relevant=True,
        order="deadline",
        limit=TIMELINE_LIMIT,
    )
    found = app.storage.list_items(f, with_evidence=False)
    # The next deadline decides the week (a call with several deadlines shows at the next).
    dated = sorted(
        ((due, it) for it in found if (due := next_deadline(it, now)) is not None),
        key=lambda e: (e[0], e[1].id),
    )
    rows = rows_for([it for _due, it in dated], fmt, _source_names(app))
    chart = _deadline_chart(dated, fmt, area, now.astimezone(app.config.tz).date(), weeks)
    by_week: dict[tuple[int, int], Week] = {}
    for (due, _it), row in zip(dated, rows, strict=True):
        local = fmt.local(due).date()
        y, w, _ = local.isocalendar()
        if (y, w) not in by_week:
            start = local - timedelta(days=local.weekday())
            by_week[(y, w)] = Week(y, w, start, start + timedelta(days=6), [])
        by_week[(y, w)].rows.append(row)
    return {
        "weeks": [by_week[k] for k in sorted(by_week)],
        "area": area,
        "theme": theme,
        "span": weeks,
        "truncated": len(found) >= TIMELINE_LIMIT,
        "limit": TIMELINE_LIMIT,
        **chart,
    }


# How long the timeline's data is reused at most: changes this process makes empty it at
# once (the app's hooks); another process's polls, and deadlines passing, within this.
TIMELINE_TTL = timedelta(seconds=60)


class TimelineCache(Kept[tuple[str, str, str, int], dict[str, Any]]):
    """The deadline timeline's data by (language, area, theme, weeks): reading and laying
    out up to ``TIMELINE_LIMIT`` calls was most of the page's time, and every visitor asks
    the same few. Emptied when items, tags or the config change; at most ``TIMELINE_TTL``
    old. The page itself is rendered for each request."""

    def __init__(self, app: App, ttl: timedelta = TIMELINE_TTL) -> None:
        super().__init__(app.now, ttl)


@router.get("/subscribe", response_class=HTMLResponse)
def subscribe(request: Request) -> HTMLResponse:
    """Feeds and calendars of each area, theme and network."""
    app = app_of(request)
    networks = [n for n in app.config.networks if n.enabled]
    return render(request, "subscribe.html", {"networks": networks})


@router.get("/lang/{code}")
def switch_language(request: Request, code: str) -> Response:
    """Remember the interface language and go back to the page."""
    target = local_path(request.query_params.get("next"))
    response = RedirectResponse(target, status_code=303)
    if code in LANGS:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, httponly=True, samesite="lax")
    return response


def install(web: FastAPI, app: App) -> None:
    """Public pages and static files; the timeline's cache hooked to the app's changes."""
    cache = TimelineCache(app)
    app.hooks.on_any_change(cache.invalidate)
    web.state.timeline_cache = cache
    web.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    web.include_router(router)
