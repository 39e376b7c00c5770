"""Dates as the sources write them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from watcher.dates import find_dates, parse_date

CASES = [
    ("sedia", "2027-04-08T17:00:00.000+0000", "2027-04-08T17:00:00+00:00"),
    ("rfc822", "Wed, 25 Feb 2026 13:41:04 +0100", "2026-02-25T12:41:04+00:00"),
    ("haveyoursay", "2026/09/01 23:59:59", "2026-09-01T21:59:59+00:00"),
    ("sv-status", "Stängd 16 mars 2023", "2023-03-15T23:00:00+00:00"),
    ("sv-with-time", "8 juli 2022 kl. 16.00", "2022-07-08T14:00:00+00:00"),
    ("no", "15. januar 2018", "2018-01-14T23:00:00+00:00"),
    ("no-desember", "1. desember 2026", "2026-11-30T23:00:00+00:00"),
    ("da", "3. maj 2025", "2025-05-02T22:00:00+00:00"),
    ("en-noon-cest", "7 June 2024 (12:00 noon CEST)", "2024-06-07T10:00:00+00:00"),
    ("en-us", "June 7, 2024", "2024-06-06T22:00:00+00:00"),
    ("iso-date", "2024-05-21", "2024-05-20T22:00:00+00:00"),
    ("numeric", "12.03.2025", "2025-03-11T23:00:00+00:00"),
    ("short-month", "3 sept 2026", "2026-09-02T22:00:00+00:00"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES]
)
def test_parse_date(text, expected):
    got = parse_date(text)
    assert got is not None and got.isoformat() == expected


def test_deadline_without_time_is_the_end_of_that_day():
    got = parse_date("16 mars 2027", end_of_day=True)
    assert got == datetime(2027, 3, 16, 22, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "ingen dag", "31 februari 2026", "mars", "2026-13-01"])
def test_no_date(text):
    assert parse_date(text) is None


def test_find_dates_in_running_text():
    dates = find_dates("Öppnar 3 februari 2026 och stänger 16 mars 2026 kl. 16.00.")
    assert [d.isoformat() for d in dates] == [
        "2026-02-02T23:00:00+00:00",
        "2026-03-16T15:00:00+00:00",
    ]
