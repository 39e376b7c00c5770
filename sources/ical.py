"""The ``ical`` adapter: any iCalendar feed; DTSTART is the opening, DTEND the deadline."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from icalendar import Calendar
from pydantic import Field

from sources._common import FilterOptions, keep, require_body
from sources.base import Adapter
from sources.registry import register
from watcher.exceptions import ParseError
from watcher.types import Page, RawItem

log = logging.getLogger(__name__)


@register
class IcalAdapter(Adapter):
    """Any iCalendar (.ics) feed, such as the interreg.no calendar of Interreg calls.

    Each VEVENT is an item keyed by its UID: DTSTART is the opening, DTEND the deadline
    (``dtend_is_deadline = false`` for plain events). ``programmes`` maps the prefix of
    SUMMARY before a colon ("ÖKS: Utlysning 5" → "ÖKS") to a programme name;
    ``exclude_programmes`` leaves out events whose prefix is listed (programmes outside the
    region), and ``only_mapped = true`` keeps only events whose prefix is mapped.
    """

    kind = "ical"
    expected_fields = ("title", "opening", "deadlines")

    class Options(FilterOptions):
        kind: str = Field("call", description="the kind of every item (call, event …)")
        dtend_is_deadline: bool = Field(True, description="read DTEND as the deadline")
        programmes: dict[str, str] = Field(
            default_factory=dict, description="SUMMARY prefix → programme name"
        )
        exclude_programmes: tuple[str, ...] = Field(
            default=(), description="SUMMARY prefixes (or programme names) to leave out"
        )
        only_mapped: bool = Field(False, description="keep only events whose prefix is mapped")
        language: str | None = Field(None, description="language of the events, e.g. 'no'")

    options: Options

    def parse(self, page: Page) -> list[RawItem]:
        require_body(page)
        try:
            cal = Calendar.from_ical(page.content)
        except (ValueError, IndexError, KeyError) as e:
            raise ParseError(f"not a readable iCalendar file: {e}", code="invalid_ical") from e
        o = self.options
        excluded = {x.casefold() for x in o.exclude_programmes}
        mapping = {k.casefold(): v for k, v in o.programmes.items()}
        out: list[RawItem] = []
        bad = 0
        for ev in cal.walk("VEVENT"):
            try:
                item = self._event(ev, mapping, excluded)
            except (ValueError, TypeError, KeyError) as e:
                # One unreadable event (a broken date) never loses the others.
                log.warning(
                    "%s: skipped an unreadable event %s: %s", self.source.id, ev.get("UID"), e
                )
                bad += 1
                continue
            if item is not None:
                out.append(item)
        if bad and not out:
            raise ParseError(f"none of the {bad} events could be read", code="invalid_ical")
        return out

    def _event(self, ev: Any, mapping: dict[str, str], excluded: set[str]) -> RawItem | None:
        """One VEVENT as an item (None when it is left out). Raises ValueError for an
        event whose dates cannot be read."""
        o = self.options
        summary_text = str(ev.get("SUMMARY", "")).strip()
        uid = str(ev.get("UID", "")).strip()
        if not summary_text:
            return None
        prefix, _, rest = summary_text.partition(":")
        prefix = prefix.strip() if rest else ""
        programme = mapping.get(prefix.casefold()) if prefix else None
        if prefix.casefold() in excluded or (programme and programme.casefold() in excluded):
            return None
        if o.only_mapped and programme is None:
            return None
        description = str(ev.get("DESCRIPTION", "") or "")
        if not keep(f"{summary_text} {description}", o.include, o.exclude):
            return None
        start = _when(ev.get("DTSTART"))
        end = _deadline(start, _when(ev.get("DTEND")), ev.get("DURATION"))
        return RawItem(
            key=uid or f"{summary_text}|{start}",
            title=summary_text,
            link=str(ev.get("URL", "") or ""),
            summary=description,
            kind=o.kind,
            programme=programme or (prefix or None),
            opening=start,
            deadlines=(end,) if (end is not None and o.dtend_is_deadline) else (),
            published=_when(ev.get("CREATED")),
            language=o.language,
        )


def _when(prop: Any) -> datetime | date | None:
    if prop is None:
        return None
    value = getattr(prop, "dt", prop)
    return value if isinstance(value, date | datetime) else None


def _deadline(
    start: datetime | date | None, end: datetime | date | None, duration: Any
) -> datetime | date | None:
    """When an event ends, as a deadline: an instant, or the last day it covers.

    RFC 5545 (3.6.1, 3.8.2.2): the end of an all-day event (``VALUE=DATE``) is exclusive, so
    ``DTSTART:20230928`` with ``DTEND:20230929`` is the 28th alone and its deadline is the end
    of the 28th; ``DURATION`` counts from the start the same way; an all-day event with
    neither is one day long. A timed ``DTEND`` is the instant itself.
    """
    if isinstance(end, datetime):
        return end
    all_day = isinstance(start, date) and not isinstance(start, datetime)
    if end is None and all_day and start is not None:
        span = getattr(duration, "dt", None)
        end = start + span if isinstance(span, timedelta) else start + timedelta(days=1)
    if end is None or not all_day or start is None:
        return end
    # The day before the exclusive end, never before the start (some exporters write a
    # zero-length DTEND on the start day itself).
    return max(end - timedelta(days=1), start)
