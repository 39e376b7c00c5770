"""Tillväxtverket's regional fund (ERUF) calls: the Sitevision RSS plus one detail page per call.

The RSS has title, link, pubDate and guid only: no deadline, no region. Each call's page
starts with a bullet list whose first bullet is the status line ("Stängd 16 mars 2023",
"Öppnar 12 augusti 2024", "Öppen 16 mars 2023") and whose other bullets are regions. Dates
are edited after publication, so calls that are new or still open are re-read on every poll;
calls already stored as closed are not.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import feedparser
from bs4 import Tag
from pydantic import Field, field_validator

from sources import _html
from sources._common import decode_text, refuse_hostile_xml, require_body, utf8_xml
from sources.base import Adapter, FetchContext, Options
from sources.registry import register
from watcher.exceptions import FetchError, ParseError
from watcher.types import CacheState, Fetched, FetchStatus, Incomplete, Page, RawItem, Status

if TYPE_CHECKING:
    from watcher.http import HttpClient

# A detail "page" that was not read carries why in this header (the Fetched value stays pure
# data: parse_fetched needs no state from fetch).
DETAIL_STATE = "x-watcher-detail"
DETAIL_ERROR = "x-watcher-detail-error"
SKIPPED_CLOSED = "skipped-closed"
DEFERRED = "deferred"
FAILED = "failed"

NATIONAL = "Nationell"
_NATIONAL_WORDS = {
    "nationell", "nationellt", "national", "hela sverige", "hela landet", "alla regioner",
    "samtliga regioner",
}  # fmt: skip
REGIONS: tuple[str, ...] = (
    "Blekinge", "Dalarna", "Gotland", "Gävleborg", "Halland", "Jämtland", "Jönköping",
    "Kalmar", "Kronoberg", "Norrbotten", "Skåne", "Stockholm", "Sörmland", "Uppsala",
    "Värmland", "Västerbotten", "Västernorrland", "Västmanland", "Västra Götaland", "Örebro",
    "Östergötland",
)  # fmt: skip
# ERUF programme areas that stand for several regions.
_AREAS: dict[str, tuple[str, ...]] = {
    "västsverige": ("Västra Götaland", "Halland"),
    "skåne-blekinge": ("Skåne", "Blekinge"),
    "sydsverige": ("Skåne", "Blekinge"),
    "småland och öarna": ("Jönköping", "Kronoberg", "Kalmar", "Gotland"),
    "östra mellansverige": ("Uppsala", "Sörmland", "Östergötland", "Örebro", "Västmanland"),
    "norra mellansverige": ("Värmland", "Dalarna", "Gävleborg"),
    "mellersta norrland": ("Jämtland", "Västernorrland"),
    "övre norrland": ("Norrbotten", "Västerbotten"),
}
_ALIASES = {
    "jämtland härjedalen": "Jämtland",
    "södermanland": "Sörmland",
    "vgr": "Västra Götaland",
    "västra götalandsregionen": "Västra Götaland",
}
_BY_LOWER = {r.lower(): r for r in REGIONS}

_STATUS_RE = re.compile(
    r"^\W*(?P<word>Öppnar|Öppen från|Öppen till|Öppen|Stänger|Stängd|Stängde)"
    rf"\s*:?\s*(?:den\s+)?(?P<date>{_html.LONG_DATE})",
    re.IGNORECASE,
)
# What a call page gives that the feed does not.
DETAIL_FIELDS = ("status", "opening", "deadlines", "budget", "regions")
_KEY_RE = re.compile(r"\.(\d+)\.html?(?:[?#].*)?$")
_OBJECTIVE_RE = re.compile(r"^(\d\.\d{1,2})\s+(\S.{2,150})$")
_HEADINGS = {
    "vem kan söka?": "applicants",
    "vad kan ni söka för?": "purpose",
    "hur mycket kan ni få i stöd?": "budget",
    "vad handlar erbjudandet om?": "about",
}


def canonical_region(text: str) -> str | None:
    """ "Region Halland", "Västra Götalandsregionen", "Hallands län" → a region name;
    national wording → "Nationell"; ``None`` when the text is not a region."""
    t = _html.one_line(text).strip(" •·-–—:")
    low = t.lower()
    if low in _NATIONAL_WORDS:
        return NATIONAL
    if low in _AREAS:
        return t[:1].upper() + t[1:]
    if low in _ALIASES:
        return _ALIASES[low]
    low = re.sub(r"^region\s+", "", low)
    low = re.sub(r"\s+län$", "", low)
    low = re.sub(r"s?regionen$", "", low)
    for candidate in (low, low[:-1] if low.endswith("s") else low):
        if candidate in _BY_LOWER:
            return _BY_LOWER[candidate]
        if candidate in _ALIASES:
            return _ALIASES[candidate]
    return None


def expand_region(region: str) -> tuple[str, ...]:
    """A programme area ("Västsverige") stands for its regions when filtering."""
    return _AREAS.get(region.lower(), (region,))


class TillvaxtverketOptions(Options):
    """Options of the ``tillvaxtverket`` adapter."""

    regions: tuple[str, ...] = Field(
        ("Västra Götaland", "Halland", "national"),
        validate_default=True,
        description="keep calls for these regions (or 'national'); empty = all regions",
    )
    programme: str = "Regionalfonden (ERUF)"
    max_details: int = Field(60, ge=0, le=500, description="detail pages fetched per poll")
    concurrency: int = Field(2, ge=1, le=8)

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for r in v:
            canon = canonical_region(r)
            if canon is None:
                raise ValueError(
                    f"unknown region {r!r}; use a region name such as 'Västra Götaland', "
                    "'Halland', a programme area such as 'Västsverige', or 'national'"
                )
            out.extend(expand_region(canon))
        return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Entry:
    """One call as the RSS lists it."""

    key: str
    title: str
    link: str
    published: str | None
    summary: str


@dataclass(frozen=True)
class Detail:
    """What a call's own page adds to the RSS."""

    title: str | None
    status_line: str | None
    status: str | None
    opening: str | None
    deadline: str | None
    regions: tuple[str, ...]
    summary: str
    budget: str | None
    budget_amount: float | None
    currency: str | None
    topics: tuple[str, ...] = ()
    applicants: str | None = None
    updates: tuple[str, ...] = field(default=())


