"""The calls core: status, next deadline, open / over / current and arrival at ``now``, from a
table of named cases (no database: ``watcher.calls`` is pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from watcher import calls
from watcher.types import Kind, Status

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Facts:
    status: Status | None = None
    opening: datetime | None = None
    deadlines: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class Case:
    name: str
    facts: Facts
    status: Status | None
    next_deadline: datetime | None
    open: bool
    over: bool
    current: bool


TWO_STAGES = (NOW + 10 * DAY, NOW + 90 * DAY)

CASES = [
    Case("open-call", Facts(Status.OPEN, None, (NOW + DAY,)), Status.OPEN, NOW + DAY, True, False, True),
    Case("two-stages-the-first-ahead", Facts(Status.OPEN, None, TWO_STAGES), Status.OPEN, TWO_STAGES[0], True, False, True),
    Case("two-stages-the-first-passed", Facts(Status.OPEN, None, (NOW - DAY, NOW + 90 * DAY)), Status.OPEN, NOW + 90 * DAY, True, False, True),
    Case("every-deadline-passed-shows-the-last", Facts(Status.OPEN, None, (NOW - 9 * DAY, NOW - DAY)), Status.CLOSED, NOW - DAY, False, True, False),
    Case("a-deadline-at-now-has-passed", Facts(Status.OPEN, None, (NOW,)), Status.CLOSED, NOW, False, True, False),
    Case("published-closed-without-dates", Facts(Status.CLOSED), Status.CLOSED, None, False, True, False),
    Case("opening-ahead-is-forthcoming", Facts(Status.OPEN, NOW + DAY, (NOW + 30 * DAY,)), Status.FORTHCOMING, NOW + 30 * DAY, False, False, True),
    Case("forthcoming-whose-opening-came", Facts(Status.FORTHCOMING, NOW - DAY, (NOW + 30 * DAY,)), Status.OPEN, NOW + 30 * DAY, True, False, True),
    Case("forthcoming-without-a-deadline-stays", Facts(Status.FORTHCOMING, NOW - DAY), Status.FORTHCOMING, None, False, False, True),
    Case("no-status-but-a-deadline-is-open", Facts(None, None, (NOW + DAY,)), Status.OPEN, NOW + DAY, True, False, True),
    Case("no-status-and-an-opening-ahead", Facts(None, NOW + DAY, (NOW + 9 * DAY,)), Status.FORTHCOMING, NOW + 9 * DAY, False, False, True),
    Case("news-without-dates", Facts(), None, None, False, False, False),
    Case("published-open-without-dates", Facts(Status.OPEN), Status.OPEN, None, True, False, True),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_call_facts(case: Case) -> None:
    assert calls.status(case.facts, NOW) == case.status
    assert calls.next_deadline(case.facts, NOW) == case.next_deadline
    assert calls.is_open(case.facts, NOW) is case.open
    assert calls.is_over(case.facts, NOW) is case.over
    assert calls.is_current(case.facts, NOW) is case.current


def test_case_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


def test_the_next_deadline_moves_on_as_time_passes() -> None:
    facts = Facts(Status.OPEN, None, TWO_STAGES)
    assert calls.next_deadline(facts, NOW) == TWO_STAGES[0]
    assert calls.next_deadline(facts, TWO_STAGES[0]) == TWO_STAGES[1]
    assert calls.next_deadline(facts, TWO_STAGES[1] + DAY) == TWO_STAGES[1]
    assert calls.upcoming_deadlines(facts, NOW + 11 * DAY) == [TWO_STAGES[1]]


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [
        (Status.FORTHCOMING, Kind.CALL, Kind.FORTHCOMING_CALL),
        (Status.OPEN, Kind.FORTHCOMING_CALL, Kind.CALL),
        (Status.CLOSED, Kind.FORTHCOMING_CALL, Kind.CALL),
        (Status.FORTHCOMING, Kind.FORTHCOMING_CALL, Kind.FORTHCOMING_CALL),
        (Status.OPEN, Kind.NEWS, Kind.NEWS),
        (None, Kind.CALL, Kind.CALL),
    ],
)
def test_kind_follows_status(status: Status | None, kind: Kind, expected: Kind) -> None:
    assert calls.kind_for(status, kind) == expected


@dataclass(frozen=True)
class Seen:
    first_seen: datetime
    released_at: datetime | None = None


def test_an_item_arrives_when_first_seen_or_when_released_from_hold() -> None:
    assert calls.arrived(Seen(NOW)) == NOW
    assert calls.arrived(Seen(NOW, NOW + DAY)) == NOW + DAY
    assert calls.arrived(Seen(NOW, NOW - DAY)) == NOW  # released before: still first seen
