"""Dates as the sources write them, to time-zone-aware UTC datetimes.

Handles ISO 8601 (also SEDIA's ``+0000`` offsets), RFC 822 (RSS), ``YYYY/MM/DD HH:MM:SS``
(Have your say), and long dates in Swedish, Norwegian, Danish and English
(``16 mars 2023``, ``15. januar 2018``, ``7 June 2024 (12:00 noon CEST)``, ``kl. 16.00``).
A date without a time zone is read in the zone given (the source's; default
Europe/Stockholm). A date without a time of day is kept at midnight local time unless the
caller asks for the end of the day (deadlines: a call open "until 16 March" is open that day).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")

MONTHS: dict[str, int] = {}
_MONTH_NAMES = {
    # Swedish
    "januari": 1, "februari": 2, "mars": 3, "april": 4, "maj": 5, "juni": 6, "juli": 7,
    "augusti": 8, "september": 9, "oktober": 10, "november": 11, "december": 12,
    # Norwegian / Danish
    "januar": 1, "februar": 2, "marts": 3, "mai": 5, "juni_": 6, "august": 8, "desember": 12,
    # English
    "january": 1, "february": 2, "march": 3, "may": 5, "june": 6, "july": 7, "october": 10,
    # French/German forms seen on EU pages
    "mÄrz": 3, "märz": 3, "dezember": 12, "oktobre": 10,
}  # fmt: skip
for _name, _num in _MONTH_NAMES.items():
    MONTHS[_name.rstrip("_")] = _num
for _short, _num in {
    "jan": 1, "feb": 2, "febr": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8,
    "sep": 9, "sept": 9, "okt": 10, "oct": 10, "nov": 11, "dec": 12, "des": 12,
}.items():  # fmt: skip
    MONTHS.setdefault(_short, _num)

_MONTH_ALT = "|".join(sorted(MONTHS, key=len, reverse=True))
# "16 mars 2023", "15. januar 2018", "7 June 2024", "8 juli", "mars 2023" (no day)
LONG_DATE_RE = re.compile(
    rf"(?<![\w])(?:(?P<day>\d{{1,2}})\.?\s+)?(?P<month>{_MONTH_ALT})\.?,?\s*(?P<year>\d{{4}})?(?![\w])",
    re.IGNORECASE,
)
# "June 7, 2024"
_EN_US_RE = re.compile(
    rf"(?<![\w])(?P<month>{_MONTH_ALT})\.?\s+(?P<day>\d{{1,2}}),?\s+(?P<year>\d{{4}})(?![\w])",
    re.IGNORECASE,
)
_TIME_RE = re.compile(r"(?:kl\.?|klockan|at|,)?\s*(?P<h>[01]?\d|2[0-3])[.:](?P<m>[0-5]\d)(?!\d)")
_NOON_RE = re.compile(r"\b12(?::00)?\s*noon\b|\bmidday\b", re.IGNORECASE)
_ISO_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)"
    r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?)?$"
)
_SLASH_RE = re.compile(
    r"^(?P<y>\d{4})/(?P<mo>\d{1,2})/(?P<d>\d{1,2})(?:\s+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?)?$"
)
_NUMERIC_DMY_RE = re.compile(r"(?<!\d)(?P<d>\d{1,2})[./](?P<m>\d{1,2})[./](?P<y>\d{4})(?!\d)")
_ZONES = {"cet": "Europe/Paris", "cest": "Europe/Paris", "gmt": "UTC", "utc": "UTC"}


def to_utc(value: datetime, tz: ZoneInfo = STOCKHOLM) -> datetime:
    """Aware datetime in UTC; a naive one is read in ``tz``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def from_date(d: date, tz: ZoneInfo = STOCKHOLM, end_of_day: bool = False) -> datetime:
    t = time(23, 59, 59) if end_of_day else time(0, 0)
    return datetime.combine(d, t, tzinfo=tz).astimezone(UTC)


