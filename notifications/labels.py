"""The names, dates and numbers people read in digests, feeds, calendars and emails, in
Swedish and English: areas, themes, kinds, statuses, fields, the digest's own strings, dates
in local time and counts.

Dates and numbers come from Babel's locale data (``sv_SE``, ``en_GB``), never from tables of
our own: month names, the date pattern (``16 mars 2027``, ``16 March 2027``), the time of
day, and a number's grouping and decimal sign (``1 234`` with a no-break space and ``2,5`` in
Swedish, ``1,234`` and ``2.5`` in English). The web's pages format numbers with the same
helper (``format_number``), so a count reads the same in an email and on a page.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo
from functools import lru_cache
from typing import Any

from babel import dates, numbers

from notifications.text import one_line
from watcher.dates import STOCKHOLM, from_iso

# Babel's locale of each language we write in.
LOCALES = {"sv": "sv_SE", "en": "en_GB"}

# How a date and a time of day are joined: Babel's (CLDR's) pattern, except in Swedish, where
# CLDR writes "16 mars 2027 17:00" and we keep the "kl." Swedish writing guides ask for (and
# the web's history lines have always shown): "16 mars 2027 kl. 17:00".
DATETIME_JOIN = {"sv": "{1} 'kl'. {0}"}

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


def locale_of(language: str) -> str:
    """Babel's locale of a language (``sv_SE`` for anything but English)."""
    return LOCALES[lang_of(language)]


# Babel reads its pattern and locale data on every call, some 30 to 60 µs; a page of 50
# items formats a few hundred days, times and counts, mostly the same ones. The answers
# depend only on the arguments, so the most recent are kept.
@lru_cache(maxsize=4096)
def format_day(day: date, language: str = "sv") -> str:
    """A calendar day: ``16 mars 2027`` (sv) or ``16 March 2027`` (en), Babel's long date."""
    return dates.format_date(day, "long", locale=locale_of(language))


def format_date(dt: datetime | None, language: str = "sv", tz: tzinfo = STOCKHOLM) -> str:
    """The day of an instant, in Stockholm time: ``16 mars 2027`` (``format_day``)."""
    if dt is None:
        return STRINGS[lang_of(language)]["none"]
    return format_day(dt.astimezone(tz).date(), language)


def format_time(dt: datetime, language: str = "sv", tz: tzinfo = STOCKHOLM) -> str:
    """The time of day in Stockholm time, Babel's short time (``17:00``)."""
    if dt.tzinfo is None:  # as Babel reads a naive instant: UTC
        dt = dt.replace(tzinfo=UTC)
    local = dt.astimezone(tz)
    return _short_time(local.hour, local.minute, lang_of(language))


@lru_cache(maxsize=2048)
def _short_time(hour: int, minute: int, lang: str) -> str:
    # The short time is hours and minutes (``HH:mm`` in both locales).
    return dates.format_time(time(hour, minute), "short", locale=LOCALES[lang])


@lru_cache(maxsize=8)
def _datetime_join(lang: str) -> str:
    """How a date and a time of day are joined (``DATETIME_JOIN``, else Babel's long
    pattern), without CLDR's quotes around literal text ('kl'., 'at'), which Babel drops
    the same way."""
    join = DATETIME_JOIN.get(lang) or str(dates.get_datetime_format("long", locale=LOCALES[lang]))
    return join.replace("'", "")


def format_datetime(
    dt: datetime | None,
    language: str = "sv",
    tz: tzinfo = STOCKHOLM,
    *,
    whole_days: bool = True,
) -> str:
    """A date with its time of day, unless the time only marks a whole day (00:00, 23:59:
    a deadline's, with ``whole_days``): ``16 mars 2027 kl. 17:00``, ``16 March 2027,
    17:00``. A recorded instant (``whole_days=False``) keeps its time at midnight too."""
    if dt is None:
        return STRINGS[lang_of(language)]["none"]
    day = format_date(dt, language, tz)
    whole = (time(0, 0), time(23, 59), time(23, 59, 59))
    if whole_days and dt.astimezone(tz).time() in whole:
        return day
    lang = lang_of(language)
    return _datetime_join(lang).replace("{0}", format_time(dt, lang, tz)).replace("{1}", day)


def format_number(value: float, language: str = "sv") -> str:
    """A count or a quantity as the reader's language writes it: ``1 234`` (a no-break
    space) and ``2,5`` in Swedish, ``1,234`` and ``2.5`` in English. Counts (ints) are
    kept; a float is not (``-0.0`` equals ``0.0`` but is written ``-0``)."""
    if type(value) is int:
        return _count(value, lang_of(language))
    return numbers.format_decimal(value, locale=locale_of(language))


@lru_cache(maxsize=4096)
def _count(value: int, lang: str) -> str:
    return numbers.format_decimal(value, locale=LOCALES[lang])


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
