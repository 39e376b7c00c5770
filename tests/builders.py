"""Builders shared by the pipeline, storage and writer tests (no tests in here): feeds
served by the loopback server, source configs, normalised items, and a poll written
through the real ``decide`` and ``Storage.apply``."""

from __future__ import annotations

from typing import Any

from tests.conftest import T0
from watcher.config import SourceConfig
from watcher.pipeline.normalise import normalise
from watcher.pipeline.track import candidate_keys, decide
from watcher.storage import Storage
from watcher.types import PollResult, PollStatus, RawItem

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Nyheter</title><link>https://example.se/</link>
{items}
</channel></rss>"""


def rss_item(guid: str | None, title: str, link: str, desc: str = "", date: str = "") -> str:
    g = f"<guid>{guid}</guid>" if guid else ""
    d = f"<pubDate>{date}</pubDate>" if date else ""
    return f"<item>{g}<title>{title}</title><link>{link}</link><description>{desc}</description>{d}</item>"


def feed(*items: str, encoding: str = "utf-8") -> str:
    return RSS.format(items="\n".join(items)).replace('encoding="utf-8"', f'encoding="{encoding}"')


def src(id: str, url: str, adapter: str = "rss", **options: Any) -> dict[str, Any]:
    return {"id": id, "name": id, "kind": adapter, "url": url, "schedule": "1h", "options": options}


GOOD = feed(
    rss_item(
        "a1", "Utlysning: kompetensförsörjning", "https://esf.example/a1", "ESF+ i Västsverige"
    ),
    rss_item("a2", "Samråd om sammanhållningspolitiken", "https://esf.example/a2", "Have your say"),
)


SRC = SourceConfig(id="esf", name="ESF", kind="rss", url="https://esf.example/feed")
OTHER = SourceConfig(id="ft", name="F&T", kind="ft-portal", url="https://ft.example/api")


def items(source: SourceConfig, *raws: RawItem, now: Any = T0) -> list[Any]:
    return [normalise(r, source, now) for r in raws]


def poll_into(storage: Storage, source: SourceConfig, raws: list[RawItem], now: Any = T0) -> Any:
    its = items(source, *raws, now=now)
    known = storage.known_slices(source.id)
    cands = storage.duplicate_candidates(source.id, *candidate_keys(its))
    intents = decide(its, known, cands)
    result = PollResult(source.id, PollStatus.OK, parsed=len(its))
    return storage.apply(source.id, intents, result, now)


CALL = RawItem(
    key="c1",
    title="Utlysning: kompetensförsörjning i Västsverige",
    link="https://esf.example/c1",
    kind="call",
    opening="2026-10-01",
    deadlines=("2027-03-16",),
    budget="50 miljoner kronor",
)
