"""The ``page`` adapter: watch a whole page, or one region of it, for changes."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from bs4 import BeautifulSoup
from pydantic import Field, field_validator

from sources._common import check_regex, decode_text, require_body
from sources.base import Adapter, FetchContext
from sources.base import Options as BaseOptions
from sources.html import check_selector
from sources.registry import register
from watcher.exceptions import ParseError
from watcher.types import Fetched, FetchStatus, Page, RawItem

if TYPE_CHECKING:
    from watcher.http import HttpClient


@register
class PageAdapter(Adapter):
    """Watch a page with no item structure (a call plan, a "next call" page).

    The text of the page, or of the region ``selector`` picks, is compared with the last
    version seen. Each meaningful change becomes one item whose summary says what was added
    and removed. White space never counts as a change; ``ignore`` lists regular expressions
    for text that changes without meaning (a "last updated" line, a visitor counter).
    The first poll records the page as it is, silently.
    """

    kind = "page"
    expected_fields = ("title",)
    needs_previous = True

    class Options(BaseOptions):
        selector: str | None = Field(None, description="CSS selector of the region to watch")
        ignore: tuple[str, ...] = Field(default=(), description="regexes of text to ignore")
        kind: str = Field("news", description="the kind of the change items")
        min_changed_chars: int = Field(1, ge=1, description="smaller changes are ignored")

        @field_validator("selector")
        @classmethod
        def _css(cls, v: str | None) -> str | None:
            return check_selector(v) if v else v

        @field_validator("ignore")
        @classmethod
        def _re(cls, v: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(check_regex(p) for p in v)

    options: Options

    async def fetch(self, http: HttpClient, ctx: FetchContext) -> Fetched:
        fetched = await super().fetch(http, ctx)
        previous = list(ctx.previous.values())[-1] if ctx.previous else None
        if fetched.status == FetchStatus.NOT_MODIFIED or previous is None:
            return fetched
        # The last version as stored: an unchanged page is that version again, title and all.
        context = {"previous": previous.get("summary") or "", "title": previous.get("title")}
        return Fetched(fetched.status, fetched.pages, fetched.cache, context=context)

    def region_lines(self, page: Page) -> tuple[str, list[str]]:
        require_body(page)
        soup = BeautifulSoup(decode_text(page), "lxml")
        for bad in soup(["script", "style", "noscript", "template"]):
            bad.decompose()
        title = " ".join(soup.title.get_text().split()) if soup.title else page.url
        root: Any = (
            soup.select_one(self.options.selector) if self.options.selector else soup.body or soup
        )
        if root is None:
            raise ParseError(
                f"the selector {self.options.selector!r} matches nothing on the page "
                "(layout changed?)",
                code="selector_no_match",
            )
        lines = []
        for raw in root.get_text("\n").split("\n"):
            line = " ".join(raw.split())
            for pattern in self.options.ignore:
                line = re.sub(pattern, "", line).strip()
            if line:
                lines.append(line)
        return title, lines

    def parse(self, page: Page) -> list[RawItem]:
        return self._items(page, None)

    def parse_fetched(self, fetched: Fetched) -> list[RawItem]:
        previous = fetched.context.get("previous")
        previous_title = fetched.context.get("title")
        out: list[RawItem] = []
        for page in fetched.pages:
            out.extend(self._items(page, previous, previous_title))
        return out

    def _items(
        self, page: Page, previous: str | None, previous_title: str | None = None
    ) -> list[RawItem]:
        title, lines = self.region_lines(page)
        text = "\n".join(lines)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]

        def version(summary: str, heading: str = title, **extra: Any) -> list[RawItem]:
            return [
                RawItem(
                    key=f"v:{digest}",
                    title=heading,
                    link=page.url,
                    summary=summary,
                    kind=self.options.kind,
                    extra=extra,
                )
            ]

        if previous is None:
            return version(text)
        old_lines = _content_lines(previous)
        old_set, new_set = set(old_lines), set(lines)
        added = [ln for ln in lines if ln not in old_set]
        removed = [ln for ln in old_lines if ln not in new_set]
        if old_lines == lines or sum(map(len, added + removed)) < self.options.min_changed_chars:
            # No meaningful change: the stored version stands, as it was stored (a version
            # named "Ändrad sida: …" keeps that name: renaming it would be an update).
            # Small changes add up against it until they count.
            return version(previous, previous_title or title)
        diff = summarise_change(added, removed)
        return version(
            diff + "\n\n" + CURRENT_MARK + "\n" + text,
            f"Ändrad sida: {title}",
            added=added[:50],
            removed=removed[:50],
        )


CURRENT_MARK = "— Sidan nu —"


def _content_lines(summary: str) -> list[str]:
    """The page text stored with a version (after the diff header, if any)."""
    if CURRENT_MARK in summary:
        summary = summary.split(CURRENT_MARK, 1)[1]
    return [ln for ln in summary.split("\n") if ln.strip()]


def summarise_change(added: list[str], removed: list[str], limit: int = 12) -> str:
    parts = []
    if added:
        parts.append("Tillagt:\n" + "\n".join(f"+ {ln}" for ln in added[:limit]))
    if removed:
        parts.append("Borttaget:\n" + "\n".join(f"- {ln}" for ln in removed[:limit]))
    more = max(0, len(added) - limit) + max(0, len(removed) - limit)
    if more:
        parts.append(f"(och {more} rader till)")
    return "\n".join(parts) if parts else "Sidan har ändrats."
