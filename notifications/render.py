"""Rendering digests with Jinja2: HTML (inline styles, autoescaped) and plain text.

Swedish by default, English when the network says ``language = "en"``. Dates are shown in
Europe/Stockholm. The body is rendered once per digest with a random placeholder where
each member's own unsubscribe link goes, then filled in per member: rendering 100 members'
copies costs one render (and a scraped title can never contain the placeholder).
"""

from __future__ import annotations

import dataclasses
import html
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from notifications.digest import Digest, Entry, FieldNote
from notifications.email import BodyTemplate
from notifications.text import one_line
from watcher.dates import STOCKHOLM, from_iso

MONTHS = {
    "sv": [
        "januari",
        "februari",
        "mars",
        "april",
        "maj",
        "juni",
        "juli",
        "augusti",
        "september",
        "oktober",
        "november",
        "december",
    ],
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
}

AREA_NAMES = {
    "sv": {
        "fonder-program": "Strategiskt samarbete inom EU:s fonder och program",
        "paverkan": "Strategiskt påverkansarbete på EU-nivå",
        "kompetens": "Kompetensutveckling inom EU-området",
        "partners": "Samarbetspartners och nätverk i Europa",
        "forhandsinfo": "Förhandsinformation i Bryssel",
        "natverkssamverkan": "Samverkan mellan GR:s och Göteborgs Stads EU-nätverk",
        "": "Övrigt",
    },
    "en": {
        "fonder-program": "EU funds and programmes",
        "paverkan": "EU-level advocacy",
        "kompetens": "Skills development in EU matters",
        "partners": "Partners and networks in Europe",
        "forhandsinfo": "Advance information from Brussels",
        "natverkssamverkan": "Cooperation between the EU networks",
        "": "Other",
    },
}

TAG_NAMES = {
    "sv": {
        "fonder-program": "Fonder och program",
        "paverkan": "Påverkan",
        "kompetens": "Kompetensutveckling",
        "partners": "Partner och nätverk",
        "forhandsinfo": "Förhandsinformation",
        "natverkssamverkan": "Nätverkssamverkan",
        "arbetsmarknad": "Arbetsmarknad",
        "utbildning": "Utbildning",
        "social-valfard": "Social välfärd",
        "samhallsbyggnad": "Samhällsbyggnad",
        "naringsliv-innovation": "Näringsliv och innovation",
    },
    "en": {
        "fonder-program": "Funds and programmes",
        "paverkan": "Advocacy",
        "kompetens": "Skills",
        "partners": "Partners and networks",
        "forhandsinfo": "Advance information",
        "natverkssamverkan": "Network cooperation",
        "arbetsmarknad": "Labour market",
        "utbildning": "Education",
        "social-valfard": "Social welfare",
        "samhallsbyggnad": "Community development",
        "naringsliv-innovation": "Business and innovation",
    },
}

STRINGS: dict[str, dict[str, str]] = {
    "sv": {
        "new": "Nytt sedan förra utskicket",
        "new_first": "Öppet och på gång just nu",
        "updated": "Uppdaterat",
        "closing_soon": "Stänger snart",
        "closing_soon_note": "Utlysningar du följer som stänger inom {days} dagar.",
        "intro": "EU-bevakning för {network}, {date}.",
        "intro_first": (
            "Det här är nätverkets första utskick: det visar det som är öppet eller på gång "
            "just nu. Nästa utskick tar upp det som är nytt eller ändrat sedan i dag."
        ),
        "count_new": "{n} nya",
        "count_updated": "{n} uppdaterade",
        "status": "Status",
        "opening": "Öppnar",
        "deadline": "Sista dag",
        "deadlines": "Sista dagar",
        "programme": "Program",
        "sources": "Källa",
        "tags": "Taggar",
        "why": "Varför",
        "link": "Läs mer",
        "changed": "Ändrat",
        "none": "–",
        "footer": "Du får det här mejlet som medlem i {network}.",
        "unsubscribe": "Avsluta prenumerationen",
        "skipped": "{n} poster kunde inte läsas och visas inte.",
        "subject": "{network}: {counts} – {date}",
        "and": " och ",
    },
    "en": {
        "new": "New since the last digest",
        "new_first": "Open and forthcoming now",
        "updated": "Updated",
        "closing_soon": "Closing soon",
        "closing_soon_note": "Calls you follow that close within {days} days.",
        "intro": "EU monitoring for {network}, {date}.",
        "intro_first": (
            "This is the network's first digest: it shows what is open or forthcoming now. "
            "The next one lists what is new or changed since today."
        ),
        "count_new": "{n} new",
        "count_updated": "{n} updated",
        "status": "Status",
        "opening": "Opens",
        "deadline": "Deadline",
        "deadlines": "Deadlines",
        "programme": "Programme",
        "sources": "Source",
        "tags": "Tags",
        "why": "Why",
        "link": "Read more",
        "changed": "Changed",
        "none": "–",
        "footer": "You receive this email as a member of {network}.",
        "unsubscribe": "Unsubscribe",
        "skipped": "{n} items could not be read and are not shown.",
        "subject": "{network}: {counts} – {date}",
        "and": " and ",
    },
}

