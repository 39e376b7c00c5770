"""What every HTML page shares: labels, language, formatting, the templates and ``render``.

Pages are server-rendered Jinja2 with autoescape on: scraped text is data, never markup.
A link taken from a source is rendered as a link only when it is ``http``/``https``
(``safe_url``). The interface is Swedish, with an English switch (``/lang/en``); the English
catalogue is Babel's ``locale/en/LC_MESSAGES/messages.po`` keyed by the Swedish text
(extracted with ``pybabel extract -F watcher/web/babel.cfg``), and dates and numbers come
from Babel's locale data (``sv_SE``, ``en_GB``): a count is written with the ``number``
filter (``{{ total|number }}``: ``1 234`` in Swedish, ``1,234`` in English), the helper the
digests use (``notifications.labels.format_number``). Times are stored in UTC
and shown in the configured time zone (Europe/Stockholm) by a ``Formatter``.

The public pages (``watcher.web.public``), the admin (``watcher.web.admin``) and the error
pages (``watcher.web.errors``) render through here; ``app_of`` gives a route the service's
``App``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar, cast
from urllib.parse import urlencode, urlsplit

import jinja2
import tomlkit
from babel import Locale, dates
from babel.messages.pofile import read_po
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from notifications.labels import (
    format_datetime,
    format_day,
    format_number,
    locale_of,
)
from watcher.app import App
from watcher.calls import has_passed
from watcher.config import AREAS, THEMES
from watcher.web import messages

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
LANGS = ("sv", "en")
LANG_COOKIE = "lang"

# A translation function: Swedish text (a format string) and its values in, the
# interface language's text out.
Gettext = Callable[..., str]


def app_of(request: Request) -> App:
    """The service behind the web application (``create_app`` put it there)."""
    return cast(App, request.app.state.app)


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
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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


def code(text: str) -> Markup:
    """``text`` as ``<code>``: a key or a value to type, the same in every language."""
    return Markup("<code>%s</code>") % text


def ticks(text: str) -> Markup:
    """``text`` with the parts written between backticks as ``<code>``."""
    parts = str(escape(text)).split("`")
    return Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))


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


LOCALE_DIR = WEB_DIR / "locale"
PO_FILE = LOCALE_DIR / "en" / "LC_MESSAGES" / "messages.po"


@lru_cache(maxsize=1)
def catalogue() -> dict[str, str]:
    """The English translations, keyed by the Swedish text: Babel's message catalogue
    ``locale/en/LC_MESSAGES/messages.po``, read once at start (no compiled ``.mo`` to keep
    in step). An untranslated or fuzzy entry falls back to the Swedish text."""
    with PO_FILE.open("rb") as f:
        po = read_po(f, locale="en")
    return {
        str(m.id): str(m.string)
        for m in po
        if m.id and isinstance(m.id, str) and m.string and not m.fuzzy
    }


def translator(lang: str) -> Gettext:
    cat = catalogue() if lang == "en" else {}

    def gettext(text: str, **values: Any) -> str:
        out = cat.get(text, text)
        if not values:
            return out
        if any(isinstance(v, Markup) for v in values.values()):
            # Markup values (``code``) stay markup; the text and the other values are escaped.
            return escape(out).format(**values)
        return out.format(**values)

    return gettext


def request_lang(request: Request) -> str:
    q = request.query_params.get("lang")
    if q in LANGS:
        return q
    c = request.cookies.get(LANG_COOKIE)
    return c if c in LANGS else "sv"


def gettext_for(request: Request) -> Gettext:
    """The request's ``gettext``: Swedish text in, the interface language out."""
    return translator(request_lang(request))


