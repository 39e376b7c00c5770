"""When a network's digest is due: one slot per scheduled local date (pure).

A schedule such as ``daily 02:30`` or ``mon,thu 08:00`` names local dates and a wall-clock
time in the config's zone (Europe/Stockholm). Each scheduled local date has exactly one
slot, an instant:

- the wall time itself, when the clock shows it once;
- its first occurrence, when the clock shows it twice (the last Sunday of October:
  02:30 CEST, never 02:30 CET as well);
- the moment the clock skips to, when it skips the time (the last Sunday of March: 02:30
  does not exist, the slot is 03:00 CEST, as cron does it).

Slots of later dates are later instants, so "the first slot after t" never gives an
instant twice, whatever the DST rules. ``DigestTrigger`` offers the slots to APScheduler.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger

from watcher.config import DigestSchedule

# How far the slot search looks: every schedule has at least one day a week.
_SEARCH_DAYS = 8
# How many missed slots are counted one by one (a service stopped for years is still "many").
_COUNT_LIMIT = 1000


@dataclass(frozen=True)
class Slots:
    """A network's schedule in a time zone, as instants."""

    schedule: DigestSchedule
    tz: tzinfo

    @classmethod
    def parse(cls, text: str, tz: tzinfo) -> Slots:
        return cls(DigestSchedule.parse(text), tz)

    def on(self, day: date) -> datetime | None:
        """The slot of a local date (UTC), or None when the schedule skips that date."""
        if day.weekday() not in self.schedule.days:
            return None
        wall = time(self.schedule.hour, self.schedule.minute)
        first = datetime.combine(day, wall, self.tz)  # fold=0: the first of two
        at = first.astimezone(UTC)
        if at.astimezone(self.tz).replace(tzinfo=None) == first.replace(tzinfo=None):
            return at
        # The wall time does not exist (the clock skips it): the slot is when the gap ends.
        # With fold=1 the wall time reads with the offset after the gap, an instant before
        # the gap's end; the end is the first whole minute from there with that offset.
        second = first.replace(fold=1)
        offset = second.utcoffset()
        t = second.astimezone(UTC)
        while t.astimezone(self.tz).utcoffset() != offset and t < at:
            t += timedelta(minutes=1)
        return t

    def _dates_from(self, t: datetime) -> Iterator[date]:
        day = t.astimezone(self.tz).date()
        while True:
            yield day
            day += timedelta(days=1)

    def first_at_or_after(self, t: datetime) -> datetime:
        for n, day in enumerate(self._dates_from(t)):
            slot = self.on(day)
            if slot is not None and slot >= t:
                return slot
            if n > _SEARCH_DAYS + 2:
                break
        raise AssertionError(f"no slot of {self.schedule} after {t}")  # pragma: no cover

    def first_after(self, t: datetime) -> datetime:
        """The first slot strictly after ``t``."""
        return self.first_at_or_after(t + timedelta(microseconds=1))

    def last_at_or_before(self, t: datetime) -> datetime:
        day = t.astimezone(self.tz).date() + timedelta(days=1)
        for _ in range(_SEARCH_DAYS + 2):
            slot = self.on(day)
            if slot is not None and slot <= t:
                return slot
            day -= timedelta(days=1)
        raise AssertionError(f"no slot of {self.schedule} before {t}")  # pragma: no cover

    def between(self, start: datetime, end: datetime) -> tuple[int, datetime | None]:
        """How many slots lie in ``[start, end]`` (counted up to a limit) and the last."""
        if start > end:
            return 0, None
        last = self.last_at_or_before(end)
        if last < start:
            return 0, None
        n, t = 0, self.first_at_or_after(start)
        while t <= end and n < _COUNT_LIMIT:
            n += 1
            t = self.first_after(t)
        return n, last


class DigestTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler is untyped
    """APScheduler's trigger for a digest schedule: after a fire time, the first slot
    strictly after it (so never the same instant twice, and never a second slot on the same
    local date); without one, the first slot at or after ``now``. Unlike a cron trigger,
    ``now`` never moves the answer back before the previous fire time: a clock set back
    does not bring a slot round again."""

    __slots__ = ("slots", "text")

    def __init__(self, schedule: str, tz: tzinfo) -> None:
        self.text = schedule
        self.slots = Slots.parse(schedule, tz)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is not None:
            at = self.slots.first_after(previous_fire_time)
        else:
            at = self.slots.first_at_or_after(now)
        return at.astimezone(self.slots.tz)

    def __getstate__(self) -> dict[str, object]:
        return {"version": 1, "schedule": self.text, "tz": str(self.slots.tz)}

    def __setstate__(self, state: dict[str, object]) -> None:
        from zoneinfo import ZoneInfo

        self.text = str(state["schedule"])
        self.slots = Slots.parse(self.text, ZoneInfo(str(state["tz"])))

    def __str__(self) -> str:
        return f"digest[{self.text}, {self.slots.tz}]"

    def __repr__(self) -> str:
        return f"<DigestTrigger ({self.text!r}, timezone='{self.slots.tz}')>"


@dataclass(frozen=True)
class StartPlan:
    """What to do with a network's digest job when the service (or a new leader) starts.

    ``run_now``: a slot was missed within the grace and is run once now; ``next_run_at``:
    the slot the stored plan should name (the missed one while it is being caught up);
    ``missed``: slots missed beyond the grace, ``(first, last, count)``, to record."""

    next_run_at: datetime
    run_now: bool = False
    missed: tuple[datetime, datetime, int] | None = None


def plan_start(
    slots: Slots,
    stored_next: datetime | None,
    now: datetime,
    grace: timedelta,
) -> StartPlan:
    """Decide at start from the stored next run (None: nothing stored, or stored for
    another schedule) what the job does. Missed slots within ``grace`` of ``now`` run once
    (the latest); older ones are recorded as missed and not sent (their items are not lost:
    the next digest carries everything not yet sent)."""
    upcoming = slots.first_at_or_after(now)
    if stored_next is None:
        return StartPlan(upcoming)
    if stored_next > now:
        # A stored run later than the schedule's next slot means the clock was set back:
        # the schedule's next slot is kept, not a day skipped.
        return StartPlan(min(stored_next, upcoming))
    count, last = slots.between(stored_next, now)
    if last is None:  # the stored run was no slot of this schedule: start afresh
        return StartPlan(upcoming)
    if now - last <= grace:
        missed = None
        if count > 1:
            first_missed = slots.first_at_or_after(stored_next)
            missed = (
                first_missed,
                slots.last_at_or_before(last - timedelta(microseconds=1)),
                count - 1,
            )
        return StartPlan(last, run_now=True, missed=missed)
    return StartPlan(upcoming, missed=(slots.first_at_or_after(stored_next), last, count))
