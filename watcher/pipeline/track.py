"""Change tracking and cross-source duplicate matching: a pure decision.

``decide`` takes what storage knows (this source's stored slices, and candidate items from
other sources) and the freshly normalised items, and returns one ``Intent`` per item:
``NewItem``, ``Linked`` (a stored call of another source), ``Updated`` or ``Unchanged``.
It does no I/O; ``merge`` turns an intent into the values to write, and storage writes them.

Matching rules, in order:

1. the same key from the same source → the same item (unchanged or updated with field diffs);
2. the same link and title from the same source under a new key → the same item (feeds
   whose guids change on every fetch must not make duplicates);
3. a stored item of another source with the same call identifier (in any letter case: an
   identifier is stored as its source writes it, ``…-two-stage-01``, and compared in
   ``identifier_key`` form), or whose identifier
   appears in this item's title, or with a close title and the same deadline day →
   the same call: the new source is linked to it, no new item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC
from functools import lru_cache
from typing import Any

from watcher.dates import from_iso
from watcher.pipeline.normalise import content_hash
from watcher.text import identifier_tokens, title_numbers, title_words
from watcher.types import (
    TRACKED_FIELDS,
    Classification,
    DupCandidate,
    FieldChange,
    Intent,
    Item,
    Kind,
    Linked,
    NewItem,
    Status,
    StoredSlice,
    Unchanged,
    Updated,
    tracked_values,
)

TITLE_SIMILARITY = 0.8


def decide(
    items: Sequence[Item],
    known: Mapping[str, StoredSlice],
    candidates: Sequence[DupCandidate] = (),
    tags: Mapping[str, Classification] | None = None,
) -> list[Intent]:
    """One intent per distinct key in ``items`` (the first of repeated keys wins).
    ``tags``: each entry's classification by key, carried by its intent."""
    tags = tags or {}
    by_link_title = {(s.values.get("link"), s.values.get("title")): s for s in known.values()}
    index = CandidateIndex(candidates)
    claimed: set[int] = set()
    merged_into: set[int] = set()  # one entry of this source per stored call
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
            intents.append(_compare(item, stored, tags.get(item.key)))
            continue
        match = find_duplicate(item, index, exclude=merged_into)
        if match is not None:
            cand, reason = match
            merged_into.add(cand.item_id)
            takes_over = bool(
                item.identifier
                and not cand.identifier
                and _contains_id(cand.title.upper(), identifier_key(item.identifier))
            )
            intents.append(Linked(item, cand.item_id, reason, takes_over, tags.get(item.key)))
        else:
            intents.append(NewItem(item, tags.get(item.key)))
    return intents


def _compare(
    item: Item, stored: StoredSlice, classification: Classification | None = None
) -> Updated | Unchanged:
    rekey = stored.key if stored.key != item.key else None
    if item.incomplete is not None and item.incomplete.missing:
        # Unknown is not empty: what the source could not give this time (a failed detail
        # page) is what it said last time, not a removal.
        item = fill_unknown(item, stored.values)
    # A record its source could not complete last time is rewritten once it can.
    completed = bool(stored.values.get("incomplete")) and not (
        item.incomplete is not None and item.incomplete.missing
    )
    if item.content_hash == stored.content_hash and not completed:
        return Unchanged(item, stored.item_id, stored_key=rekey)
    new = tracked_values(item)
    changes = tuple(
        FieldChange(f, stored.values.get(f), new[f])
        for f in TRACKED_FIELDS
        if _differs(stored.values.get(f), new[f])
    )
    if not changes and not completed:
        return Unchanged(item, stored.item_id, stored_key=rekey)
    return Updated(item, stored.item_id, changes, rekey, classification)


def fill_unknown(item: Item, said: Mapping[str, Any]) -> Item:
    """``item`` with the fields its source could not give taken from what the source said
    last (``said``: its stored tracked values); the fields still unknown stay missing."""
    assert item.incomplete is not None
    values: dict[str, Any] = {}
    still: list[str] = []
    for f in item.incomplete.missing:
        old = said.get(f)
        if old in (None, "", []):
            still.append(f)
        elif f == "status":
            values[f] = Status(old)
        elif f == "kind":
            values[f] = Kind(old)
        elif f == "opening":
            values[f] = from_iso(old)
        elif f == "deadlines":
            values[f] = tuple(d for d in (from_iso(x) for x in old) if d)
        elif f == "regions":
            values[f] = tuple(old)
        elif f in TRACKED_FIELDS:
            values[f] = old
    filled = replace(item, **values, incomplete=replace(item.incomplete, missing=tuple(still)))
    return replace(filled, content_hash=content_hash(tracked_values(filled)))


def _differs(old: object, new: object) -> bool:
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        return list(old) != list(new)
    return (old or None) != (new or None)