# -- formatting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Formatter:
    """Dates and labels in one language and time zone."""

    lang: str
    tz: tzinfo
    now: datetime

    @cached_property
    def gettext(self) -> Gettext:
        return translator(self.lang)

    @property
    def locale(self) -> str:
        """Babel's locale of the interface language (``sv_SE``, ``en_GB``)."""
        return locale_of(self.lang)

    def local(self, dt: datetime) -> datetime:
        return dt.astimezone(self.tz)

    def day(self, dt: datetime | date | None) -> str:
        """A day as the digest writes it (``labels.format_day``): ``16 mars 2027``."""
        if dt is None:
            return "–"
        return format_day(self.local(dt).date() if isinstance(dt, datetime) else dt, self.lang)

    def moment(self, dt: datetime | None) -> str:
        """The date, with the time when it is not a whole day's end (deadlines often close
        17:00): ``16 mars 2027 kl. 17:00``, ``16 March 2027, 17:00``, ``16 mars 2027`` for
        00:00 and 23:59. The digest's and the alerts' formatter, so a call's deadline reads
        the same in an email and on its page."""
        if dt is None:
            return "–"
        return format_datetime(dt, self.lang, self.tz)

    def stamp(self, dt: datetime | None) -> str:
        """A compact local timestamp for logs and tables: 2026-11-02 09:00."""
        return self.local(dt).strftime("%Y-%m-%d %H:%M") if dt else "–"

    def iso(self, dt: datetime | None) -> str:
        return dt.isoformat() if dt else ""

    def number(self, value: float) -> str:
        """A count as the interface's language writes it (``1 234``, ``1,234``)."""
        return format_number(value, self.lang)

    def days_left(self, dt: datetime | None) -> str:
        """How soon a deadline still ahead comes (``i dag``, ``om 3 dagar``); nothing for
        one that has passed (``calls.has_passed``)."""
        if dt is None or has_passed(dt, self.now):
            return ""
        days = (self.local(dt).date() - self.local(self.now).date()).days
        _ = self.gettext
        if days == 0:
            return _("i dag")
        if days == 1:
            return _("i morgon")
        return _("om {n} dagar", n=self.number(days))

    def short_range(self, start: date, end: date) -> str:
        # Babel's abbreviations, without the full stop Swedish gives them ("nov."):
        # a range in a heading reads "2–8 nov".
        names = dates.get_month_names("abbreviated", locale=self.locale)
        months = [names[m].rstrip(".") for m in range(1, 13)]
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

    def tag_ref(self, ref: str) -> str:
        """A tag written ``area:partners`` by its label."""
        kind, _, key = ref.partition(":")
        return self.tag(kind, key) if kind in ("area", "theme") and key else ref

    def evidence(self, field: str | None, matched: str | None) -> str:
        """What a rule matched: a kind or status by its label, words as they were found."""
        if field == "kind":
            return self.kind(matched)
        if field == "status":
            return self.status(matched)
        return matched or ""

    def error(self, code: str | None) -> str:
        """A poll error's code in words."""
        return messages.error_label(code, self.lang)

    def warning(self, text: str | None) -> Markup:
        """A source's health warning; notes the interface cannot say in Swedish are shown
        as they came, marked as English."""
        parts = []
        for note, translated in messages.warning_parts(text, self.lang):
            parts.append(escape(note) if translated else Markup('<span lang="en">%s</span>') % note)
        return Markup("; ").join(parts)

    def language(self, code: str | None) -> str:
        """A language code (``sv``, ``en``) by its name in the interface's language."""
        if not code:
            return "–"
        name = Locale.parse(self.locale).languages.get(code.lower())
        return name or code

    def schedule(self, spec: str | None) -> str:
        """A network's digest schedule (``mon,thu 08:00``, ``daily 07:30``, ``weekdays 08:00``)
        or a source's interval (``6h``) in words; anything else (a cron line) as written."""
        if not spec:
            return "–"
        parts = spec.split()
        if len(parts) != 2:
            return spec
        when, at = parts
        days = dates.get_day_names("abbreviated", locale=self.locale)
        words = {"daily": self.gettext("dagligen"), "weekdays": self.gettext("vardagar")}
        if when in words:
            return f"{words[when]} {at}"
        names = []
        for d in when.split(","):
            if d not in _WEEKDAYS:
                return spec
            names.append(days[_WEEKDAYS.index(d)].rstrip("."))
        return f"{', '.join(names)} {at}"


def short_value(value: Any, limit: int = 200) -> str:
    """A history value as short text."""
    if value is None or value == "" or value == []:
        return "–"
    text = ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@jinja2.pass_context
def number(context: jinja2.runtime.Context, value: Any) -> str:
    """The ``number`` filter: a count in the page's language (``{{ total|number }}``);
    anything that is not a number (a missing detail: None) is shown as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return format_number(value, context.get("lang", "sv"))


def as_toml(entry: Mapping[str, Any]) -> str:
    """A config entry as the TOML an admin would read in config.toml."""
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
    env.filters["number"] = number
    env.globals["feed_url"] = feed_url
    env.globals["code"] = code
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
    app = app_of(request)
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


R = TypeVar("R")


async def page(request: Request, make: Callable[[], R], *, costly: bool = False) -> R:
    """What a page of reads makes (``make``: its reads and its rendering), for a route on
    the event loop: made right here when its reads are short and belong on the loop's own
    thread (``Storage.reads_here``: SQLite in WAL mode), else in the thread pool, where a
    route that is not async runs. A ``costly`` page always goes to the pool: a search, a
    filter that scans (``ItemFilter.reads_few_rows``), a timeline to build. Most of its
    time is the database's own work, which lets go of the GIL, so two such pages run at
    once on two cores and the loop goes on meanwhile; on the loop they queued (at 100,000
    items on SQLite, four clients at once, a search's median was 64 ms from the pool and
    100 ms on the loop)."""
    if not costly and app_of(request).storage.reads_here:
        return make()
    return await run_in_threadpool(make)


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


# -- kept pages ------------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """What a page or document costs to build, built on first use and kept until
    ``invalidate`` (hooked to the app's change hooks: ``Hooks.on_any_change``) or until
    ``ttl`` old by ``clock`` (another process's polls reach no hook here)."""

    def __init__(self, clock: Callable[[], datetime], ttl: timedelta) -> None:
        self._clock = clock
        self.ttl = ttl
        self._entries: dict[K, tuple[datetime, V]] = {}
        self._lock = threading.Lock()
        self.builds = 0

    def invalidate(self, *_args: Any) -> None:
        self._entries = {}

    def fresh(self, key: K) -> V | None:
        hit = self._entries.get(key)
        if hit is not None and self._clock() - hit[0] < self.ttl:
            return hit[1]
        return None

    def get(self, key: K, build: Callable[[datetime], Mapping[K, V]]) -> V:
        """``key``'s value, built when missing or expired by ``build(now)``, which may make
        its siblings too (RSS and Atom come from one query); one build at a time."""
        hit = self.fresh(key)
        if hit is not None:
            return hit
        with self._lock:
            hit = self.fresh(key)
            if hit is not None:
                return hit
            now = self._clock()
            self.builds += 1
            made = build(now)
            self._entries.update((k, (now, v)) for k, v in made.items())
            return made[key]