STATUS_NAMES = {
    "sv": {"forthcoming": "Kommande", "open": "Öppen", "closed": "Stängd"},
    "en": {"forthcoming": "Forthcoming", "open": "Open", "closed": "Closed"},
}
KIND_NAMES = {
    "sv": {
        "call": "Utlysning",
        "forthcoming_call": "Kommande utlysning",
        "consultation": "Samråd",
        "event": "Evenemang",
        "news": "Nyhet",
        "partner_search": "Partnersökning",
        "page_change": "Ändrad sida",
    },
    "en": {
        "call": "Call",
        "forthcoming_call": "Forthcoming call",
        "consultation": "Consultation",
        "event": "Event",
        "news": "News",
        "partner_search": "Partner search",
        "page_change": "Page changed",
    },
}
FIELD_NAMES = {
    "sv": {
        "title": "Titel",
        "status": "Status",
        "opening": "Öppnar",
        "deadlines": "Sista dag",
        "programme": "Program",
        "budget": "Budget",
        "link": "Länk",
    },
    "en": {
        "title": "Title",
        "status": "Status",
        "opening": "Opens",
        "deadlines": "Deadline",
        "programme": "Programme",
        "budget": "Budget",
        "link": "Link",
    },
}


def lang_of(language: str) -> str:
    return language if language in STRINGS else "sv"


def format_date(dt: datetime | None, language: str = "sv", tz: ZoneInfo = STOCKHOLM) -> str:
    """``16 mars 2027`` (sv) or ``16 March 2027`` (en), in Stockholm time."""
    if dt is None:
        return STRINGS[lang_of(language)]["none"]
    local = dt.astimezone(tz)
    return f"{local.day} {MONTHS[lang_of(language)][local.month - 1]} {local.year}"


def format_datetime(dt: datetime | None, language: str = "sv", tz: ZoneInfo = STOCKHOLM) -> str:
    """A date with its time of day, unless the time only marks a whole day (00:00, 23:59)."""
    if dt is None:
        return STRINGS[lang_of(language)]["none"]
    local = dt.astimezone(tz)
    day = format_date(dt, language, tz)
    t = local.time()
    if t in (time(0, 0), time(23, 59), time(23, 59, 59)):
        return day
    return f"{day} kl. {t:%H:%M}" if lang_of(language) == "sv" else f"{day}, {t:%H:%M}"


def format_change_value(note_field: str, value: Any, language: str) -> str:
    """A recorded old/new value as the reader should see it."""
    lang = lang_of(language)
    none = STRINGS[lang]["none"]
    if value in (None, "", []):
        return none
    if note_field == "deadlines":
        values = value if isinstance(value, list) else [value]
        dates = [from_iso(str(v)) for v in values]
        return ", ".join(format_datetime(d, lang) for d in dates if d) or none
    if note_field == "opening":
        return format_datetime(from_iso(str(value)), lang)
    if note_field == "status":
        return STATUS_NAMES[lang].get(str(value), one_line(value, 40))
    return one_line(value, 160)


