"""iCalendar (.ics) of deadlines per area, theme or network (icalendar).

One event per deadline. Its UID is derived from the item's uid and the deadline's place
among the item's deadlines (not from the date), so a moved deadline keeps its UID and the
calendar entry moves with it. A deadline at midnight or 23:59 Stockholm time is a whole-day
event on that day; any other is a point in time (DTSTART without DTEND, RFC 5545 §3.6.1).
DTSTAMP is the item's last change, so an unchanged calendar is byte-identical (and its
ETag stable). Text is cleaned first and escaped by the library: a CR/LF in a title cannot
start a new property.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from notifications.feeds import NAMESPACE, Scope, describe, updated_at
from notifications.text import one_line, safe_link
from watcher.dates import STOCKHOLM
from watcher.types import StoredItem

# Deadlines further back than this are left out (the calendar stays small).
KEEP_PAST = timedelta(days=180)


def event_uid(item: StoredItem, index: int, domain: str) -> str:
    return f"{uuid.uuid5(NAMESPACE, item.uid)}-{index}@{domain}"


def build_calendar(
    items: Sequence[StoredItem],
    scope: Scope,
    *,
    now: datetime,
    domain: str,
    tz: ZoneInfo = STOCKHOLM,
) -> bytes:
    """The calendar of ``items``' deadlines from ``now - KEEP_PAST`` on."""
    sv = scope.language != "en"
    cal = Calendar()
    cal.add("prodid", "-//Göteborgsregionen//EU-bevakning//SV")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", one_line(scope.title, 200))
    cal.add("x-wr-timezone", str(tz))
    since = now - KEEP_PAST
    for item in items:
        stamp = updated_at(item)
        title = one_line(item.title, 300) or "–"
        link = safe_link(item.link)
        text = describe(item, scope.language, now)
        for index, deadline in enumerate(sorted(item.deadlines)):
            if deadline < since:
                continue
            ev = Event()
            ev.add("uid", event_uid(item, index, domain))
            ev.add("dtstamp", stamp)
            ev.add("last-modified", stamp)
            ev.add("summary", f"{'Sista dag' if sv else 'Deadline'}: {title}")
            local = deadline.astimezone(tz)
            if local.time() in (time(0, 0), time(23, 59), time(23, 59, 59)):
                ev.add("dtstart", local.date())
                ev.add("dtend", local.date() + timedelta(days=1))
                ev.add("transp", "TRANSPARENT")
            else:
                ev.add("dtstart", deadline)
            ev.add("description", text + (f"\n\n{link}" if link else ""))
            if link:
                ev.add("url", link)
            cats = [one_line(t.tag, 64) for t in item.tags]
            if cats:
                ev.add("categories", cats)
            cal.add_component(ev)
    return bytes(cal.to_ical())