class CandidateIndex:
    """Candidates grouped for quick lookup: those with an identifier or naming one
    (checked against every item) and, by deadline day, those a close title could match."""

    def __init__(self, candidates: Iterable[DupCandidate]) -> None:
        self.with_identifier: list[DupCandidate] = []
        self.by_day: dict[str, list[DupCandidate]] = {}
        # By (day, numbers_key): a title with numbers is compared only with titles with the
        # same numbers or none.
        self.by_day_numbers: dict[tuple[str, str], list[DupCandidate]] = {}
        for cand in candidates:
            if cand.identifier or cand.named:
                self.with_identifier.append(cand)
            numbers = numbers_key(cand.numbers)
            for day in cand.days:
                self.by_day.setdefault(day, []).append(cand)
                self.by_day_numbers.setdefault((day, numbers), []).append(cand)

    def for_item(self, item: Item, numbers: str | None = None) -> list[DupCandidate]:
        """The candidates ``item`` could be (``numbers``: its title's ``numbers_key``, when
        the caller has it)."""
        out: dict[int, DupCandidate] = {c.item_id: c for c in self.with_identifier}
        if numbers is None:
            numbers = numbers_key(title_numbers(title_words(item.title)))
        for d in item_days(item):
            if numbers:
                found = [
                    *self.by_day_numbers.get((d, numbers), ()),
                    *self.by_day_numbers.get((d, ""), ()),
                ]
            else:
                found = self.by_day.get(d, [])
            for c in found:
                out.setdefault(c.item_id, c)
        return list(out.values())


def find_duplicate(
    item: Item,
    candidates: Iterable[DupCandidate] | CandidateIndex,
    exclude: frozenset[int] | set[int] = frozenset(),
) -> tuple[DupCandidate, str] | None:
    """The stored call (from another source) that ``item`` is, with the reason.
    ``exclude``: calls another entry of the same poll was already linked to."""
    words = title_words(item.title)
    title_norm = frozenset(words)
    numbers = title_numbers(words)
    if isinstance(candidates, CandidateIndex):
        candidates = candidates.for_item(item, numbers_key(numbers))
    # In the order they were stored: of two stored calls the item could be (an equal
    # title, the same identifier twice), it is the earlier, whatever order the candidates
    # came in (a set of deadline days iterates in an order Python's hash seed picks).
    candidates = sorted(
        (c for c in candidates if c.item_id not in exclude), key=lambda c: c.item_id
    )
    haystack: str | None = None  # upper-cased text, made only if an identifier needs it
    days = item_days(item)
    best: tuple[float, DupCandidate, str] | None = None
    for cand in candidates:
        if item.source_id in cand.source_ids:
            continue
        if item.identifier and cand.identifier:
            if identifier_key(item.identifier) == identifier_key(cand.identifier):
                return cand, f"same identifier {item.identifier}"
            continue  # two identifiers: two calls (a second stage naming the first, say)
        if cand.identifier and len(cand.identifier) >= 8:
            if haystack is None:
                haystack = f"{item.title} {item.summary}".upper()
            if _contains_id(haystack, identifier_key(cand.identifier)):
                return cand, f"identifier {cand.identifier} named in the text"
        if (
            item.identifier  # and the stored item has none: it only names calls
            and len(item.identifier) >= 8
            and _contains_id(cand.title.upper(), identifier_key(item.identifier))
        ):
            return cand, f"identifier {item.identifier} named in the title"
        if days and not days.isdisjoint(cand.days):
            cand_numbers = cand.numbers
            if numbers and cand_numbers and numbers != cand_numbers:
                continue  # "Call 3" is not "Call 5"
            sim = _dice(title_norm, cand.tokens)
            if sim >= TITLE_SIMILARITY and (best is None or sim > best[0]):
                best = (sim, cand, f"close title ({sim:.0%}) and the same deadline")
    return (best[1], best[2]) if best else None


TitleKey = tuple[str, str | None]
"""What a close title is looked up by: a deadline day (UTC ISO date) and the numbers of the
title (``numbers_key``), or None for "any numbers" (a title without numbers may match a
title with any)."""


def candidate_keys(fresh: Iterable[Item]) -> tuple[list[str], list[TitleKey]]:
    """What to look up stored duplicates by: the items' identifiers and identifiers named in
    their text, and (deadline day, title numbers) pairs a close title must share. A stored
    title with other numbers can never match ("Call 3" is not "Call 5"), so a day on which
    hundreds of calls close is not read whole for every new call."""
    identifiers: set[str] = set()
    keys: set[TitleKey] = set()
    for it in fresh:
        if it.identifier:
            identifiers.add(identifier_key(it.identifier))
        identifiers |= identifier_tokens(f"{it.title} {it.summary[:2000]}")
        numbers = numbers_key(title_numbers(title_words(it.title)))
        keys.update((day, numbers or None) for day in item_days(it))
    return sorted(identifiers), sorted(keys, key=lambda k: (k[0], k[1] or ""))


def numbers_key(numbers: Sequence[str]) -> str:
    """A title's numbers (``title_numbers``) as one key ("" for none): two titles with
    numbers are the same call only with the same numbers in the same order."""
    return " ".join(numbers)


def item_days(item: Item) -> frozenset[str]:
    """An item's deadline days as UTC ISO dates, the form candidates carry."""
    return frozenset(d.astimezone(UTC).date().isoformat() for d in item.deadlines)


def identifier_key(identifier: str) -> str:
    """The form call identifiers are compared in: upper case, as ``identifier_tokens`` gives
    the identifiers a text names. Stored identifiers keep the case their source wrote
    (``HORIZON-MISS-2027-05-SOIL-01-two-stage``); only comparisons use this form."""
    return identifier.upper()


def _contains_id(text: str, identifier: str) -> bool:
    """Whether upper-cased ``text`` names ``identifier`` (in ``identifier_key`` form)."""
    return _id_pattern(identifier).search(text) is not None


@lru_cache(maxsize=4096)
def _id_pattern(identifier: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Z0-9-]){re.escape(identifier)}(?![A-Z0-9-])")


def _dice(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))