@dataclass(frozen=True)
class RenderedDigest:
    """A digest rendered once; ``for_member`` fills in one member's unsubscribe link."""

    subject: str
    html: str
    text: str
    placeholder: str

    @cached_property
    def template(self) -> BodyTemplate:
        """Both parts encoded once for sending; each member's copy fills in their link."""
        return BodyTemplate.of(self.text, self.html, self.placeholder)

    def for_member(self, unsubscribe_url: str) -> tuple[str, str]:
        """(html, text) with this member's unsubscribe link."""
        return (
            self.html.replace(self.placeholder, html.escape(unsubscribe_url, quote=True)),
            self.text.replace(self.placeholder, unsubscribe_url),
        )


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment: HTML templates autoescaped, undefined names are errors."""
    env = Environment(
        loader=PackageLoader("notifications", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2", "xml")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def subject_for(digest: Digest) -> str:
    """``GR:s EU-nätverk: 5 nya och 2 uppdaterade – 2 november 2026`` (one line, always)."""
    s = STRINGS[lang_of(digest.language)]
    parts = []
    if digest.new:
        parts.append(s["count_new"].format(n=len(digest.new)))
    if digest.updated:
        parts.append(s["count_updated"].format(n=len(digest.updated)))
    counts = s["and"].join(parts) or s["count_new"].format(n=0)
    return one_line(
        s["subject"].format(
            network=digest.network_name,
            counts=counts,
            date=format_date(digest.window_end, digest.language),
        ),
        250,
    )


def _context(digest: Digest, placeholder: str, tz: ZoneInfo) -> dict[str, Any]:
    lang = lang_of(digest.language)
    s = STRINGS[lang]

    def tag_name(tag: str) -> str:
        return TAG_NAMES[lang].get(tag, tag)

    def why(entry: Entry) -> str:
        parts = []
        for t in entry.tags:
            ev = ", ".join(f"{f}: «{m}»" for f, m in t.evidence)
            parts.append(f"{tag_name(t.tag)} ({t.rule_id}{': ' + ev if ev else ''})")
        return "; ".join(parts)

    def change(note: FieldNote) -> dict[str, str]:
        return {
            "field": FIELD_NAMES[lang].get(note.field, note.field),
            "old": format_change_value(note.field, note.old, lang),
            "new": format_change_value(note.field, note.new, lang),
        }

    return {
        "d": digest,
        "s": s,
        "lang": lang,
        "intro": s["intro"].format(
            network=digest.network_name, date=format_date(digest.window_end, lang, tz)
        ),
        "footer": s["footer"].format(network=digest.network_name),
        "unsubscribe_url": placeholder,
        "new_groups": digest.groups("new"),
        "updated_groups": digest.groups("updated"),
        "area_name": lambda a: AREA_NAMES[lang].get(a, a),
        "tag_name": tag_name,
        "status_name": lambda v: STATUS_NAMES[lang].get(v or "", v or s["none"]),
        "kind_name": lambda v: KIND_NAMES[lang].get(v or "", v or ""),
        "date": lambda v: format_date(v, lang, tz),
        "datetime": lambda v: format_datetime(v, lang, tz),
        "why": why,
        "change": change,
    }


EntryCache = dict[tuple[str, str, Entry], str]


def _entry_key(e: Entry) -> Entry:
    # The group decides where an entry is listed, not how it looks; list values (old and
    # new deadlines) are made hashable.
    changes = tuple(
        FieldNote(
            c.field,
            tuple(c.old) if isinstance(c.old, list) else c.old,
            tuple(c.new) if isinstance(c.new, list) else c.new,
        )
        for c in e.changes
    )
    return dataclasses.replace(e, group="", changes=changes)


def render_digest(
    digest: Digest, tz: ZoneInfo = STOCKHOLM, cache: EntryCache | None = None
) -> RenderedDigest:
    """Subject, HTML and text of a digest, with a placeholder for the unsubscribe link.
    ``cache`` shares rendered entries between digests (one item, many networks)."""
    placeholder = f"urn:unsubscribe:{secrets.token_hex(12)}"
    env = environment()
    ctx = _context(digest, placeholder, tz)
    entries: EntryCache = {} if cache is None else cache
    lang = ctx["lang"]
    html_t, text_t = env.get_template("_entry.html.j2"), env.get_template("_entry.txt.j2")

    def entry_html(e: Entry) -> Markup:
        key = ("html", lang, _entry_key(e))
        out = entries.get(key)
        if out is None:
            out = entries[key] = html_t.render({**ctx, "e": e})
        return Markup(out)

    def entry_text(e: Entry) -> str:
        key = ("text", lang, _entry_key(e))
        out = entries.get(key)
        if out is None:
            out = entries[key] = text_t.render({**ctx, "e": e})
        return out

    ctx["entry_html"], ctx["entry_text"] = entry_html, entry_text
    return RenderedDigest(
        subject=subject_for(digest),
        html=env.get_template("digest.html.j2").render(ctx),
        text=env.get_template("digest.txt.j2").render(ctx),
        placeholder=placeholder,
    )


def render_digests(digests: Sequence[Digest], tz: ZoneInfo = STOCKHOLM) -> list[RenderedDigest]:
    """Several digests, each item's entry rendered once per language."""
    cache: EntryCache = {}
    return [render_digest(d, tz, cache) for d in digests]


def render_page(template: str, **context: Mapping[str, Any] | Any) -> str:
    """A small web page from ``notifications/templates`` (the unsubscribe pages)."""
    return environment().get_template(template).render(**context)
