"""The ``rss`` adapter: any RSS 0.9x/1.0/2.0 or Atom feed."""

from __future__ import annotations

from typing import Any

import feedparser
from pydantic import Field

from sources._common import (
    FilterOptions,
    decode_text,
    keep,
    refuse_hostile_xml,
    require_body,
    stable_key,
    utf8_xml,
)
from sources.base import Adapter
from sources.registry import register
from watcher.exceptions import ParseError
from watcher.types import Page, RawItem


@register
class RssAdapter(Adapter):
    """Any RSS 0.9x/1.0/2.0 or Atom feed (feedparser).

    The item key is the guid (``<guid>``/``<id>``), else the link, else a hash of the
    title. Sitevision portlet URLs (``…/12.xxx.portlet?state=rss&sv.contenttype=text/xml;charset=UTF-8``)
    work verbatim. ``include``/``exclude`` keep or drop items by words in the title or
    summary (case-insensitive substrings). A feed whose guids change on every fetch makes no
    duplicates: an item with the same link and title is recognised as the same item.
    """

    kind = "rss"
    expected_fields = ("title", "link", "published")

    class Options(FilterOptions):
        kind: str = Field("news", description="the kind of every item (news, call, event …)")
        max_items: int = Field(200, ge=1, le=5000, description="read at most this many entries")
        use_guid: bool = Field(True, description="false: key items by link even when a guid exists")

    options: Options

    def parse(self, page: Page) -> list[RawItem]:
        require_body(page)
        refuse_hostile_xml(page)
        text = decode_text(page)
        parsed: Any = feedparser.parse(
            utf8_xml(text),
            sanitize_html=True,
            resolve_relative_uris=True,
            response_headers={
                "content-location": page.url,
                "content-type": "application/xml; charset=utf-8",
            },
        )
        if not parsed.get("version") and not parsed.entries:
            reason = parsed.get("bozo_exception")
            raise ParseError(
                f"not an RSS or Atom feed ({reason or 'no feed elements found'})",
                code="invalid_feed",
            )
        out: list[RawItem] = []
        for entry in parsed.entries[: self.options.max_items]:
            title = (entry.get("title") or "").strip()
            link = (entry.get("link") or "").strip()
            summary = entry.get("summary") or entry.get("description") or ""
            if not summary and entry.get("content"):
                summary = entry["content"][0].get("value", "")
            if not title and not link:
                continue
            if not keep(f"{title} {summary}", self.options.include, self.options.exclude):
                continue
            guid = (entry.get("id") or "").strip() if self.options.use_guid else ""
            key = guid or link or stable_key(title, summary[:200])
            published = entry.get("published") or entry.get("updated") or None
            out.append(
                RawItem(
                    key=key,
                    title=title or link,
                    link=link,
                    summary=summary,
                    summary_is_html=True,
                    kind=self.options.kind,
                    published=published,
                    topics=tuple(t.get("term", "") for t in entry.get("tags", []) if t.get("term")),
                    language=(parsed.feed.get("language") or None),
                )
            )
        return out
