"""The ``rss`` adapter: any RSS 0.9x/1.0/2.0 or Atom feed."""

from __future__ import annotations

from pydantic import Field

from sources._common import DateTextOptions, FilterOptions, dates_in_text, keep, stable_key
from sources.base import Adapter
from sources.registry import register
from watcher.text import html_to_text
from watcher.types import Page, RawItem


@register
class RssAdapter(Adapter):
    """Any RSS 0.9x/1.0/2.0 or Atom feed.

    The item key is the guid (``<guid>``/``<id>``), else the link, else a hash of the
    title. Sitevision portlet URLs (``…/12.xxx.portlet?state=rss&sv.contenttype=text/xml;charset=UTF-8``)
    work verbatim. ``include``/``exclude`` keep or drop items by words in the title or
    summary (case-insensitive substrings). ``deadline_regex``/``opening_regex`` find a
    deadline ("Sista ansökningsdag 16 mars 2027", "Deadline: 7 June 2027") and an opening
    date in the title and summary. A feed whose guids change on every fetch makes no
    duplicates: an item with the same link and title is recognised as the same item.
    """

    kind = "rss"
    expected_fields = ("title", "link", "published")

    class Options(FilterOptions, DateTextOptions):
        kind: str = Field("news", description="the kind of every item (news, call, event …)")
        max_items: int = Field(200, ge=1, le=5000, description="read at most this many entries")
        use_guid: bool = Field(True, description="false: key items by link even when a guid exists")

    options: Options

    def parse(self, page: Page) -> list[RawItem]:
        # The parsers (lxml, feedparser) are loaded by the process that parses: a poll's
        # main process only fetches, and its workers parse (5 MiB of the main's memory).
        from sources._feed import parse_feed

        feed = parse_feed(page)
        out: list[RawItem] = []
        for entry in feed.entries[: self.options.max_items]:
            title = (entry.get("title") or "").strip()
            link = (entry.get("link") or "").strip()
            summary = entry.get("summary") or ""
            if not summary and entry.get("content"):
                summary = entry["content"][0].get("value", "")
            if not title and not link:
                continue
            if not keep(f"{title} {summary}", self.options.include, self.options.exclude):
                continue
            deadline, opening = dates_in_text(f"{title} {html_to_text(summary)}", self.options)
            guid = (entry.get("id") or "").strip() if self.options.use_guid else ""
            key = guid or link or stable_key(title, summary[:200])
            out.append(
                RawItem(
                    key=key,
                    title=title or link,
                    link=link,
                    summary=summary,
                    summary_is_html=True,
                    kind=self.options.kind,
                    published=entry.get("published") or entry.get("updated") or None,
                    deadlines=(deadline,) if deadline else (),
                    opening=opening,
                    topics=tuple(t["term"] for t in entry.get("tags") or () if t.get("term")),
                    language=feed.language or None,
                )
            )
        return out
