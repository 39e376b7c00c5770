"""The public web: item list with search and filters, item page, deadline timeline, the
subscription page; and what every HTML page shares (rendering, language, labels, errors).

Pages are server-rendered Jinja2 with autoescape on: scraped text is data, never markup.
A link taken from a source is rendered as a link only when it is ``http``/``https``
(``safe_url``). The interface is Swedish, with an English switch (``/lang/en``); the English
catalogue is ``templates/i18n/en.toml`` keyed by the Swedish text. Times are stored in UTC
and shown in the configured time zone (Europe/Stockholm).
"""

from __future__ import annotations

import hashlib
import logging
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from watcher.calls import next_deadline
from watcher.calls import status as status_at
from watcher.config import AREAS, THEMES
from watcher.exceptions import StorageError
from watcher.storage import ItemFilter
from watcher.types import StoredItem

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
LANGS = ("sv", "en")
LANG_COOKIE = "lang"
PAGE_SIZE = 50
TIMELINE_LIMIT = 500  # deadlines on one timeline page (choose an area or theme for more)

# -- labels ------------------------------------------------------------------------------------

AREA_LABELS: dict[str, tuple[str, str]] = {
    "fonder-program": ("EU:s fonder och program", "EU funds and programmes"),
    "paverkan": ("Påverkansarbete", "Influencing EU policy"),
    "kompetens": ("Kompetensutveckling", "Skills development"),
    "partners": ("Partner och nätverk", "Partners and networks"),
    "forhandsinfo": ("Förhandsinformation", "Early information"),
    "natverkssamverkan": ("Nätverkssamverkan", "Network cooperation"),
}
THEME_LABELS: dict[str, tuple[str, str]] = {
    "arbetsmarknad": ("Arbetsmarknad", "Labour market"),
    "utbildning": ("Utbildning", "Education"),
    "social-valfard": ("Social välfärd", "Social welfare"),
    "samhallsbyggnad": ("Samhällsbyggnad", "Urban and regional development"),
    "naringsliv-innovation": ("Näringsliv och innovation", "Business and innovation"),
}
STATUS_LABELS: dict[str, tuple[str, str]] = {
    "forthcoming": ("Kommande", "Forthcoming"),
    "open": ("Öppen", "Open"),
    "closed": ("Stängd", "Closed"),
}
KIND_LABELS: dict[str, tuple[str, str]] = {
    "call": ("Utlysning", "Call"),
    "forthcoming_call": ("Kommande utlysning", "Forthcoming call"),
    "consultation": ("Samråd", "Consultation"),
    "event": ("Evenemang", "Event"),
    "news": ("Nyhet", "News"),
    "partner_search": ("Partnersökning", "Partner search"),
    "page_change": ("Ändrad sida", "Page change"),
}
FIELD_LABELS: dict[str, tuple[str, str]] = {
    "title": ("Titel", "Title"),
    "link": ("Länk", "Link"),
    "summary": ("Sammanfattning", "Summary"),
    "status": ("Status", "Status"),
    "deadline": ("Sista dag", "Deadline"),
    "deadlines": ("Sista dagar", "Deadlines"),
    "opening": ("Öppnar", "Opens"),
    "programme": ("Program", "Programme"),
    "budget": ("Budget", "Budget"),
    "identifier": ("Id", "Identifier"),
    "kind": ("Typ", "Kind"),
    "sources": ("Källor", "Sources"),
}
_MONTHS = {
    "sv": "januari februari mars april maj juni juli augusti september oktober november december",
    "en": "January February March April May June July August September October November December",
}
_MONTHS_SHORT = {
    "sv": "jan feb mar apr maj jun jul aug sep okt nov dec",
    "en": "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec",
}
DEADLINE_WINDOWS = (7, 14, 30, 90)


def label(table: Mapping[str, tuple[str, str]], key: str | None, lang: str) -> str:
    """The Swedish or English label of a key (the key itself when unknown)."""
    if key is None:
        return ""
    pair = table.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]


# -- URLs ----------------------------------------------------------------------------------------