@register
class TillvaxtverketAdapter(Adapter):
    """Tillväxtverket: regional fund (ERUF) calls (RSS plus one detail page per call).

    Reads the calls RSS (give the Sitevision portlet URL verbatim, ``;charset=UTF-8``
    included), then the page of every call that is new or not yet closed, for its status
    line ("Öppnar/Öppen/Stängd 16 mars 2023"), regions, budget text and specific objectives.
    The key is the trailing number of the call's page address (…/utlysningar/x.11681.html →
    11681), since a repeated call gets a new page with the same title. Calls for other
    regions are dropped (default: Västra Götaland, Halland and national calls). A call
    whose page cannot be fetched is kept with the RSS data and a note.
    """

    kind: ClassVar[str] = "tillvaxtverket"
    needs_known: ClassVar[bool] = True
    Options: ClassVar[type[Options]] = TillvaxtverketOptions
    expected_fields: ClassVar[tuple[str, ...]] = ("title", "link", "status")

    options: TillvaxtverketOptions

    def entries(self, page: Page) -> list[Entry]:
        """The calls of the RSS body, in feed order. Pure."""
        require_body(page)
        refuse_hostile_xml(page)
        parsed: Any = feedparser.parse(
            utf8_xml(decode_text(page)),
            response_headers={"content-location": page.url, "content-type": "application/xml"},
        )
        if not parsed.get("version") and not parsed.entries:
            reason = parsed.get("bozo_exception") or "no RSS/Atom channel"
            raise ParseError(
                f"Tillväxtverket: {page.url} is not an RSS feed ({reason})", code="invalid_feed"
            )
        out: list[Entry] = []
        seen: set[str] = set()
        for e in parsed.entries:
            link = str(e.get("link") or "").strip()
            guid = str(e.get("id") or "").strip()
            key = _key(link) or _key(guid) or guid or link
            title = _html.one_line(str(e.get("title") or ""))
            if not key or not title or key in seen:
                continue
            seen.add(key)
            out.append(
                Entry(
                    key=key,
                    title=title,
                    link=link or guid,
                    published=str(e.get("published") or e.get("updated") or "") or None,
                    summary=str(e.get("summary") or ""),
                )
            )
        if parsed.entries and not out:
            raise ParseError(
                f"Tillväxtverket: none of the {len(parsed.entries)} RSS items on {page.url} "
                "has a title and a link",
                code="unexpected_structure",
            )
        return out

    def needs_detail(self, key: str, known: Mapping[str, Status | None]) -> bool:
        """New calls and calls not stored as closed are (re-)read; closed ones are final."""
        return key not in known or known[key] != Status.CLOSED

    async def fetch(self, http: HttpClient, ctx: FetchContext) -> Fetched:
        # No conditional GET: open calls are re-checked on every poll even when the feed
        # is unchanged, because their dates are edited on the detail pages.
        resp = await http.get(self.source.url)
        rss = resp.page
        entries = self.entries(rss)
        details: dict[str, Page] = {}
        wanted: list[Entry] = []
        for entry in entries:
            if not self.needs_detail(entry.key, ctx.known):
                details[entry.key] = _marker(entry.link, SKIPPED_CLOSED, 304)
            elif len(wanted) < self.options.max_details:
                wanted.append(entry)
            else:
                details[entry.key] = _marker(entry.link, DEFERRED, 0)
        limit = asyncio.Semaphore(self.options.concurrency)

        async def one(entry: Entry) -> tuple[str, Page]:
            async with limit:
                try:
                    return entry.key, (await http.get(entry.link)).page
                except FetchError as e:
                    return entry.key, _marker(entry.link, FAILED, 0, f"{e.code}: {e}")

        for key, page in await asyncio.gather(*(one(e) for e in wanted)):
            details[key] = page
        skipped = sum(1 for p in details.values() if _state(p) == SKIPPED_CLOSED)
        return Fetched(FetchStatus.OK, (rss,), CacheState(), details, context={"skipped": skipped})

    def parse(self, page: Page) -> list[RawItem]:
        """The RSS alone (no detail pages): items without status or regions."""
        return [self._item(e, None, None) for e in self.entries(page)]

    def parse_fetched(self, fetched: Fetched) -> list[RawItem]:
        items: list[RawItem] = []
        unreadable: list[str] = []
        read = 0
        for page in fetched.pages:
            for entry in self.entries(page):
                detail_page = fetched.details.get(entry.key)
                state = _state(detail_page)
                if state == SKIPPED_CLOSED:
                    # Stored as closed and not re-read: the stored record stays as it is.
                    continue
                detail: Detail | None = None
                note: str | None = None
                error: str | None = None
                if detail_page is None:
                    note = "detail page not fetched"
                elif state == DEFERRED:
                    note = "detail page deferred to a later poll (max_details reached)"
                elif state == FAILED:
                    failure = detail_page.headers.get(DETAIL_ERROR, "")
                    note = "detail page failed: " + failure
                    error = failure.split(":", 1)[0] or "fetch_failed"
                else:
                    detail = parse_detail(detail_page)
                    if detail is None:
                        unreadable.append(detail_page.url)
                        note = "detail page has no status line (layout changed?)"
                    else:
                        read += 1
                item = self._item(entry, detail, note)
                if detail is None and note is not None and "layout" not in note:
                    # What only the detail page gives is unknown, not empty: the item is
                    # stored as incomplete and its page read again on the next poll.
                    item = replace(item, incomplete=Incomplete(note, DETAIL_FIELDS, error))
                if self._wanted(item):
                    items.append(item)
        if unreadable and read == 0:
            # Every page that came back lacks the status line: that is a layout change, and
            # items without regions would bypass the region filter, so say so loudly.
            raise ParseError(
                f"Tillväxtverket: no status line ('Öppnar/Öppen/Stängd <datum>') on any of "
                f"{len(unreadable)} call pages, e.g. {unreadable[0]}",
                code="unexpected_structure",
            )
        return items

    def _wanted(self, item: RawItem) -> bool:
        if not self.options.regions or not item.regions:
            return True  # unknown regions are kept: better one call too many than one missed
        wanted = {r.lower() for r in self.options.regions}
        have = {r.lower() for region in item.regions for r in expand_region(region)}
        return bool(wanted & have)

    def _item(self, entry: Entry, detail: Detail | None, note: str | None) -> RawItem:
        extra: dict[str, Any] = {}
        if note:
            extra["detail_note"] = note
        if detail is None:
            return RawItem(
                key=entry.key,
                title=entry.title,
                link=entry.link,
                summary=entry.summary,
                summary_is_html="<" in entry.summary,
                language="sv",
                kind="call",
                programme=self.options.programme,
                published=entry.published,
                extra=extra,
            )
        for name in ("status_line", "applicants"):
            if getattr(detail, name):
                extra[name] = getattr(detail, name)
        if detail.updates:
            extra["updates"] = list(detail.updates)
        return RawItem(
            key=entry.key,
            title=entry.title or detail.title or "",
            link=entry.link,
            summary=detail.summary or entry.summary,
            summary_is_html=not detail.summary and "<" in entry.summary,
            language="sv",
            kind="call",
            programme=self.options.programme,
            status=detail.status,
            published=entry.published,
            opening=detail.opening,
            deadlines=(detail.deadline,) if detail.deadline else (),
            budget=detail.budget,
            budget_amount=detail.budget_amount,
            currency=detail.currency,
            regions=detail.regions,
            topics=detail.topics,
            extra=extra,
        )


