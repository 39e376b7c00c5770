"""A network's digest schedule on the clock: once per local date across daylight saving
time, and never a fire time returned twice (issue 12, point 3).

The trigger is walked as APScheduler walks it: each next fire time is asked with the
previous one and a fake clock set to the moment it fired."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from notifications.schedule import network_trigger
from notifications.slots import Slots, plan_start
from watcher.config import validate_data

TZ = ZoneInfo("Europe/Stockholm")
CONFIG = validate_data({})
TIMES = ("01:59", "02:00", "02:30", "02:59", "03:00", "03:01")
SCHEDULES = ("daily {t}", "weekdays {t}", "sun {t}", "mon {t}", "sat,sun {t}")
# 2025: the clocks go forward on Sunday 30 March (02:00 CET → 03:00 CEST) and back on
# Sunday 26 October (03:00 CEST → 02:00 CET).
SPRING = (date(2025, 3, 24), date(2025, 4, 6))
AUTUMN = (date(2025, 10, 20), date(2025, 11, 2))
WEEKDAYS = {
    "daily": set(range(7)),
    "weekdays": set(range(5)),
    "sun": {6},
    "mon": {0},
    "sat,sun": {5, 6},
}


def walk(schedule: str, clock, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time from ``start`` to ``end``, asked as APScheduler asks: with the
    previous fire time and ``now`` at the moment the job fired."""
    trigger = network_trigger(schedule, CONFIG)
    clock.current = start
    fired: list[datetime] = []
    previous = None
    for _ in range(100):
        nxt = trigger.get_next_fire_time(previous, clock())
        assert nxt is not None
        if nxt > end:
            break
        assert nxt not in fired, f"{schedule}: {nxt} returned twice"
        assert previous is None or nxt > previous, f"{schedule}: {nxt} after {previous}"
        fired.append(nxt)
        previous = nxt
        clock.current = nxt  # the job runs at its time
    return fired


@pytest.mark.parametrize("period", [SPRING, AUTUMN], ids=["spring", "autumn"])
@pytest.mark.parametrize("hhmm", TIMES)
@pytest.mark.parametrize("pattern", SCHEDULES)
def test_every_schedule_fires_once_per_local_date_across_dst(clock, period, hhmm, pattern):
    schedule = pattern.format(t=hhmm)
    first, last = period
    start = datetime.combine(first, datetime.min.time(), TZ)
    end = datetime.combine(last, datetime.max.time(), TZ)
    fired = walk(schedule, clock, start, end)
    dates = [f.astimezone(TZ).date() for f in fired]
    wanted = [
        first + timedelta(days=n)
        for n in range((last - first).days + 1)
        if (first + timedelta(days=n)).weekday() in WEEKDAYS[pattern.split()[0]]
    ]
    assert dates == wanted, schedule


@pytest.mark.parametrize(
    ("schedule", "day", "utc"),
    [
        # A time the clock skips fires when the clock skips to 03:00 CEST (01:00 UTC).
        ("daily 02:00", date(2025, 3, 30), "01:00"),
        ("daily 02:30", date(2025, 3, 30), "01:00"),
        ("daily 02:59", date(2025, 3, 30), "01:00"),
        ("daily 03:00", date(2025, 3, 30), "01:00"),
        ("sun 02:30", date(2025, 3, 30), "01:00"),
        # A time the clock passes twice fires the first time (CEST), never again at CET.
        ("daily 02:00", date(2025, 10, 26), "00:00"),
        ("daily 02:30", date(2025, 10, 26), "00:30"),
        ("daily 02:59", date(2025, 10, 26), "00:59"),
        ("daily 03:00", date(2025, 10, 26), "02:00"),
        ("sun 02:30", date(2025, 10, 26), "00:30"),
    ],
)
def test_the_fire_time_on_a_transition_day(clock, schedule, day, utc):
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), TZ)
    end = datetime.combine(day, datetime.max.time(), TZ)
    fired = [f for f in walk(schedule, clock, start, end) if f.astimezone(TZ).date() == day]
    hour, minute = map(int, utc.split(":"))
    assert [f.astimezone(UTC) for f in fired] == [
        datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
    ]


@pytest.mark.parametrize(
    "now",
    [
        datetime(2025, 10, 26, 0, 30, tzinfo=UTC),  # 02:30 CEST, the first 02:30
        datetime(2025, 10, 26, 1, 30, tzinfo=UTC),  # 02:30 CET, the second
        datetime(2025, 10, 26, 1, 30, tzinfo=UTC).astimezone(TZ),
        datetime(2025, 10, 26, 1, 30, 1, tzinfo=UTC),
    ],
)
def test_after_a_firing_the_next_is_the_next_day(now):
    """The trigger once answered 02:30 CET again when asked right after firing at 02:30
    CET on 26 October (APScheduler asks with the previous fire time and ``now``)."""
    trigger = network_trigger("daily 02:30", CONFIG)
    nxt = trigger.get_next_fire_time(now, now)
    assert nxt is not None
    assert nxt.astimezone(UTC) == datetime(2025, 10, 27, 1, 30, tzinfo=UTC)


def test_a_clock_moved_back_never_gets_a_fire_time_again(clock):
    trigger = network_trigger("daily 07:30", CONFIG)
    fired = trigger.get_next_fire_time(None, datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    assert fired == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
    moved_back = fired - timedelta(hours=2)
    nxt = trigger.get_next_fire_time(fired, moved_back)
    assert nxt == datetime(2026, 11, 3, 6, 30, tzinfo=UTC)


SLOT = datetime(2026, 11, 3, 6, 30, tzinfo=UTC)  # daily 07:30 in Stockholm
DAY = timedelta(days=1)
SIX_HOURS = timedelta(hours=6)


@pytest.mark.parametrize(
    ("stored", "now", "next_run", "run_now", "missed"),
    [
        pytest.param(None, SLOT - SIX_HOURS, SLOT, False, None, id="nothing-stored"),
        pytest.param(SLOT, SLOT - SIX_HOURS, SLOT, False, None, id="not-due-yet"),
        pytest.param(SLOT, SLOT, SLOT, True, None, id="due-now"),
        pytest.param(SLOT, SLOT + SIX_HOURS, SLOT, True, None, id="within-grace"),
        pytest.param(
            SLOT,
            SLOT + SIX_HOURS + timedelta(minutes=1),
            SLOT + DAY,
            False,
            (SLOT, SLOT, 1),
            id="beyond-grace",
        ),
        pytest.param(
            SLOT,
            SLOT + 2 * DAY + timedelta(hours=1),
            SLOT + 2 * DAY,
            True,
            (SLOT, SLOT + DAY, 2),
            id="days-down-last-within-grace",
        ),
        pytest.param(
            SLOT + 3 * DAY, SLOT - timedelta(hours=1), SLOT, False, None, id="clock-set-back"
        ),
    ],
)
def test_what_a_start_does_with_the_stored_next_run(stored, now, next_run, run_now, missed):
    slots = Slots.parse("daily 07:30", TZ)
    plan = plan_start(slots, stored, now, SIX_HOURS)
    assert (plan.next_run_at, plan.run_now, plan.missed) == (next_run, run_now, missed)