def safe_url(url: str | None) -> str | None:
    """``url`` if it may be rendered as a link (absolute http/https, no control
    characters or surrounding spaces), else None: ``javascript:``, ``data:`` and the like
    are shown as text."""
    if not url or url != url.strip() or any(ord(c) < 32 or c == "\x7f" for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def local_path(target: str | None, default: str = "/") -> str:
    """A redirect target on this site only (a path, never ``//host`` or a URL)."""
    if not target or any(ord(c) < 32 or c == "\\" for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def feed_url(scope: str, ident: str, fmt: str) -> str:
    """The delivery feeds' URLs (``watcher/web/feeds.py``): ``/feeds/{scope}/{id}.xml``
    (RSS), ``.atom`` (Atom), ``/calendar/{scope}/{id}.ics`` (iCal); scope ``all`` is
    ``/feeds/all.xml``, ``/feeds/all.atom``, ``/calendar/all.ics``."""
    ext = {"ics": "ics", "atom": "atom"}.get(fmt, "xml")
    base = "/calendar" if fmt == "ics" else "/feeds"
    if scope == "all":
        return f"{base}/all.{ext}"
    return f"{base}/{scope}/{ident}.{ext}"


# -- language ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def catalogue() -> dict[str, str]:
    """The English translations, keyed by the Swedish text."""
    with (TEMPLATES_DIR / "i18n" / "en.toml").open("rb") as f:
        return {str(k): str(v) for k, v in tomllib.load(f).items()}


def translator(lang: str) -> Callable[..., str]:
    cat = catalogue() if lang == "en" else {}

    def gettext(text: str, **values: Any) -> str:
        out = cat.get(text, text)
        return out.format(**values) if values else out

    return gettext


def request_lang(request: Request) -> str:
    q = request.query_params.get("lang")
    if q in LANGS:
        return q
    c = request.cookies.get(LANG_COOKIE)
    return c if c in LANGS else "sv"


# -- formatting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Formatter:
    """Dates and labels in one language and time zone."""

    lang: str
    tz: Any
    now: datetime

    @cached_property
    def gettext(self) -> Callable[..., str]:
        return translator(self.lang)

    def local(self, dt: datetime) -> datetime:
        return dt.astimezone(self.tz)

    def day(self, dt: datetime | date | None) -> str:
        if dt is None:
            return "–"
        d = self.local(dt) if isinstance(dt, datetime) else dt
        month = _MONTHS[self.lang].split()[d.month - 1]
        return f"{d.day} {month} {d.year}"

    def moment(self, dt: datetime | None) -> str:
        """The date, with the time when it is not midnight (deadlines often close 17:00)."""
        if dt is None:
            return "–"
        d = self.local(dt)
        out = self.day(d)
        if (d.hour, d.minute) != (0, 0):
            out += f" {d.hour:02d}:{d.minute:02d}"
        return out

    def stamp(self, dt: datetime | None) -> str:
        """A compact local timestamp for logs and tables: 2026-11-02 09:00."""
        return self.local(dt).strftime("%Y-%m-%d %H:%M") if dt else "–"

    def iso(self, dt: datetime | None) -> str:
        return dt.isoformat() if dt else ""

    def days_left(self, dt: datetime | None) -> str:
        if dt is None:
            return ""
        days = (self.local(dt).date() - self.local(self.now).date()).days
        _ = self.gettext
        if dt < self.now:
            return _("passerad")
        if days == 0:
            return _("i dag")
        if days == 1:
            return _("i morgon")
        return _("om {n} dagar", n=days)

    def short_range(self, start: date, end: date) -> str:
        months = _MONTHS_SHORT[self.lang].split()
        if start.month == end.month:
            return f"{start.day}–{end.day} {months[end.month - 1]}"
        return f"{start.day} {months[start.month - 1]} – {end.day} {months[end.month - 1]}"

    def area(self, key: str | None) -> str:
        return label(AREA_LABELS, key, self.lang)

    def theme(self, key: str | None) -> str:
        return label(THEME_LABELS, key, self.lang)

    def status(self, key: str | None) -> str:
        return label(STATUS_LABELS, key, self.lang)

    def kind(self, key: str | None) -> str:
        return label(KIND_LABELS, key, self.lang)

    def field(self, key: str | None) -> str:
        return label(FIELD_LABELS, key, self.lang)

    def tag(self, kind: str, key: str) -> str:
        return self.area(key) if kind == "area" else self.theme(key)


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
                due_text=fmt.moment(due) if due else "",
                due_days=fmt.days_left(due) if due and due >= fmt.now else "",
                sources=", ".join(names.get(s, s) for s in source_ids),
                seen_iso=fmt.iso(it.first_seen),
                seen_text=fmt.day(it.first_seen),
                tags=tuple((t.kind, t.tag, fmt.tag(t.kind, t.tag)) for t in it.tags),
            )
        )
    return out


