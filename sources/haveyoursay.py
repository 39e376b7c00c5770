"""The Commission's "Have your say" consultations, through its searchInitiatives JSON API.

The API is undocumented but stable: ``language`` and ``page`` are required (without them it
answers 500), ids come as floats (``18805.0``), dates as ``YYYY/MM/DD HH:MM:SS`` in Brussels
local time. The website itself is a JavaScript application, so there is nothing to scrape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from sources import _html
from sources.base import Adapter, FetchContext, Options
from sources.registry import register
from watcher.exceptions import ParseError
from watcher.types import CacheState, Fetched, FetchStatus, Page, RawItem

if TYPE_CHECKING:
    from watcher.http import HttpClient

BRUSSELS = ZoneInfo("Europe/Brussels")
PUBLIC_URL = "https://ec.europa.eu/info/law/better-regulation/have-your-say/initiatives/{id}"
_FEEDBACK_STATUS = {"OPEN": "open", "CLOSED": "closed"}


class HaveYourSayOptions(Options):
    """Options of the ``haveyoursay`` adapter."""

    feedback_status: str = Field(
        "OPEN", description="OPEN, CLOSED or ALL (ALL sends no feedbackStatus filter)"
    )
    language: str = Field("EN", min_length=2, max_length=2)
    topics: tuple[str, ...] = Field((), description="topic codes (REGIO, EMPL, …); empty = all")
    text: str | None = None
    page_size: int = Field(100, ge=1, le=200)
    max_pages: int = Field(10, ge=1, le=100)

    @field_validator("feedback_status")
    @classmethod
    def _status(cls, v: str) -> str:
        up = v.strip().upper()
        if up not in ("OPEN", "CLOSED", "ALL"):
            raise ValueError("use OPEN, CLOSED or ALL")
        return up

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        return v.upper()

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.strip().upper() for t in v if t.strip()))


@register
class HaveYourSayAdapter(Adapter):
    """Commission "Have your say" consultations (searchInitiatives JSON API).

    Lists initiatives open for feedback (calls for evidence, public consultations, draft
    acts) from the Better Regulation portal's JSON API, page by page. Each initiative is one
    item of kind consultation, linked to its public page, with the feedback period as
    opening date and deadline (Brussels time), its topics, and status open/closed (checked
    against the dates). Optional filters: topic codes (REGIO, EMPL, …) and free text.
    """

    kind: ClassVar[str] = "haveyoursay"
    Options: ClassVar[type[Options]] = HaveYourSayOptions
    expected_fields: ClassVar[tuple[str, ...]] = ("title", "link", "deadlines")

    options: HaveYourSayOptions

    def params(self, page: int, topic: str | None) -> dict[str, str]:
        """Query parameters of one listing request (language and page are required)."""
        out = {"language": self.options.language, "page": str(page)}
        out["size"] = str(self.options.page_size)
        if self.options.feedback_status != "ALL":
            out["feedbackStatus"] = self.options.feedback_status
        if topic:
            out["topic"] = topic
        if self.options.text:
            out["text"] = self.options.text
        return out

    async def fetch(self, http: HttpClient, ctx: FetchContext) -> Fetched:
        pages: list[Page] = []
        # The API filters on one topic per request; several topics mean several listings.
        for topic in self.options.topics or (None,):
            for number in range(self.options.max_pages):
                resp = await http.get(self.source.url, params=self.params(number, topic))
                page = resp.page
                pages.append(page)
                listing = _listing(page)
                total_pages = _int(listing.get("totalPages"))
                if not listing["content"] or listing.get("last") is True:
                    break
                if total_pages is not None and number + 1 >= total_pages:
                    break
        # Every poll reads the whole listing: feedback periods end without the list changing.
        return Fetched(FetchStatus.OK, tuple(pages), CacheState())

    def parse(self, page: Page) -> list[RawItem]:
        listing = _listing(page)
        rows = listing["content"]
        items = [item for item in (self._item(r) for r in rows if isinstance(r, dict)) if item]
        if rows and not items:
            raise ParseError(
                f"Have your say: none of the {len(rows)} initiatives on {page.url} has an id "
                "and a title (has the API changed?)",
                code="unexpected_structure",
            )
        return items

    def _item(self, row: Mapping[str, Any]) -> RawItem | None:
        ident = _float_id(row.get("id"))
        title = _title(row, self.options.language)
        if ident is None or not title:
            return None
        current = _current_status(row.get("currentStatuses"))
        start = _brussels(current.get("feedbackStartDate"))
        end = _brussels(current.get("feedbackEndDate"))
        feedback = str(current.get("receivingFeedbackStatus") or "").upper()
        topics = [t for t in row.get("topics") or [] if isinstance(t, dict)]
        extra = {
            "reference": row.get("reference"),
            "act_type": row.get("foreseenActType"),
            "initiative_status": row.get("initiativeStatus"),
            "stage": current.get("frontEndStage"),
            "feedback_status": feedback or None,
            "topic_codes": [str(t["code"]) for t in topics if t.get("code")],
        }
        return RawItem(
            key=str(ident),
            title=title,
            link=PUBLIC_URL.format(id=ident),
            summary=str(row.get("dossierSummary") or ""),
            summary_is_html="<" in str(row.get("dossierSummary") or ""),
            language=self.options.language.lower(),
            kind="consultation",
            status=_FEEDBACK_STATUS.get(feedback),
            opening=start,
            deadlines=(end,) if end else (),
            topics=_html.unique(str(t.get("label") or t.get("code") or "") for t in topics),
            extra={k: v for k, v in extra.items() if v not in (None, [], "")},
        )


def _listing(page: Page) -> dict[str, Any]:
    data = _html.load_json(page, "Have your say")
    listing = data.get("initiativeResultDtoPage") if isinstance(data, dict) else None
    if not isinstance(listing, dict) or not isinstance(listing.get("content"), list):
        found = ", ".join(sorted(data)[:10]) if isinstance(data, dict) else type(data).__name__
        raise ParseError(
            f"Have your say: no 'initiativeResultDtoPage.content' list in the response from "
            f"{page.url} (found: {found})",
            code="unexpected_structure",
        )
    return listing


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_id(value: Any) -> int | None:
    """``18805.0`` → 18805 (the API serialises ids as floats)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and number > 0 else None


def _title(row: Mapping[str, Any], language: str) -> str:
    short = str(row.get("shortTitle") or "").strip()
    if short:
        return short
    translations = [
        t
        for t in row.get("initiativeTranslations") or []
        if isinstance(t, dict)
        and str(t.get("field", "")).upper() == "SHORT_TITLE"
        and t.get("value")
    ]
    for wanted in (language, "EN"):
        for t in translations:
            if str(t.get("language", "")).upper() == wanted:
                return str(t["value"]).strip()
    return str(translations[0]["value"]).strip() if translations else ""


def _current_status(statuses: Any) -> Mapping[str, Any]:
    rows = [s for s in statuses or [] if isinstance(s, dict)] if isinstance(statuses, list) else []
    for s in rows:
        if s.get("isCurrent") is True:
            return s
    return rows[-1] if rows else {}


def _brussels(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).strip()
    for fmt in ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=BRUSSELS)
        except ValueError:
            continue
    return None
