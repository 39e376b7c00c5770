"""Change tracking and cross-source duplicate matching: a pure decision.

``decide`` takes what storage knows (this source's stored slices, and candidate items from
other sources), the freshly normalised items and ``now``, and returns one ``Intent`` per
item. It does no I/O; storage applies the intents.

Matching rules, in order:

1. the same key from the same source → the same item (unchanged or updated with field diffs);
2. the same link and title from the same source under a new key → the same item (feeds
   whose guids change on every fetch must not make duplicates);
3. a stored item of another source with the same call identifier, or whose identifier
   appears in this item's title, or with a close title and the same deadline day →
   the same call: the new source is linked to it, no new item.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from watcher.pipeline.normalise import tracked_values
from watcher.types import TRACKED_FIELDS, FieldChange, Intent, IntentKind, Item, StoredSlice

TITLE_SIMILARITY = 0.8


@dataclass(frozen=True)
class DupCandidate:
    """A stored item from another source that a new item might be the same call as."""

    item_id: int
    source_ids: frozenset[str]
    identifier: str | None
    title: str
    deadlines: tuple[datetime, ...]


def decide(
    items: Sequence[Item],
    known: Mapping[str, StoredSlice],
    candidates: Sequence[DupCandidate] = (),
) -> list[Intent]:
    """One intent per distinct key in ``items`` (the first of repeated keys wins)."""
    by_link_title = {(s.values.get("link"), s.values.get("title")): s for s in known.values()}
    claimed: set[int] = set()
    intents: list[Intent] = []
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            continue
        seen.add(item.key)
        stored = known.get(item.key)
        if stored is None and item.link:
            alt = by_link_title.get((item.link, item.title))
            if alt is not None and alt.item_id not in claimed and alt.key not in seen:
                stored = alt
        if stored is not None:
            claimed.add(stored.item_id)
            intents.append(_compare(item, stored))
            continue
        match = find_duplicate(item, candidates)
        if match is not None:
            cand, reason = match
            intents.append(Intent(IntentKind.NEW, item, cand.item_id, (), cand.item_id, reason))
        else:
            intents.append(Intent(IntentKind.NEW, item))
    return intents


def _compare(item: Item, stored: StoredSlice) -> Intent:
    if item.content_hash == stored.content_hash and item.key == stored.key:
        return Intent(IntentKind.UNCHANGED, item, stored.item_id)
    new = tracked_values(item)
    changes = tuple(
        FieldChange(f, stored.values.get(f), new[f])
        for f in TRACKED_FIELDS
        if _differs(stored.values.get(f), new[f])
    )
    if not changes:
        return Intent(IntentKind.UNCHANGED, item, stored.item_id)
    return Intent(IntentKind.UPDATED, item, stored.item_id, changes)


def _differs(old: object, new: object) -> bool:
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        return list(old) != list(new)
    return (old or None) != (new or None)


def find_duplicate(
    item: Item, candidates: Iterable[DupCandidate]
) -> tuple[DupCandidate, str] | None:
    """The stored call (from another source) that ``item`` is, with the reason."""
    title_norm = normalise_title(item.title)
    haystack = f"{item.title} {item.summary}".upper()
    days = {d.date() for d in item.deadlines}
    best: tuple[float, DupCandidate, str] | None = None
    for cand in candidates:
        if item.source_id in cand.source_ids:
            continue
        if item.identifier and cand.identifier and item.identifier == cand.identifier:
            return cand, f"same identifier {item.identifier}"
        if (
            cand.identifier
            and len(cand.identifier) >= 8
            and _contains_id(haystack, cand.identifier)
        ):
            return cand, f"identifier {cand.identifier} named in the text"
        if (
            item.identifier
            and len(item.identifier) >= 8
            and _contains_id(cand.title.upper(), item.identifier)
        ):
            return cand, f"identifier {item.identifier} named in the title"
        if days and days & {d.date() for d in cand.deadlines}:
            sim = title_similarity(title_norm, normalise_title(cand.title))
            if sim >= TITLE_SIMILARITY and (best is None or sim > best[0]):
                best = (sim, cand, f"close title ({sim:.0%}) and the same deadline")
    return (best[1], best[2]) if best else None


def _contains_id(text: str, identifier: str) -> bool:
    return re.search(rf"(?<![A-Z0-9-]){re.escape(identifier)}(?![A-Z0-9-])", text) is not None


_STOP = frozenset(
    ["the", "a", "an", "of", "for", "and", "to", "in", "on", "call", "calls", "proposals", "proposal", "för", "och", "av", "till", "i", "på", "utlysning", "utlysningen", "inom", "med"]
)


def normalise_title(title: str) -> list[str]:
    text = unicodedata.normalize("NFKD", title.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return [w for w in re.findall(r"[a-z0-9]+", text) if w not in _STOP]


def title_similarity(a: list[str], b: list[str]) -> float:
    """Token-set similarity (Dice coefficient), robust to reordering and prefixes."""
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    return 2 * len(sa & sb) / (len(sa) + len(sb))