def short_value(value: Any, limit: int = 200) -> str:
    """A history value as short text."""
    if value is None or value == "" or value == []:
        return "–"
    text = ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_toml(entry: Mapping[str, Any]) -> str:
    """A config entry as the TOML an admin would read in config.toml."""
    import tomlkit

    return tomlkit.dumps(dict(entry))


# -- rendering -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        auto_reload=False,  # templates are part of the release
        autoescape=True,  # every template: scraped text is never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe_url"] = safe_url
    env.filters["short"] = short_value
    env.filters["as_toml"] = as_toml
    env.globals["feed_url"] = feed_url
    env.globals["AREAS"] = AREAS
    env.globals["THEMES"] = THEMES
    env.globals["STATUSES"] = tuple(STATUS_LABELS)
    env.globals["KINDS"] = tuple(KIND_LABELS)
    env.globals["static_version"] = _static_version()
    return env


def _static_version() -> str:
    digest = hashlib.sha256()
    for f in sorted(STATIC_DIR.glob("*")):
        digest.update(f.read_bytes())
    return digest.hexdigest()[:10]


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def base_context(request: Request) -> dict[str, Any]:
    """What every page's template gets: language, formatter, navigation."""
    app = request.app.state.app
    lang = request_lang(request)
    fmt = Formatter(lang, app.config.tz, app.now())
    path = request.url.path
    here = path + (f"?{request.url.query}" if request.url.query else "")
    session = getattr(request.state, "session", None)
    return {
        "lang": lang,
        "_": translator(lang),
        "fmt": fmt,
        "path": path,
        "here": here,
        "other_lang": "en" if lang == "sv" else "sv",
        "lang_switch": f"/lang/{'en' if lang == 'sv' else 'sv'}?{urlencode({'next': here})}",
        "session": session,
        "user": session.user if session is not None else None,
        "csrf_token": session.csrf if session is not None else "",
        "flashes": session.pop_flash() if session is not None else [],
        "config_error": app.config_error,
    }


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a page with the shared context and the security headers."""
    ctx = base_context(request)
    ctx.update(context or {})
    html = environment().get_template(template).render(ctx)
    response = HTMLResponse(html, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    if request.url.path.startswith("/admin"):
        response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response


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
        return cls(
            q=params.get("q", "").strip()[:200],
            area=pick("area", AREAS),
            theme=pick("theme", THEMES),
            source=pick("source", sources),
            programme=params.get("programme", "").strip()[:100],
            status=pick("status", tuple(STATUS_LABELS)),
            kind=pick("kind", tuple(KIND_LABELS)),
            within=pick("within", [str(d) for d in DEADLINE_WINDOWS]),
            date_from=_iso_date(params.get("from", "")),
            date_to=_iso_date(params.get("to", "")),
            sort="deadline" if params.get("sort") == "deadline" else "newest",
            include_all=params.get("all") == "1",
            page=page,
        )

    def item_filter(self, now: datetime, tz: Any) -> ItemFilter:
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
            "sort": "" if self.sort == "newest" else self.sort,
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


def _iso_date(value: str) -> str:
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return ""


def _local_midnight(iso: str, tz: Any) -> datetime:
    d = date.fromisoformat(iso)
    return datetime(d.year, d.month, d.day, tzinfo=tz)


# -- pages ---------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


def _source_names(app: Any) -> dict[str, str]:
    return {s.id: s.name for s in app.config.sources}


@router.get("/", response_class=HTMLResponse)
def item_list(request: Request) -> HTMLResponse:
    """The item list: full-text search, filters, sort, pages."""
    app = request.app.state.app
    names = _source_names(app)
    query = ListQuery.from_params(request.query_params, list(names))
    now = app.now()
    f = query.item_filter(now, app.config.tz)
    found = app.storage.list_items(f)
    # When the first page holds them all, that is the count: no second scan.
    all_here = query.page == 1 and len(found) < PAGE_SIZE
    total = len(found) if all_here else app.storage.count_items(f)
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
            "pages": pages,
            "source_names": names,
            "windows": DEADLINE_WINDOWS,
            "feeds": feeds,
        },
    )


@router.get("/items/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, item_id: str) -> HTMLResponse:
    """One item: the call record, every source link, change history, tags and why."""
    app = request.app.state.app
    item = app.storage.get_item(int(item_id)) if item_id.isdigit() and len(item_id) < 12 else None
    if item is None:
        raise StarletteHTTPException(404)
    now = app.now()
    return render(
        request,
        "item.html",
        {
            "item": item,
            "history": app.storage.item_history(item.id),
            "tag_history": app.storage.tag_history(item.id),
            "source_names": _source_names(app),
            "now": now,
            "status": status_at(item, now),
            "next_deadline": next_deadline(item, now),
        },
    )


@dataclass(frozen=True)
class Week:
    year: int
    number: int
    start: date
    end: date
    rows: list[Row]


@router.get("/deadlines", response_class=HTMLResponse)
def deadlines(request: Request) -> HTMLResponse:
    """Upcoming deadlines, week by week."""
    app = request.app.state.app
    params = request.query_params
    area = params.get("area", "") if params.get("area") in AREAS else ""
    theme = params.get("theme", "") if params.get("theme") in THEMES else ""
    try:
        weeks = max(1, min(int(params.get("weeks", "12")), 52))
    except ValueError:
        weeks = 12
    now = app.now()
    fmt = Formatter(request_lang(request), app.config.tz, now)
    f = ItemFilter(
        area=area or None,
        theme=theme or None,
        deadline_from=now,
        deadline_to=now + timedelta(weeks=weeks),
        relevant=True,
        order="deadline",
        limit=TIMELINE_LIMIT,
    )
    found = app.storage.list_items(f)
    # The next deadline decides the week (a call with several deadlines shows at the next).
    dated = sorted(
        ((due, it) for it in found if (due := next_deadline(it, now)) is not None),
        key=lambda e: (e[0], e[1].id),
    )
    rows = rows_for([it for _due, it in dated], fmt, _source_names(app))
    by_week: dict[tuple[int, int], Week] = {}
    for (due, _it), row in zip(dated, rows, strict=True):
        local = fmt.local(due).date()
        y, w, _ = local.isocalendar()
        if (y, w) not in by_week:
            start = local - timedelta(days=local.weekday())
            by_week[(y, w)] = Week(y, w, start, start + timedelta(days=6), [])
        by_week[(y, w)].rows.append(row)
    return render(
        request,
        "deadlines.html",
        {
            "weeks": [by_week[k] for k in sorted(by_week)],
            "area": area,
            "theme": theme,
            "span": weeks,
            "truncated": len(found) >= TIMELINE_LIMIT,
            "limit": TIMELINE_LIMIT,
        },
    )


@router.get("/subscribe", response_class=HTMLResponse)
def subscribe(request: Request) -> HTMLResponse:
    """Feeds and calendars of each area, theme and network."""
    app = request.app.state.app
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


# -- errors --------------------------------------------------------------------------------------

_HTML_PREFIXES = ("/items", "/deadlines", "/subscribe", "/lang", "/admin", "/static")


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith("/api"):
        return False
    if path == "/" or path.startswith(_HTML_PREFIXES):
        return True
    return "text/html" in request.headers.get("accept", "")


def _error_page(
    request: Request, status: int, headers: Mapping[str, str] | None = None
) -> Response:
    """An error page that says what went wrong in general terms, and never echoes the
    request (its path or parameters) back."""
    try:
        return render(
            request, "error.html", {"status": status}, status_code=status, headers=headers
        )
    except Exception:  # the error page itself failed (database down …): plain text
        log.exception("the error page could not be rendered")
        return Response(f"Error {status}", status_code=status, media_type="text/plain")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _wants_html(request):
        return await http_exception_handler(request, exc)
    return _error_page(request, exc.status_code, getattr(exc, "headers", None))


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not _wants_html(request):
        return await request_validation_exception_handler(request, exc)
    return _error_page(request, 400)


async def storage_error(request: Request, exc: Exception) -> Response:
    log.error("database error on %s: %s", request.url.path, exc)
    if not _wants_html(request):
        return Response(
            '{"detail":"the database is not available"}',
            status_code=503,
            media_type="application/json",
        )
    return _error_page(request, 503)


def install(web: FastAPI) -> None:
    """Public pages, static files and the error pages."""
    web.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    web.include_router(router)
    web.add_exception_handler(StarletteHTTPException, http_error)
    web.add_exception_handler(RequestValidationError, validation_error)
    web.add_exception_handler(StorageError, storage_error)
