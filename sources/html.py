"""The ``html`` adapter: a listing page read with CSS selectors, so the admin can add a
site without code."""

from __future__ import annotations

from typing import Any

from bs4 import BeautifulSoup, Tag
from bs4.exceptions import ParserRejectedMarkup
from pydantic import Field, field_validator

from sources._common import (
    DateTextOptions,
    FilterOptions,
    dates_in_text,
    decode_text,
    keep,
    require_body,
    stable_key,
)
from sources.base import Adapter
from sources.registry import register
from watcher.exceptions import ParseError
from watcher.types import Page, RawItem


def check_selector(selector: str) -> str:
    """Raise ValueError for a CSS selector soupsieve cannot compile."""
    import soupsieve

    try:
        soupsieve.compile(selector)
    except (soupsieve.SelectorSyntaxError, ValueError, TypeError) as e:
        raise ValueError(f"invalid CSS selector {selector!r}: {str(e).splitlines()[0]}") from e
    return selector


@register
class HtmlAdapter(Adapter):
    """A listing page read with CSS selectors.

    ``item`` selects each entry; inside it ``title``, ``link``, ``date``, ``summary`` and
    ``deadline`` select the parts (the link defaults to the title's own ``<a>``, or the
    first link in the entry). Dates are read in Swedish, Norwegian, Danish or English
    (``16 mars 2023``, ``15. januar 2018``, ``7 June 2024``); ``deadline_regex`` and
    ``opening_regex`` find dates in the entry's text when there is no element for them
    (the first group is the date). An item selector that suddenly matches nothing is
    reported on the source's health as a possible layout change.
    """

    kind = "html"

    class Options(FilterOptions, DateTextOptions):
        item: str = Field(description="CSS selector of each entry in the listing")
        title: str = Field("h1, h2, h3, h4, a", description="selector of the title inside an entry")
        link: str | None = Field(
            None, description="selector of the link (default: the title's link)"
        )
        date: str | None = Field(None, description="selector of the published date")
        summary: str | None = Field(None, description="selector of the summary text")
        deadline: str | None = Field(None, description="selector of the deadline")
        kind: str = Field("news", description="the kind of every item")
        status: str | None = Field(None, description="selector of a status text (öppen/stängd …)")
        max_items: int = Field(200, ge=1, le=5000)

        @field_validator("item", "title", "link", "date", "summary", "deadline", "status")
        @classmethod
        def _css(cls, v: str | None) -> str | None:
            return check_selector(v) if v else v

    options: Options

    def parse(self, page: Page) -> list[RawItem]:
        require_body(page)
        try:
            soup = BeautifulSoup(decode_text(page), "lxml")
        except ParserRejectedMarkup as e:
            raise ParseError(f"unreadable HTML: {e}", code="invalid_html") from e
        o = self.options
        out: list[RawItem] = []
        for entry in soup.select(o.item)[: o.max_items]:
            item = self._entry(entry)
            if item is not None and keep(f"{item.title} {item.summary}", o.include, o.exclude):
                out.append(item)
        return out

    def _entry(self, entry: Tag) -> RawItem | None:
        o = self.options
        title_el = entry.select_one(o.title)
        title = _text(title_el) if title_el else ""
        link = ""
        link_el: Any = entry.select_one(o.link) if o.link else None
        if link_el is None and title_el is not None:
            link_el = title_el if title_el.name == "a" else title_el.find("a", href=True)
        if link_el is None:
            link_el = entry if entry.name == "a" else entry.find("a", href=True)
        if link_el is not None:
            link = str(link_el.get("href") or "").strip()
        if not title:
            return None
        text = _text(entry)
        summary = (
            _text(entry.select_one(o.summary)) if o.summary and entry.select_one(o.summary) else ""
        )
        published = _text(entry.select_one(o.date)) if o.date and entry.select_one(o.date) else None
        deadlines: list[str] = []
        found_deadline, opening = dates_in_text(text, o)
        if o.deadline and (el := entry.select_one(o.deadline)) is not None:
            deadlines.append(_text(el))
        elif found_deadline:
            deadlines.append(found_deadline)
        status = (
            _text(entry.select_one(o.status)) if o.status and entry.select_one(o.status) else None
        )
        return RawItem(
            key=link or stable_key(title),
            title=title,
            link=link,
            summary=summary,
            kind=o.kind,
            published=published,
            opening=opening,
            deadlines=tuple(deadlines),
            status=status,
        )


def _text(el: Tag | None) -> str:
    return " ".join(el.get_text(" ").split()) if el is not None else ""
