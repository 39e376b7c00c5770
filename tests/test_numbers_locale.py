"""Dates and numbers people read come from Babel's locale data, the same in digests, feeds,
alerts and web pages: ``1 234`` (a no-break space) in Swedish, ``1,234`` in English; month
names and date patterns from ``sv_SE`` and ``en_GB``, in Stockholm time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from babel import dates, numbers

from notifications.alerts import DIGEST_MISSED, SOURCE_FAILING, alert_text
from notifications.digest import Digest, Entry
from notifications.labels import (
    format_date,
    format_datetime,
    format_day,
    format_number,
    format_time,
)
from notifications.render import render_digest, subject_for
from notifications.subscriptions import describe
from tests.conftest import T0
from watcher.config import validate_data
from watcher.dates import STOCKHOLM
from watcher.storage.events import AdminEvent
from watcher.storage.subscriptions import Choice
from watcher.web.render import Formatter, environment

NBSP = "\u00a0"  # CLDR's Swedish group separator

ENTRY = Entry(
    item_id=1,
    uid="esf:1",
    title="Utlysning",
    link="https://esf.example/1",
    kind="call",
    status="open",
    programme=None,
    opening=None,
    deadline=T0 + timedelta(days=20),
    deadlines=(T0 + timedelta(days=20),),
    sources=(("ESF", "https://esf.example/1"),),
    tags=(),
    group="",
)


def digest(language: str, *, new: int = 1, skipped: int = 0) -> Digest:
    entries = tuple(dataclasses.replace(ENTRY, item_id=i, uid=f"esf:{i}") for i in range(new))
    return Digest(
        network_id="n",
        network_name="Nätverket",
        language=language,
        window_start=T0 - timedelta(days=7),
        window_end=T0,
        first=False,
        new=entries,
        skipped=skipped,
    )


@pytest.mark.parametrize(
    ("language", "count"), [("sv", f"1{NBSP}234"), ("en", "1,234")], ids=["sv", "en"]
)
def test_digest_counts_are_grouped_as_the_language_writes_them(language, count):
    assert subject_for(digest(language, new=1234)).startswith(f"Nätverket: {count} ")
    rendered = render_digest(digest(language, skipped=1234))
    assert f"{count} " in rendered.text and f"{count} " in rendered.html


def test_numbers_use_the_swedish_group_separator_and_decimal_comma():
    assert format_number(1234, "sv") == f"1{NBSP}234"
    assert format_number(1234567.5, "sv") == f"1{NBSP}234{NBSP}567,5"
    assert format_number(1234567.5, "en") == "1,234,567.5"
    assert format_number(12, "fr") == "12"  # an unknown language is written as Swedish


@pytest.mark.parametrize("month", range(1, 13))
def test_month_names_are_babels_in_both_languages(month):
    when = datetime(2027, month, 16, 12, tzinfo=UTC)
    for language, locale in (("sv", "sv_SE"), ("en", "en_GB")):
        name = dates.get_month_names("wide", locale=locale)[month]
        assert format_date(when, language) == f"16 {name} 2027"


def test_an_english_digest_has_english_month_names():
    rendered = render_digest(digest("en"))
    assert rendered.subject == "Nätverket: 1 new – 2 November 2026"
    assert "EU monitoring for Nätverket, 2 November 2026." in rendered.text
    assert "november" not in rendered.text  # no Swedish month name slips in


def test_a_time_of_day_is_joined_as_each_language_writes_it():
    # 08:00 UTC is 09:00 in Stockholm (CET); Swedish keeps "kl.", English is CLDR's "{1}, {0}"
    assert format_datetime(T0, "sv") == "2 november 2026 kl. 09:00"
    assert format_datetime(T0, "en") == "2 November 2026, 09:00"
    summer = datetime(2027, 6, 30, 15, tzinfo=UTC)  # 17:00 CEST
    assert format_datetime(summer, "sv") == "30 juni 2027 kl. 17:00"
    whole_day = datetime(2027, 6, 30, 21, 59, tzinfo=UTC)  # 23:59 CEST marks a whole day
    assert format_datetime(whole_day, "en") == "30 June 2027"


def test_kept_answers_are_babels_own_for_every_hour_day_and_number():
    # format_day, format_time and format_number keep their recent answers: each must be
    # what Babel says for those arguments, asked again and after other arguments, across
    # both changes of daylight saving time, in several zones (half and three-quarter hours
    # too), for a naive instant (Babel reads it as UTC), in both languages, and for ints and
    # floats (-0.0 equals 0.0 but is written "-0").
    start = datetime(2027, 3, 27, 0, 7, tzinfo=UTC)  # a day before summer time
    instants = [start + timedelta(minutes=53 * i) for i in range(200)]
    instants += [
        datetime(2027, 10, 30, 22, tzinfo=UTC) + timedelta(minutes=30 * i) for i in range(12)
    ]
    instants.append(datetime(2027, 6, 30, 12, 5))  # naive
    zones = [STOCKHOLM, UTC] + [
        ZoneInfo(z) for z in ("America/New_York", "Asia/Kolkata", "Asia/Kathmandu")
    ]
    for _ in range(2):
        for language, locale in (("sv", "sv_SE"), ("en", "en_GB"), ("fr", "sv_SE")):
            for tz in zones:
                for when in instants:
                    expected = dates.format_time(when, "short", tzinfo=tz, locale=locale)
                    assert format_time(when, language, tz) == expected, (when, tz)
            for when in instants[:-1]:
                day = when.astimezone(STOCKHOLM).date()
                assert format_day(day, language) == dates.format_date(day, "long", locale=locale)
            for value in (0, -0.0, 0.0, 1, 1.0, 2, 2.5, 1234, 1234.0, 1234567.5, -3):
                assert format_number(value, language) == numbers.format_decimal(
                    value, locale=locale
                ), value


def test_the_web_number_filter_and_formatter_follow_the_page_language():
    template = environment().from_string("{{ n|number }} {{ fmt.number(n) }}")
    for lang, count in (("sv", f"1{NBSP}234"), ("en", "1,234")):
        fmt = Formatter(lang, UTC, T0)
        assert template.render(n=1234, lang=lang, fmt=fmt) == f"{count} {count}"
    # a missing detail is shown as it is, not an error page
    assert environment().from_string("{{ n|number }}").render(n=None, lang="sv") == "None"


def test_the_web_writes_days_as_the_digest_and_counts_only_deadlines_ahead():
    """The web's day is the digest's (``format_day``); a deadline at this very instant has
    passed, as ``watcher.calls`` says, so the page counts no days down to it."""
    sv, en = Formatter("sv", UTC, T0), Formatter("en", UTC, T0)
    assert sv.day(T0) == format_date(T0, "sv", UTC) == "2 november 2026"
    assert en.day(T0.date()) == "2 November 2026"
    assert sv.days_left(T0) == "" and sv.days_left(T0 - timedelta(days=1)) == ""
    assert sv.days_left(T0 + timedelta(hours=1)) == "i dag"
    assert en.days_left(T0 + timedelta(days=3)) == "in 3 days"


def event(kind: str, subject: str, details: dict[str, object]) -> AdminEvent:
    return AdminEvent(
        id=1,
        kind=kind,
        subject=subject,
        key=None,
        message="boom",
        details=details,
        at=T0,
        resolved_at=None,
        resolves=None,
        send_status="pending",
        send_attempts=0,
        send_error=None,
        next_send_at=None,
        sent_to=(),
        sent_at=None,
    )


def test_alerts_write_counts_and_times_in_swedish():
    config = validate_data({"networks": [{"id": "n", "name": "Nätverket"}]})
    missed = event(
        DIGEST_MISSED,
        "n",
        {"first": T0.isoformat(), "last": (T0 + timedelta(days=3)).isoformat(), "count": 1234},
    )
    text = alert_text(missed, config)
    assert f"Nätverket: 1{NBSP}234 schemalagda utskick missades" in text.subject
    assert "Från 2 november 2026 kl. 09:00 till 5 november 2026 kl. 09:00" in text.body
    # A recorded instant keeps its time at midnight (a deadline's midnight is a whole day).
    midnight = datetime(2026, 11, 2, 23, tzinfo=UTC)  # 00:00 in Stockholm
    at_midnight = event(DIGEST_MISSED, "n", {"first": midnight.isoformat(), "last": "x"})
    assert "Från 3 november 2026 kl. 00:00 till x" in alert_text(at_midnight, config).body
    failing = alert_text(event(SOURCE_FAILING, "esf", {"failures": 3, "code": "http"}), config)
    assert "har misslyckats 3 gånger i rad" in failing.subject


def test_a_subscription_names_areas_and_themes_in_the_readers_language():
    config = validate_data({})
    choice = Choice("topics", areas=("fonder-program",), themes=("arbetsmarknad",))
    assert describe(choice, config, "sv") == "nyheter om Fonder och program, Arbetsmarknad"
    assert describe(choice, config, "en") == "news on Funds and programmes, Labour market"