def _key(url: str) -> str | None:
    m = _KEY_RE.search(url)
    return m.group(1) if m else None


def _marker(url: str, state: str, status: int, error: str = "") -> Page:
    headers = {DETAIL_STATE: state}
    if error:
        headers[DETAIL_ERROR] = error
    return Page(url=url, content=b"", status_code=status, headers=headers)


def _state(page: Page | None) -> str | None:
    return page.headers.get(DETAIL_STATE) if page is not None else None


def _status(word: str) -> tuple[str, str]:
    """Status word of the line → (status, which date it gives: opening/deadline)."""
    w = word.lower()
    if w == "öppnar":
        return "forthcoming", "opening"
    if w == "öppen från":
        return "open", "opening"
    if w in ("stängd", "stängde"):
        return "closed", "deadline"
    return "open", "deadline"  # Öppen, Öppen till, Stänger


def parse_detail(page: Page) -> Detail | None:
    """A call page's status line, regions, budget and objectives; ``None`` when the page
    has no status line (not a call page, or the layout changed). Pure."""
    if not page.content.strip():
        return None
    doc = _html.soup(page)
    main = doc.find("main") or doc.select_one('[role="main"]') or doc.body or doc
    h1 = main.find("h1") or doc.find("h1")
    title = _html.node_text(h1) if isinstance(h1, Tag) else None

    status_line: str | None = None
    regions: list[str] = []
    for li in main.find_all("li"):
        text = _html.node_text(li)
        if _STATUS_RE.match(text):
            status_line = text
            parent = li.parent
            siblings = parent.find_all("li", recursive=False) if isinstance(parent, Tag) else []
            regions = [r for r in (canonical_region(_html.node_text(s)) for s in siblings) if r]
            break
    lines = _html.text_lines(main)
    if status_line is None:
        # Not in a list: the status line is a line of its own, regions the lines after it.
        for i, line in enumerate(lines):
            if _STATUS_RE.match(line):
                status_line = line
                for following in lines[i + 1 : i + 25]:
                    region = canonical_region(following)
                    if region is None:
                        break
                    regions.append(region)
                break
    if status_line is None:
        return None
    m = _STATUS_RE.match(status_line)
    assert m is not None
    status, which = _status(m["word"])
    date = m["date"]

    sections = _sections(lines)
    budget_text = " ".join(sections.get("budget", [])) or None
    found = _html.find_budget(budget_text or "")
    summary = _intro(lines, status_line)
    topics = _html.unique(
        f"{m2[1]} {m2[2].strip()}" for line in lines if (m2 := _OBJECTIVE_RE.match(line))
    )
    updates = tuple(line for line in lines if line.lower().startswith("utlysning uppdaterad"))
    return Detail(
        title=title,
        status_line=status_line,
        status=status,
        opening=date if which == "opening" else None,
        deadline=date if which == "deadline" else None,
        regions=_html.unique(regions),
        summary=summary,
        budget=_clip(budget_text, 400) if budget_text else None,
        budget_amount=found[0] if found else None,
        currency=found[1] if found else None,
        topics=topics,
        applicants=_clip(" ".join(sections.get("applicants", [])), 400) or None,
        updates=updates,
    )


def _sections(lines: Sequence[str]) -> dict[str, list[str]]:
    """Text under each of the fixed sub-headings, up to the next one."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines:
        name = _HEADINGS.get(line.lower())
        if name:
            current = name
            out.setdefault(name, [])
            continue
        if current is not None and len(out[current]) < 12:
            out[current].append(line)
    return out


def _intro(lines: Sequence[str], status_line: str) -> str:
    """The paragraphs between the status/region list and the first sub-heading."""
    try:
        start = lines.index(status_line) + 1
    except ValueError:
        return ""
    out: list[str] = []
    for line in lines[start:]:
        if line.lower() in _HEADINGS:
            break
        if canonical_region(line) is None and len(line) > 40:
            out.append(line)
    return "\n\n".join(out[:4])


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
