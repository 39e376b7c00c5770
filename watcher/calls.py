"""What is true of a call at a moment: its status, its next deadline, whether it is open,
over or current, and when it reached the networks. Pure; every function takes ``now``.

Every surface asks here (the CLI, the web list, the item page and the timeline, the JSON
API, the digest, the feeds and the calendars), so one call never shows two deadlines or
two statuses on two surfaces.

The rules, in one place:

- **Dates win over published status**, which lags: a call whose last deadline has passed
  (a deadline at ``now`` has passed) is closed; one whose opening is still ahead is forthcoming; a forthcoming call whose
  opening has come and that has a deadline is open; with no status but dates, the dates
  say open or forthcoming; with no dates the published status stands.
- **The next deadline** is the first deadline still ahead (strictly after ``now``); when
  every deadline has passed it is the last one (the one that closed the call).
- **Over**: closed, or every deadline has passed (a deadline at ``now`` has passed).
- **Open**: not over, and open now (as the status rule above says).
- **Current**: not over, and open or forthcoming (what a network's first digest covers).
- **Arrived**: when an item reached the networks: first seen, or released from hold.
- **Kind follows status**: a call that is forthcoming is a forthcoming call; a forthcoming
  call that opened or closed is a call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from watcher.types import Kind, Status


class CallFacts(Protocol):
    """What the rules read of an item (a stored item or a freshly normalised one)."""

    @property
    def status(self) -> Status | None: ...

    @property
    def opening(self) -> datetime | None: ...

    @property
    def deadlines(self) -> Sequence[datetime]: ...


class Arrival(Protocol):
    @property
    def first_seen(self) -> datetime: ...

    @property
    def released_at(self) -> datetime | None: ...


def effective_status(
    status: Status | None,
    opening: datetime | None,
    deadlines: Iterable[datetime],
    now: datetime,
) -> Status | None:
    """The status the dates support. Published status lags, so dates win when they
    disagree; with no dates the published status stands."""
    dl = sorted(deadlines)
    if dl and dl[-1] <= now:
        return Status.CLOSED
    if opening and opening > now:
        return Status.FORTHCOMING
    if status is None and (opening or dl):
        return Status.OPEN if (opening is None or opening <= now) else Status.FORTHCOMING
    if status == Status.FORTHCOMING and opening and opening <= now and dl:
        return Status.OPEN
    return status


def status(item: CallFacts, now: datetime) -> Status | None:
    """An item's status at ``now``: its stored status, as its dates have moved it since."""
    return effective_status(item.status, item.opening, item.deadlines, now)


def kind_for(status: Status | None, kind: Kind) -> Kind:
    """The kind that goes with a status: calls and forthcoming calls follow it."""
    if kind == Kind.CALL and status == Status.FORTHCOMING:
        return Kind.FORTHCOMING_CALL
    if kind == Kind.FORTHCOMING_CALL and status in (Status.OPEN, Status.CLOSED):
        return Kind.CALL
    return kind


def last_deadline(item: CallFacts) -> datetime | None:
    """The deadline that closes the call."""
    return max(item.deadlines) if item.deadlines else None


def has_passed(deadline: datetime, now: datetime) -> bool:
    """A deadline has passed from its own instant on: at 17:00 a 17:00 deadline is over."""
    return deadline <= now


def next_deadline(item: CallFacts, now: datetime) -> datetime | None:
    """The first deadline still ahead; the last one when all have passed."""
    ahead = [d for d in item.deadlines if not has_passed(d, now)]
    if ahead:
        return min(ahead)
    return last_deadline(item)


def upcoming_deadlines(item: CallFacts, now: datetime) -> list[datetime]:
    """The deadlines still ahead, first first."""
    return sorted(d for d in item.deadlines if not has_passed(d, now))


def is_over(item: CallFacts, now: datetime) -> bool:
    """Closed, or every deadline has passed."""
    last = last_deadline(item)
    if last is not None and has_passed(last, now):
        return True
    return status(item, now) == Status.CLOSED


def is_open(item: CallFacts, now: datetime) -> bool:
    """Open for applications or comments now."""
    return not is_over(item, now) and status(item, now) == Status.OPEN


def is_current(item: CallFacts, now: datetime) -> bool:
    """Open or forthcoming now (what a network's first digest covers)."""
    return not is_over(item, now) and status(item, now) in (Status.OPEN, Status.FORTHCOMING)


def arrived(item: Arrival) -> datetime:
    """When an item reached the networks: first seen, or released from hold."""
    if item.released_at is not None and item.released_at > item.first_seen:
        return item.released_at
    return item.first_seen
