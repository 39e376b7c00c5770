"""The server-drawn charts: the pure SVG builders (values, scales, labels, escaping, empty
data), the poll log counted per day, and the charts with their tables on the pages."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.web_builders import raw, seed
from watcher.app import App
from watcher.storage import Storage
from watcher.types import PollResult, PollStatus, SourceError
from watcher.web import charts
from watcher.web.charts import ActivityText, CallSpan, DayActivity, TimelineText

SVG = "{http://www.w3.org/2000/svg}"
ACTIVITY = ActivityText(
    title="Aktivitet <30 dagar>",
    polls="Hämtningar",
    failures="misslyckade",
    new="Nya poster",
    day="{day}: {polls} hämtningar, {failures} misslyckade, {new} nya",
)
TIMELINE = TimelineText(
    title="Utlysningar", today="i dag", bar="{label}: {opening} – {deadline}", unknown="okänt"
)
D0 = date(2026, 11, 1)


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(markup)
    assert root.tag == f"{SVG}svg"
    return root


def rects(root: ET.Element, css: str) -> list[dict[str, float]]:
    return [
        {k: float(r.get(k, "0")) for k in ("x", "y", "width", "height")}
        for r in root.iter(f"{SVG}rect")
        if r.get("class") == css
    ]


def texts(root: ET.Element, css: str | None = None) -> list[str]:
    return [
        "".join(t.itertext())
        for t in root.iter(f"{SVG}text")
        if css is None or t.get("class") == css
    ]


# -- pure builders ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (1, 1), (2, 2), (3, 5), (5, 5), (6, 10), (11, 20), (480, 500)]
)
def test_an_axis_ends_at_a_round_number(value: int, top: int) -> None:
    assert charts.nice_max(value) == top


def test_no_days_and_no_calls_draw_nothing() -> None:
    assert charts.activity_chart([], ACTIVITY) == ""
    assert charts.timeline_chart([], D0, D0 + timedelta(weeks=4), TIMELINE) == ""
    assert charts.timeline_chart([("Tom", [])], D0, D0 + timedelta(weeks=4), TIMELINE) == ""


def test_activity_bars_scale_to_the_busiest_day_and_failures_sit_on_top() -> None:
    days = [DayActivity(D0 + timedelta(days=i)) for i in range(30)]
    days[3] = DayActivity(D0 + timedelta(days=3), polls=4, failures=1, new=2)
    days[10] = DayActivity(D0 + timedelta(days=10), polls=5, failures=5)
    days[29] = DayActivity(D0 + timedelta(days=29), polls=2, new=10)
    root = parse(charts.activity_chart(days, ACTIVITY))
    # The polls panel goes up to 5, the new-items panel up to 10: a full bar is the panel.
    [ok3, ok29] = [r for r in rects(root, "bar-ok") if r["y"] > 10]  # not the legend's
    assert ok3["height"] == pytest.approx(charts.PANEL_POLLS * 3 / 5, abs=0.1)
    assert ok29["height"] == pytest.approx(charts.PANEL_POLLS * 2 / 5, abs=0.1)
    [bad3, bad10] = rects(root, "bar-error")[1:]  # the first is the legend's key
    assert bad10["height"] == pytest.approx(charts.PANEL_POLLS, abs=0.1)
    assert bad3["y"] + bad3["height"] == pytest.approx(ok3["y"], abs=0.1)  # stacked on top
    [new3, new29] = rects(root, "bar-new")
    assert new29["height"] == pytest.approx(charts.PANEL_NEW, abs=0.1)
    assert new3["height"] == pytest.approx(charts.PANEL_NEW * 2 / 10, abs=0.1)
    assert new3["x"] < new29["x"] and ok3["x"] == pytest.approx(new3["x"])
    # Axis values and the date labels: the last day and every seventh before it.
    assert {"0", "5", "10"} <= set(texts(root, "tick"))
    assert [t for t in texts(root, "tick") if "/" in t] == [
        "30/11",
        "23/11",
        "16/11",
        "9/11",
        "2/11",
    ]
    # Every day has a tooltip, a day without polls too.
    tips = [t.text for g in root.iter(f"{SVG}g") for t in g.iter(f"{SVG}title")]
    assert len(tips) == 30
    assert tips[3] == "4/11: 4 hämtningar, 1 misslyckade, 2 nya"
    assert tips[0] == "1/11: 0 hämtningar, 0 misslyckade, 0 nya"


def test_a_chart_has_a_name_scales_with_the_page_and_escapes_its_words() -> None:
    markup = charts.activity_chart([DayActivity(D0, polls=1)], ACTIVITY, lambda d: "<b>&</b>")
    assert "<b>" not in markup and "&lt;b&gt;&amp;&lt;/b&gt;" in markup
    root = parse(markup)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Aktivitet <30 dagar>"
    assert root.find(f"{SVG}title") is not None
    assert re.fullmatch(r"0 0 400 [\d.]+", root.get("viewBox", ""))


def test_timeline_bars_run_from_opening_to_deadline() -> None:
    start, end = date(2026, 12, 1), date(2027, 3, 1)  # 90 days on 392 units
    spans = [
        CallSpan("Öppnar senare", date(2027, 1, 30), date(2026, 12, 31), "forthcoming"),
        CallSpan(
            "Öppen sedan oktober",
            date(2026, 12, 16),
            date(2026, 10, 1),
            "open",
            later=(date(2027, 2, 14),),
        ),
    ]
    root = parse(charts.timeline_chart([("Fonder", spans), ("Tom", [])], start, end, TIMELINE))
    unit = (charts.WIDTH - 2 * charts.T_SIDE) / 90
    [later] = rects(root, "bar-forthcoming")
    assert later["x"] == pytest.approx(charts.T_SIDE + 30 * unit, abs=0.1)
    assert later["width"] == pytest.approx(30 * unit, abs=0.1)
    [since] = rects(root, "bar-open")
    assert since["x"] == charts.T_SIDE  # opened before the axis: from its left edge …
    assert since["width"] == pytest.approx(15 * unit, abs=0.1)
    arrows = [p for p in root.iter(f"{SVG}path") if p.get("class") == "bar-open"]
    assert len(arrows) == 1  # … with an arrow
    [diamond] = [p for p in root.iter(f"{SVG}path") if p.get("class") == "later"]
    assert f"M{round(charts.T_SIDE + 75 * unit, 1)} " in (diamond.get("d") or "")
    assert texts(root, "group") == ["Fonder"]  # a group without calls is left out
    assert texts(root, "call") == ["Öppnar senare", "Öppen sedan oktober"]
    assert texts(root, "due") == ["30/1", "16/12"]
    tips = [t.text for g in root.iter(f"{SVG}g") for t in g.findall(f"{SVG}title")]
    assert tips == ["Öppnar senare: 31/12 – 30/1", "Öppen sedan oktober: 1/10 – 16/12"]


def test_timeline_labels_are_cut_but_whole_in_the_tooltip_and_escaped() -> None:
    name = "<script>alert(1)</script> " + "lång titel " * 10
    markup = charts.timeline_chart(
        [("A & B", [CallSpan(name, date(2026, 12, 20))])],
        date(2026, 12, 1),
        date(2026, 12, 29),
        TIMELINE,
    )
    assert "<script>" not in markup and "A &amp; B" in markup
    root = parse(markup)
    [label] = texts(root, "call")
    assert len(label) == charts.LABEL_CHARS and label.endswith("…")
    [tip] = [t.text for g in root.iter(f"{SVG}g") for t in g.findall(f"{SVG}title")]
    assert tip == f"{name}: okänt – 20/12"
    assert texts(root, "tick today-label") == ["i dag"]


@pytest.mark.parametrize(
    ("start", "end", "labels"),
    [
        # Four weeks: each Monday.
        (date(2026, 12, 2), date(2026, 12, 30), ["7/12", "14/12", "21/12", "28/12"]),
        # Six months: the first of each month, but not 1 December, crowding today's mark.
        (date(2026, 11, 20), date(2027, 5, 20), ["1/27", "2/27", "3/27", "4/27", "5/27"]),
        # A year: every second month.
        (date(2026, 12, 28), date(2027, 12, 27), ["3/27", "5/27", "7/27", "9/27", "11/27"]),
    ],
)
def test_the_time_axis_marks_weeks_or_months(start: date, end: date, labels: list[str]) -> None:
    assert [label for _d, label in charts.ticks(start, end)] == labels


def test_short_labels_take_the_pages_language() -> None:
    day, month = charts.short_labels(lambda d: f"{d.day} december {d.year}")
    assert day(date(2026, 12, 5)) == "5 dec"
    assert month(date(2026, 12, 1)) == "dec"
    assert month(date(2027, 1, 1)) == "dec 2027"  # January carries the year


# -- the poll log per day ---------------------------------------------------------------------


def test_daily_poll_counts_count_polls_failures_and_new_items_per_local_day(
    storage: Storage,
) -> None:
    tz = ZoneInfo("Europe/Stockholm")
    at = datetime(2026, 11, 2, 22, 30, tzinfo=UTC)  # 23:30 in Stockholm: still 2 November
    storage.record_not_modified("esf", PollResult("esf", PollStatus.OK, new=3), at, (None, None))
    later = at + timedelta(hours=1)  # 00:30 on 3 November
    storage.record_not_modified("esf", PollResult("esf", PollStatus.OK, new=1), later, (None, None))
    err = SourceError("http_500", "boom")
    result = PollResult("esf", PollStatus.ERROR, error=err)
    storage.record_failure("esf", err, result, later + timedelta(hours=2), None)
    other = PollResult("nyheter", PollStatus.ERROR, error=err)
    storage.record_failure("nyheter", err, other, later, None)  # another source
    old = at - timedelta(days=40)
    storage.record_not_modified("esf", PollResult("esf", PollStatus.OK, new=9), old, (None, None))
    counts = storage.daily_poll_counts("esf", at - timedelta(days=30), tz)
    assert counts == {
        date(2026, 11, 2): charts_counts(1, 0, 3),
        date(2026, 11, 3): charts_counts(2, 1, 1),
    }
    assert storage.daily_poll_counts("unknown", old, tz) == {}


def charts_counts(polls: int, failures: int, new: int) -> Any:
    from watcher.storage.sources import DailyPolls

    return DailyPolls(polls=polls, failures=failures, new=new)


# -- on the pages -----------------------------------------------------------------------------


@pytest.fixture
def calls(web_app: App) -> App:
    seed(
        web_app,
        "esf",
        [
            raw(
                "k1",
                "Utlysning: kompetensförsörjning i Västsverige",
                opening="2026-10-01",
                deadlines=("2026-11-20",),
                status="open",
            ),
            raw(
                "k2",
                "Erasmus+ call for proposals: school education",
                opening="2026-11-15",
                deadlines=("2026-12-10", "2027-03-01"),
                status="forthcoming",
            ),
        ],
    )
    return web_app


def svg_of(html: str, css: str) -> ET.Element:
    m = re.search(rf'<svg class="chart {css}".*?</svg>', html, re.S)
    assert m, f"no {css} chart on the page"
    return parse(m.group(0))


def test_the_deadline_page_shows_the_timeline_and_its_table(
    calls: App, client: httpx.Client
) -> None:
    page = client.get("/deadlines", params={"weeks": 26}).text
    root = svg_of(page, "timeline")
    assert root.get("aria-label") == (
        "Öppna och kommande utlysningar: från öppning till sista ansökningsdag"
    )
    assert "EU:s fonder och program" in texts(root, "group")
    assert "Utlysning: kompetensförsörjning i Västsverige" in texts(root, "call")
    assert len(rects(root, "bar-open")) >= 1 and len(rects(root, "bar-forthcoming")) >= 1
    table = page.split('<details class="chart-data">', 1)[1].split("</details>", 1)[0]
    assert '<a href="/items/' in table and "Erasmus+ call for proposals" in table
    assert "10 december 2026, 1 mars 2027" in table  # both deadlines
    assert "1 oktober 2026" in table  # the opening
    # The week list stays below the chart.
    assert page.index('class="chart timeline"') < page.index('class="week"')
    en = client.get("/deadlines", params={"weeks": 26, "lang": "en"}).text
    assert svg_of(en, "timeline").get("aria-label") == (
        "Open and forthcoming calls: from opening to deadline"
    )


def test_no_open_calls_means_no_timeline(web_app: App, client: httpx.Client) -> None:
    page = client.get("/deadlines").text
    assert "<svg" not in page and "chart-data" not in page


def test_the_source_page_shows_30_days_of_polls_and_their_table(
    calls: App, admin: httpx.Client
) -> None:
    err = SourceError("http_500", "Serverfel")
    now = calls.now()
    calls.storage.record_failure(
        "esf", err, PollResult("esf", PollStatus.ERROR, error=err), now, None
    )
    page = admin.get("/admin/sources/esf").text
    root = svg_of(page, "activity")
    label = root.get("aria-label") or ""
    assert "30 dagarna: 2 hämtningar, 1 misslyckade, 2 nya poster" in label
    assert len(rects(root, "hit")) == 30
    table = page.split('<details class="chart-data">', 1)[1].split("</details>", 1)[0]
    assert table.count("<tr>") == 31  # the heading and 30 days
    today = now.astimezone(calls.config.tz)
    assert f"<td>{today.day} november 2026</td>" in table
    assert '<td class="num">2</td><td class="num">1</td><td class="num">2</td>' in table
    # A new source has no chart.
    assert "<svg" not in admin.get("/admin/sources/new", params={"kind": "rss"}).text