def parse_date(
    value: str | date | datetime | None,
    tz: ZoneInfo = STOCKHOLM,
    *,
    end_of_day: bool = False,
    default_year: int | None = None,
) -> datetime | None:
    """Parse one date as written by a source; ``None`` when no date is found."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_utc(value, tz)
    if isinstance(value, date):
        return from_date(value, tz, end_of_day)
    text = " ".join(str(value).split())
    if not text:
        return None
    m = _ISO_RE.match(text)
    if m:
        return _parse_iso(m, tz, end_of_day)
    m = _SLASH_RE.match(text)
    if m:
        try:
            d = date(int(m["y"]), int(m["mo"]), int(m["d"]))
        except ValueError:
            return None
        if m["h"] is None:
            return from_date(d, tz, end_of_day)
        return to_utc(datetime.combine(d, time(int(m["h"]), int(m["mi"]), int(m["s"] or 0))), tz)
    if re.match(r"^[A-Za-z]{3},?\s+\d", text) or re.search(
        r"\d{2}:\d{2}(:\d{2})?\s+[+-]\d{4}$", text
    ):
        try:
            return to_utc(parsedate_to_datetime(text), tz)
        except (TypeError, ValueError, IndexError):
            pass
    return parse_long_date(text, tz, end_of_day=end_of_day, default_year=default_year)


def _parse_iso(m: re.Match[str], tz: ZoneInfo, end_of_day: bool) -> datetime | None:
    try:
        d = date.fromisoformat(m["date"])
    except ValueError:
        return None
    if not m["time"]:
        return from_date(d, tz, end_of_day)
    t = m["time"].replace(",", ".")
    try:
        t_parsed = time.fromisoformat(t if "." not in t else t[: t.index(".") + 7])
    except ValueError:
        return None
    dt = datetime.combine(d, t_parsed)
    zone = m["tz"]
    if zone:
        if zone == "Z":
            return dt.replace(tzinfo=UTC)
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        from datetime import timezone

        return dt.replace(tzinfo=timezone(sign * offset)).astimezone(UTC)
    return to_utc(dt, tz)


def parse_long_date(
    text: str,
    tz: ZoneInfo = STOCKHOLM,
    *,
    end_of_day: bool = False,
    default_year: int | None = None,
) -> datetime | None:
    """The first long-form date in ``text`` (with a time after it, if any)."""
    m = LONG_DATE_RE.search(text)
    us = _EN_US_RE.search(text)
    if us and (not m or us.start() <= m.start()):
        m = us
    if m is None or (m["day"] is None and m["year"] is None):
        n = _NUMERIC_DMY_RE.search(text)
        if not n:
            return None
        try:
            d = date(int(n["y"]), int(n["m"]), int(n["d"]))
        except ValueError:
            return None
        return _with_time(d, text[n.end() :], tz, end_of_day)
    month = MONTHS[m["month"].lower()]
    year = int(m["year"]) if m["year"] else default_year
    if year is None:
        return None
    day = int(m["day"]) if m["day"] else 1
    try:
        d = date(year, month, day)
    except ValueError:
        return None
    return _with_time(d, text[m.end() :], tz, end_of_day)


def _with_time(d: date, rest: str, tz: ZoneInfo, end_of_day: bool) -> datetime:
    head = rest[:40]
    zone = tz
    zm = re.search(r"\b(CEST|CET|GMT|UTC)\b", head)
    if zm:
        zone = ZoneInfo(_ZONES[zm.group(1).lower()])
    if _NOON_RE.search(head):
        return to_utc(datetime.combine(d, time(12, 0)), zone)
    tm = _TIME_RE.match(head) or (
        _TIME_RE.search(head) if re.match(r"^\W*(kl|klockan|at|\(|,)", head, re.I) else None
    )
    if tm:
        return to_utc(datetime.combine(d, time(int(tm["h"]), int(tm["m"]))), zone)
    return from_date(d, zone, end_of_day)


def find_dates(text: str, tz: ZoneInfo = STOCKHOLM, *, end_of_day: bool = False) -> list[datetime]:
    """Every long-form date in a text, in order of appearance."""
    out = []
    for m in LONG_DATE_RE.finditer(text):
        if m["day"] is None or m["year"] is None:
            continue
        try:
            d = date(int(m["year"]), MONTHS[m["month"].lower()], int(m["day"]))
        except ValueError:
            continue
        out.append(_with_time(d, text[m.end() :], tz, end_of_day))
    return out


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def from_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def utc_day(iso_value: str) -> str:
    """The UTC date of a stored ISO timestamp (stored deadlines are UTC already)."""
    if iso_value.endswith(("+00:00", "Z")):
        return iso_value[:10]
    dt = from_iso(iso_value)
    return dt.astimezone(UTC).date().isoformat() if dt else iso_value[:10]
