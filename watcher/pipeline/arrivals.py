"""Which new items the networks hear about. Pure.

- **A source's first poll** is a baseline: what it lists was there before anyone watched, and
  mailing all of it would bury the networks. But a call that is still open or forthcoming,
  with a deadline ahead, is exactly what a newly added source is for: those are announced
  (they go into each matching network's next digest once). News and closed calls stay a
  silent baseline.
- **A flood** (more new items at once than the threshold: a site redesign that changed every
  key, a source's first poll with hundreds of open calls) is held for the admin, who
  releases or discards it; the rest of the poll is stored as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from watcher import calls
from watcher.types import Intent, Item, Kind, NewItem

# Kinds whose deadline people act on.
ANNOUNCED_KINDS = frozenset({Kind.CALL, Kind.FORTHCOMING_CALL, Kind.CONSULTATION})


def worth_announcing(item: Item, now: datetime) -> bool:
    """A call (or consultation) open or forthcoming now, with a deadline still ahead."""
    if item.kind not in ANNOUNCED_KINDS or not calls.is_current(item, now):
        return False
    due = calls.next_deadline(item, now)
    return due is not None and due > now


@dataclass(frozen=True)
class Arrivals:
    intents: list[Intent]
    notes: list[str]  # for the source's health
    announced: int | None  # a first poll: calls announced, items kept silent
    baselined: int | None


def arrivals(
    intents: Sequence[Intent], now: datetime, *, first_poll: bool, flood_threshold: int
) -> Arrivals:
    """The intents with each new item marked silent (baseline) or held, and what to say."""
    fresh = [i for i in intents if isinstance(i, NewItem)]
    if first_poll:
        loud = {i.item.key for i in fresh if worth_announcing(i.item, now)}
    else:
        loud = {i.item.key for i in fresh}
    hold = len(loud) > flood_threshold
    if not first_poll and not hold:
        return Arrivals(list(intents), [], None, None)  # every new item goes out as it is
    out: list[Intent] = [
        replace(i, baseline=i.item.key not in loud, held=hold and i.item.key in loud)
        if isinstance(i, NewItem)
        else i
        for i in intents
    ]
    notes: list[str] = []
    if hold:
        what = "open calls on a first poll" if first_poll else "new items at once"
        notes.append(
            f"{len(loud)} {what} (more than {flood_threshold}): held for the admin instead of "
            "being mailed — release or discard them in the admin"
        )
    if not first_poll:
        return Arrivals(out, notes, None, None)
    return Arrivals(out, notes, len(loud), len(fresh) - len(loud))
