"""RSS 2.0 and Atom feeds per area, theme, network and of everything (feedgen).

A feed lists the newest-changed relevant items of its scope (items held for the admin
never appear). Every entry has a stable id (``urn:uuid:`` derived from the item's uid, the
same in RSS and Atom and across restarts); an update (a moved deadline, a new status)
shows in the entry's ``updated`` time and text, and moves the entry to the top. All text
is cleaned first: characters XML cannot carry are dropped, so one bad title never breaks
a feed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from feedgen.feed import FeedGenerator

from notifications.digest import followed
from notifications.labels import (
    AREA_NAMES,
    KIND_NAMES,
    STATUS_NAMES,
    TAG_NAMES,
    format_datetime,
    lang_of,
)
from notifications.text import multi_line, one_line, safe_link
from watcher.calls import next_deadline
from watcher.calls import status as status_at
from watcher.config import AREAS, THEMES, Config
from watcher.types import StoredItem

FEED_LIMIT = 100
NAMESPACE = uuid.UUID("6f1b7c1e-2f3a-4c55-9d4e-7a0f3e5b9c21")  # this product's uuid5 namespace


@dataclass(frozen=True)
class Scope:
    """What a feed or a calendar covers (``areas``/``themes`` None: any)."""

    kind: str  # area | theme | network | all
    ident: str
    title: str
    language: str = "sv"
    areas: tuple[str, ...] | None = None
    themes: tuple[str, ...] | None = None
    sources: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """``area/fonder-program``, ``all`` …: the part of the URL after /feeds/."""
        return "all" if self.kind == "all" else f"{self.kind}/{self.ident}"


def scope_for(config: Config, kind: str, ident: str | None) -> Scope | None:
    """The scope of ``/feeds/{kind}/{ident}``; None when there is no such area, theme or
    network."""
    if kind == "all":
        return Scope("all", "all", "EU-bevakning: allt")
    if kind == "area" and ident in AREAS:
        return Scope("area", ident, f"EU-bevakning: {AREA_NAMES['sv'][ident]}", areas=(ident,))
    if kind == "theme" and ident in THEMES:
        return Scope("theme", ident, f"EU-bevakning: {TAG_NAMES['sv'][ident]}", themes=(ident,))
    if kind == "network" and ident:
        for n in config.networks:
            if n.id == ident:
                return Scope(
                    "network",
                    n.id,
                    one_line(f"EU-bevakning: {n.name}", 200),
                    language=n.language,
                    areas=None if n.areas == ("all",) else followed(n.areas, AREAS),
                    themes=None if n.themes == ("all",) else followed(n.themes, THEMES),
                    sources=tuple(n.sources),
                    kinds=tuple(n.kinds),
                )
    return None


def entry_id(item: StoredItem) -> str:
    """The stable id of an item's entry (its uid is source + the source's own key)."""
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, item.uid)}"


def updated_at(item: StoredItem) -> datetime:
    return max(item.first_seen, item.changed_at or item.first_seen)


def describe(item: StoredItem, language: str, now: datetime) -> str:
    """The plain-text body of an entry: kind, status, dates, programme, tags, summary."""
    lang = lang_of(language)
    sv = lang == "sv"
    parts = [KIND_NAMES[lang].get(item.kind, item.kind)]
    status = status_at(item, now)
    if status:
        parts.append(f"Status: {STATUS_NAMES[lang].get(status, status)}")
    if item.opening:
        parts.append(f"{'Öppnar' if sv else 'Opens'}: {format_datetime(item.opening, lang)}")
    dl = next_deadline(item, now)
    if dl:
        parts.append(f"{'Sista dag' if sv else 'Deadline'}: {format_datetime(dl, lang)}")
    if item.programme:
        parts.append(f"{'Program' if sv else 'Programme'}: {one_line(item.programme, 200)}")
    tags = [TAG_NAMES[lang].get(t.tag, t.tag) for t in item.tags]
    if tags:
        parts.append(f"{'Taggar' if sv else 'Tags'}: {', '.join(tags)}")
    head = " · ".join(parts)
    if item.changed_at:
        head += f"\n{'Uppdaterad' if sv else 'Updated'}: {format_datetime(item.changed_at, lang)}"
    body = multi_line(item.summary, 2000)
    return f"{head}\n\n{body}" if body else head


def build_feed(
    items: Sequence[StoredItem],
    scope: Scope,
    *,
    self_url: str,
    site_url: str,
    now: datetime,
    source_names: Mapping[str, str] | None = None,
) -> tuple[bytes, bytes]:
    """(RSS 2.0, Atom) documents of ``items``, in the order given. ``self_url`` is the feed's
    address without its ending: ``.xml`` and ``.atom`` are added for each document's own
    ``rel="self"`` link."""
    names = source_names or {}
    fg = FeedGenerator()
    fg.id(f"urn:uuid:{uuid.uuid5(NAMESPACE, 'feed:' + scope.path)}")
    fg.title(one_line(scope.title, 200))
    # feedgen takes the RSS <link> from the last link added: the site, after the self link.
    fg.link(href=self_url + ".xml", rel="self")
    fg.link(href=site_url, rel="alternate")
    fg.description(one_line(scope.title, 200))
    fg.language(scope.language)
    fg.generator("EU-bevakning")
    newest = max((updated_at(i) for i in items), default=datetime(2000, 1, 1, tzinfo=UTC))
    fg.updated(newest)
    fg.lastBuildDate(newest)
    for item in items:
        fe = fg.add_entry(order="append")
        eid = entry_id(item)
        fe.id(eid)
        fe.guid(eid, permalink=False)
        fe.title(one_line(item.title, 300) or "–")
        link = safe_link(item.link)
        if link:
            fe.link(href=link, rel="alternate")
        text = describe(item, scope.language, now)
        fe.description(text)
        fe.content(text, type="text")
        fe.published(item.first_seen)
        fe.updated(updated_at(item))
        author = one_line(names.get(item.source_id, item.source_id), 120)
        if author:
            fe.author({"name": author})
        cats = [
            {"term": one_line(t.tag, 64), "label": TAG_NAMES["sv"].get(t.tag, t.tag)}
            for t in item.tags
        ]
        if cats:
            fe.category(cats)
    rss = fg.rss_str(pretty=False)
    # The same generator writes the Atom document: its self link names the .atom address.
    fg.link(href=self_url + ".atom", rel="self", replace=True)
    fg.link(href=site_url, rel="alternate")
    return rss, fg.atom_str(pretty=False)
