"""Feeds, calendars and unsubscribe pages.

- ``/feeds/all.xml|.atom``, ``/feeds/{area|theme|network}/{id}.xml|.atom``: RSS 2.0 / Atom;
- ``/calendar/all.ics``, ``/calendar/{area|theme|network}/{id}.ics``: deadlines;
- ``GET /unsubscribe/{token}`` shows a confirmation page (a link checker or a mail
  scanner that follows the link unsubscribes nobody); ``POST`` records the opt-out (the
  page's button, or a mail client's RFC 8058 one-click POST).

Generated documents are cached in memory and served with ``ETag`` and ``Last-Modified``;
``If-None-Match`` / ``If-Modified-Since`` give 304. The cache is emptied by the
``items_changed``, ``items_retagged`` and ``config_changed`` hooks; entries also expire
after ``CACHE_TTL`` because a web-only process (several processes on one database) never
sees the poller's hooks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from notifications.calendar import KEEP_PAST, build_calendar
from notifications.feeds import FEED_LIMIT, Scope, build_feed, scope_for
from notifications.render import render_page
from notifications.unsubscribe import Unsubscriber, secret_key
from watcher.app import App
from watcher.storage.deliveries import DeliveryStore
from watcher.web.render import Kept, app_of, request_lang

log = logging.getLogger(__name__)

CACHE_TTL = timedelta(seconds=60)
CALENDAR_LIMIT = 2000
MEDIA = {
    "xml": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "ics": "text/calendar; charset=utf-8",
}

# Documents and pages, not the JSON API: kept out of the OpenAPI description.
router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Cached:
    body: bytes
    media_type: str
    etag: str
    last_modified: datetime


class FeedCache(Kept[tuple[str, str, str], Cached]):
    """Generated feeds by (kind, id, format). ``Last-Modified`` is the time a body first
    differed from the previous one for that key, so it never goes back while the content
    changed (tags can change without any item's own times moving)."""

    def __init__(self, app: App, ttl: timedelta = CACHE_TTL) -> None:
        super().__init__(app.now, ttl)
        self._versions: dict[tuple[str, str, str], tuple[str, datetime]] = {}

    def document(self, key: tuple[str, str, str], build: Callable[[], dict[str, bytes]]) -> Cached:
        """The cached document, building it (and its siblings: RSS and Atom come from one
        query) when missing or expired."""

        def documents(now: datetime) -> dict[tuple[str, str, str], Cached]:
            out = {}
            for fmt, body in build().items():
                k = (key[0], key[1], fmt)
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                prev = self._versions.get(k)
                modified = prev[1] if prev is not None and prev[0] == etag else now
                self._versions[k] = (etag, modified)
                out[k] = Cached(body, MEDIA[fmt], etag, modified)
            return out

        return self.get(key, documents)


def install(web: FastAPI, app: App) -> FeedCache:
    """Add the routes to ``web`` and hook the cache to the app's change hooks."""
    cache = FeedCache(app)
    app.hooks.on_any_change(cache.invalidate)
    web.state.feed_cache = cache
    web.include_router(router)
    return cache


def prepare(app: App) -> None:
    """Make the unsubscribe links' key now (startup): a GET of a link only reads it."""
    secret_key(app)


def _not_modified(request: Request, doc: Cached) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return doc.etag in tags or "*" in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        if since.tzinfo is None:
            return False
        return doc.last_modified.replace(microsecond=0) <= since
    return False


def _respond(request: Request, doc: Cached) -> Response:
    headers = {
        "ETag": doc.etag,
        "Last-Modified": format_datetime(doc.last_modified, usegmt=True),
        "Cache-Control": "public, max-age=300",
    }
    if _not_modified(request, doc):
        return Response(status_code=304, headers=headers)
    return Response(doc.body, media_type=doc.media_type, headers=headers)


def _feed_bodies(app: App, scope: Scope, request: Request) -> dict[str, bytes]:
    store = DeliveryStore(app.storage)
    ids = store.feed_item_ids(
        areas=scope.areas,
        themes=scope.themes,
        sources=scope.sources,
        kinds=scope.kinds,
        limit=FEED_LIMIT,
    )
    items = app.storage.get_items(ids)
    base = app.config.watcher.base_url.rstrip("/")
    rss, atom = build_feed(
        items,
        scope,
        self_url=f"{base}/feeds/{scope.path}",
        site_url=base + "/",
        now=app.now(),
        source_names={s.id: s.name for s in app.config.sources},
    )
    return {"xml": rss, "atom": atom}


def _calendar_body(app: App, scope: Scope) -> dict[str, bytes]:
    now = app.now()
    ids = DeliveryStore(app.storage).feed_item_ids(
        areas=scope.areas,
        themes=scope.themes,
        sources=scope.sources,
        kinds=scope.kinds,
        deadline_after=now - KEEP_PAST,
        limit=CALENDAR_LIMIT,
    )
    from notifications.email import Sender

    try:
        domain = Sender.parse(app.config.email.sender).domain
    except ValueError:
        domain = "eu-bevakning.invalid"
    return {"ics": build_calendar(app.storage.get_items(ids), scope, now=now, domain=domain)}


def _split(name: str, allowed: tuple[str, ...]) -> tuple[str, str] | None:
    stem, dot, ext = name.rpartition(".")
    if not dot or ext not in allowed or not stem:
        return None
    return stem, ext


async def _serve_feed(request: Request, kind: str, name: str) -> Response:
    app = app_of(request)
    parts = _split(name, ("xml", "atom"))
    scope = scope_for(app.config, kind, parts[0] if parts else None) if parts else None
    if parts is None or scope is None:
        return Response("no such feed\n", status_code=404, media_type="text/plain")
    cache: FeedCache = request.app.state.feed_cache
    key = (f"feed:{kind}", scope.ident, parts[1])
    doc = cache.fresh(key)
    if doc is None:
        doc = await run_in_threadpool(
            cache.document, key, lambda: _feed_bodies(app, scope, request)
        )
    return _respond(request, doc)


async def _serve_calendar(request: Request, kind: str, name: str) -> Response:
    app = app_of(request)
    parts = _split(name, ("ics",))
    scope = scope_for(app.config, kind, parts[0] if parts else None) if parts else None
    if parts is None or scope is None:
        return Response("no such calendar\n", status_code=404, media_type="text/plain")
    cache: FeedCache = request.app.state.feed_cache
    key = (f"calendar:{kind}", scope.ident, "ics")
    doc = cache.fresh(key)
    if doc is None:
        doc = await run_in_threadpool(cache.document, key, lambda: _calendar_body(app, scope))
    return _respond(request, doc)


@router.api_route("/feeds/{name}", methods=["GET", "HEAD"], tags=["feeds"])
async def feed_all(request: Request, name: str) -> Response:
    """``/feeds/all.xml`` (RSS 2.0) or ``/feeds/all.atom`` (Atom): every relevant item."""
    if not name.startswith("all."):
        return Response("no such feed\n", status_code=404, media_type="text/plain")
    return await _serve_feed(request, "all", name)


@router.api_route("/feeds/{kind}/{name}", methods=["GET", "HEAD"], tags=["feeds"])
async def feed(request: Request, kind: str, name: str) -> Response:
    """``/feeds/{area|theme|network}/{id}.xml`` (RSS 2.0) or ``.atom`` (Atom)."""
    if kind not in ("area", "theme", "network"):
        return Response("no such feed\n", status_code=404, media_type="text/plain")
    return await _serve_feed(request, kind, name)


@router.api_route("/calendar/{name}", methods=["GET", "HEAD"], tags=["feeds"])
async def calendar_all(request: Request, name: str) -> Response:
    """``/calendar/all.ics``: every relevant deadline."""
    if name != "all.ics":
        return Response("no such calendar\n", status_code=404, media_type="text/plain")
    return await _serve_calendar(request, "all", name)


@router.api_route("/calendar/{kind}/{name}", methods=["GET", "HEAD"], tags=["feeds"])
async def calendar(request: Request, kind: str, name: str) -> Response:
    """``/calendar/{area|theme|network}/{id}.ics``: one event per deadline."""
    if kind not in ("area", "theme", "network"):
        return Response("no such calendar\n", status_code=404, media_type="text/plain")
    return await _serve_calendar(request, kind, name)


# -- unsubscribe ------------------------------------------------------------------------------

_PAGES = {
    "sv": {
        "confirm_title": "Avsluta prenumerationen?",
        "confirm": "Vill du sluta få {network} till {address}?",
        "button": "Ja, avsluta",
        "done_title": "Prenumerationen är avslutad",
        "done": "{address} får inte längre {network}. Kontakta administratören om du vill "
        "komma tillbaka.",
        "bad_title": "Länken fungerar inte",
        "bad": "Länken är ofullständig eller ändrad. Använd länken längst ned i ett utskick.",
    },
    "en": {
        "confirm_title": "Unsubscribe?",
        "confirm": "Stop sending {network} to {address}?",
        "button": "Yes, unsubscribe",
        "done_title": "You are unsubscribed",
        "done": "{address} will no longer receive {network}. Ask the administrator to come back.",
        "bad_title": "This link does not work",
        "bad": "The link is incomplete or altered. Use the link at the bottom of a digest.",
    },
}


def _unsub_context(app: App, token: str) -> tuple[str, str, str, str] | None:
    found = Unsubscriber.for_app(app).read(token)
    if found is None:
        return None
    network_id, address = found
    lang, name = "sv", network_id
    for n in app.config.networks:
        if n.id == network_id:
            lang, name = n.language, n.name
    return network_id, address, lang, name


def _page(lang: str, kind: str, status: int = 200, **fmt: str) -> HTMLResponse:
    t = _PAGES.get(lang, _PAGES["sv"])
    body = render_page(
        "unsubscribe.html.j2",
        lang=lang,
        title=t[f"{kind}_title"],
        message=t[kind].format(**fmt),
        confirm=kind == "confirm",
        action=fmt.get("action", ""),
        button=t["button"],
    )
    return HTMLResponse(
        body,
        status_code=status,
        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"},
    )


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, tags=["email"])
async def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    """A confirmation page; nothing is recorded by a GET."""
    app = app_of(request)
    ctx = await run_in_threadpool(_unsub_context, app, token)
    if ctx is None:
        return _page(request_lang(request), "bad", 400)
    _network_id, address, lang, name = ctx
    return _page(lang, "confirm", address=address, network=name, action=f"/unsubscribe/{token}")


@router.post("/unsubscribe/{token}", response_class=HTMLResponse, tags=["email"])
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    """Record the opt-out: the confirmation button, or RFC 8058 one-click
    (``List-Unsubscribe=One-Click`` in the body). Repeating it is harmless."""
    app = app_of(request)
    ctx = await run_in_threadpool(_unsub_context, app, token)
    if ctx is None:
        return _page(request_lang(request), "bad", 400)
    network_id, address, lang, name = ctx
    new = await run_in_threadpool(
        DeliveryStore(app.storage).add_optout, network_id, address, app.now()
    )
    if new:
        log.info("opt-out: %s left %s", address, network_id)
    return _page(lang, "done", address=address, network=name)
