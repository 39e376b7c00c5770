"""The names and dates people read in digests, feeds and calendars, in Swedish and English:
areas, themes, kinds, statuses, fields, the digest's own strings, and dates in local time."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

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
