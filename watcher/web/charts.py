"""Charts drawn on the server as SVG: data in, markup out. Pure (no I/O, no clock: ``today``
is a parameter), and every text in the markup is escaped.

Two charts:

- ``activity_chart``: a source's last days, one column a day, in two panels over one time
  axis: polls (grey, the failed part red on top) and new items (green).
- ``timeline_chart``: calls as bars from opening to deadline on a time axis starting today,
  grouped (by area), green for open, amber for forthcoming; a call opened before the axis
  starts is drawn from its left edge with an arrow; later deadlines are diamonds.

The pictures scale with the page (a ``viewBox`` and ``width: 100%`` in the stylesheet), so
they fit a phone; their words come from the caller in the page's language, and every chart
has a name (``role="img"``, ``aria-label`` and ``<title>``). The numbers behind each chart
are the page's business: it shows them as a table beside the picture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

WIDTH = 400  # user units; the picture scales to the page's width
FONT = 12
DayLabel = Callable[[date], str]


def _iso_day(d: date) -> str:
    return f"{d.day}/{d.month}"


def _num(v: float) -> str:
    """A coordinate as short text: 12, 12.5."""
    r = round(v, 1)
    return str(int(r)) if r == int(r) else str(r)


def nice_max(value: int) -> int:
    """The top of an axis for counts up to ``value``: 1, 2, 5, 10, 20, 50 … (at least 1)."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if top * step >= value:
                return top * step
        top *= 10


def _svg(height: float, label: str, body: list[str], css: str) -> Markup:
    name = escape(label)
    return Markup(
        f'<svg class="chart {css}" viewBox="0 0 {WIDTH} {_num(height)}" '
        f'width="{WIDTH}" height="{_num(height)}" font-size="{FONT}" '
        f'role="img" aria-label="{name}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{name}</title>{''.join(body)}</svg>"
    )


# -- a source's activity ----------------------------------------------------------------------


@dataclass(frozen=True)
class DayActivity:
    """One day of a source: polls, the failed ones among them, new items."""

    day: date
    polls: int = 0
    failures: int = 0
    new: int = 0


@dataclass(frozen=True)
class ActivityText:
    """The activity chart's words. ``day`` is a ``str.format`` template for a column's
    tooltip with ``{day}``, ``{polls}``, ``{failures}`` and ``{new}``."""

    title: str
    polls: str
    failures: str
    new: str
    day: str


A_LEFT, A_RIGHT = 30, 4
PANEL_POLLS, PANEL_NEW = 80, 50


def activity_chart(
    days: Sequence[DayActivity], text: ActivityText, day_label: DayLabel = _iso_day
) -> Markup:
    """Two bar panels over ``days`` (oldest first, one entry a day); empty markup when
    there are no days."""
    if not days:
        return Markup("")
    plot = WIDTH - A_LEFT - A_RIGHT
    step = plot / len(days)
    bar = max(1.0, step * 0.75)
    top_polls = nice_max(max(d.polls for d in days))
    top_new = nice_max(max(d.new for d in days))
    y_polls = 20.0  # below the legend
    y_new = y_polls + PANEL_POLLS + 26
    axis_y = y_new + PANEL_NEW
    height = axis_y + 18
    body: list[str] = [
        # The legend: what each colour is.
        _legend(A_LEFT, 10, "bar-ok", text.polls),
        _legend(A_LEFT + 8 + 7 * len(text.polls) + 14, 10, "bar-error", text.failures),
        f'<text class="panel-label" x="{A_LEFT}" y="{_num(y_new - 8)}">'
        f'<tspan class="key-new">■</tspan> {escape(text.new)}</text>',
    ]
    for y0, panel, top in ((y_polls, PANEL_POLLS, top_polls), (y_new, PANEL_NEW, top_new)):
        body.append(_y_axis(y0, panel, top))
    for i, d in enumerate(days):
        x = A_LEFT + i * step + (step - bar) / 2
        tip = escape(
            text.day.format(day=day_label(d.day), polls=d.polls, failures=d.failures, new=d.new)
        )
        parts = [f"<title>{tip}</title>"]
        ok = d.polls - d.failures
        h_ok = PANEL_POLLS * ok / top_polls
        h_bad = PANEL_POLLS * d.failures / top_polls
        base = y_polls + PANEL_POLLS
        if ok:
            parts.append(_rect("bar-ok", x, base - h_ok, bar, h_ok))
        if d.failures:
            parts.append(_rect("bar-error", x, base - h_ok - h_bad, bar, h_bad))
        if d.new:
            h_new = PANEL_NEW * d.new / top_new
            parts.append(_rect("bar-new", x, y_new + PANEL_NEW - h_new, bar, h_new))
        # The whole column answers the tooltip, also on a day without polls.
        parts.append(_rect("hit", A_LEFT + i * step, y_polls, step, axis_y - y_polls))
        body.append(f'<g class="day">{"".join(parts)}</g>')
    # Date labels: the last day and every seventh before it.
    for i in range(len(days) - 1, -1, -7):
        x = A_LEFT + i * step + step / 2
        anchor = "end" if i == len(days) - 1 else "middle"
        body.append(
            f'<text class="tick" x="{_num(x)}" y="{_num(axis_y + 14)}" '
            f'text-anchor="{anchor}">{escape(day_label(days[i].day))}</text>'
        )
    return _svg(height, text.title, body, "activity")


def _legend(x: float, y: float, css: str, label: str) -> str:
    return (
        f'<rect class="{css}" x="{x}" y="{y - 8}" width="8" height="8"/>'
        f'<text x="{x + 11}" y="{y}">{escape(label)}</text>'
    )


def _rect(css: str, x: float, y: float, w: float, h: float) -> str:
    return f'<rect class="{css}" x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}"/>'


def _y_axis(y0: float, height: float, top: int) -> str:
    """A panel's frame: the baseline, a light line at the top value, the two labels."""
    base = y0 + height
    right = WIDTH - A_RIGHT
    return (
        f'<line class="grid" x1="{A_LEFT}" x2="{right}" y1="{_num(y0)}" y2="{_num(y0)}"/>'
        f'<line class="axis" x1="{A_LEFT}" x2="{right}" y1="{_num(base)}" y2="{_num(base)}"/>'
        f'<text class="tick" x="{A_LEFT - 4}" y="{_num(y0 + 4)}" text-anchor="end">{top}</text>'
        f'<text class="tick" x="{A_LEFT - 4}" y="{_num(base)}" text-anchor="end">0</text>'
    )


# -- the deadline timeline --------------------------------------------------------------------


@dataclass(frozen=True)
class CallSpan:
    """One call on the timeline: open (or forthcoming) from ``opening`` (None: not known)
    to ``deadline``; ``later`` are its further deadlines."""

    label: str
    deadline: date
    opening: date | None = None
    status: str | None = None  # "open", "forthcoming"
    later: tuple[date, ...] = ()


@dataclass(frozen=True)
class TimelineText:
    """The timeline's words. ``bar`` is a ``str.format`` template for a bar's tooltip with
    ``{label}``, ``{opening}`` and ``{deadline}``; ``unknown`` stands for a missing opening."""

    title: str
    today: str
    bar: str
    unknown: str


T_SIDE = 4
T_AXIS = 22  # the tick labels at the top
T_GROUP = 24  # a group's heading
T_ROW = 32  # a call: its label, then its bar
T_BAR = 10
LABEL_CHARS = 46  # of a call's name on its row (the whole name is in the tooltip and table)


def timeline_chart(
    groups: Sequence[tuple[str, Sequence[CallSpan]]],
    start: date,
    end: date,
    text: TimelineText,
    day_label: DayLabel = _iso_day,
    month_label: DayLabel | None = None,
) -> Markup:
    """Bars from opening to deadline on the axis ``start`` (today) … ``end``, a heading
    per group; empty markup when no group has a call."""
    groups = [(name, spans) for name, spans in groups if spans]
    if not groups:
        return Markup("")
    end = max(end, start + timedelta(days=1))
    span_days = (end - start).days
    plot = WIDTH - 2 * T_SIDE

    def x_of(d: date) -> float:
        return T_SIDE + plot * min(max((d - start).days, 0), span_days) / span_days

    height = T_AXIS + sum(T_GROUP + T_ROW * len(spans) for _n, spans in groups) + 6
    body: list[str] = []
    for tick, label in ticks(start, end, day_label, month_label):
        x = x_of(tick)
        # A label starts at its line, so it never reaches back over "today".
        right = x > WIDTH - 40
        body.append(
            f'<line class="grid" x1="{_num(x)}" x2="{_num(x)}" y1="{T_AXIS - 6}" '
            f'y2="{_num(height - 4)}"/>'
            f'<text class="tick" x="{_num(x - 3 if right else x + 3)}" y="{T_AXIS - 10}" '
            f'text-anchor="{"end" if right else "start"}">'
            f"{escape(label)}</text>"
        )
    body.append(
        f'<line class="today" x1="{T_SIDE}" x2="{T_SIDE}" y1="{T_AXIS - 6}" '
        f'y2="{_num(height - 4)}"/>'
        f'<text class="tick today-label" x="{T_SIDE}" y="{T_AXIS - 10}">{escape(text.today)}</text>'
    )
    y = float(T_AXIS)
    for name, spans in groups:
        body.append(f'<text class="group" x="{T_SIDE}" y="{_num(y + 17)}">{escape(name)}</text>')
        y += T_GROUP
        for s in spans:
            body.append(_call_row(s, y, x_of, start, text, day_label))
            y += T_ROW
    return _svg(height, text.title, body, "timeline")


def _call_row(
    s: CallSpan,
    y: float,
    x_of: Callable[[date], float],
    start: date,
    text: TimelineText,
    day_label: DayLabel,
) -> str:
    label = s.label if len(s.label) <= LABEL_CHARS else s.label[: LABEL_CHARS - 1] + "…"
    opened_before = s.opening is None or s.opening < start
    x0 = x_of(s.opening) if s.opening is not None else x_of(start)
    x1 = max(x_of(s.deadline), x0 + 2)
    bar_y = y + 17
    css = "bar-forthcoming" if s.status == "forthcoming" else "bar-open"
    tip = text.bar.format(
        label=s.label,
        opening=day_label(s.opening) if s.opening else text.unknown,
        deadline=day_label(s.deadline),
    )
    parts = [
        f"<title>{escape(tip)}</title>",
        f'<text class="call" x="{T_SIDE + 2}" y="{_num(y + 12)}" translate="no">'
        f"{escape(label)}</text>",
        f'<text class="due" x="{WIDTH - T_SIDE}" y="{_num(y + 12)}" text-anchor="end">'
        f"{escape(day_label(s.deadline))}</text>",
        _rect(css, x0, bar_y, x1 - x0, T_BAR),
        _rect("deadline", x1 - 2, bar_y - 2, 2, T_BAR + 4),
    ]
    if opened_before:  # open since before the axis starts: an arrow to the left
        mid = bar_y + T_BAR / 2
        parts.append(
            f'<path class="{css}" d="M{_num(x0)} {_num(bar_y - 2)} '
            f'L{_num(x0 - 4)} {_num(mid)} L{_num(x0)} {_num(bar_y + T_BAR + 2)}Z"/>'
        )
    for d in s.later:
        cx, cy = x_of(d), bar_y + T_BAR / 2
        parts.append(
            f'<path class="later" d="M{_num(cx)} {_num(cy - 5)} L{_num(cx + 5)} {_num(cy)} '
            f'L{_num(cx)} {_num(cy + 5)} L{_num(cx - 5)} {_num(cy)}Z"/>'
        )
    return f'<g class="span">{"".join(parts)}</g>'


def ticks(
    start: date, end: date, day_label: DayLabel = _iso_day, month_label: DayLabel | None = None
) -> list[tuple[date, str]]:
    """The time axis's marks: the first of each month over a span of more than nine weeks
    (labelled by ``month_label``), else each Monday (``day_label``); never closer than
    the labels' width allows, and never the start itself (that is "today")."""
    out: list[tuple[date, str]] = []
    if (end - start).days > 63:
        d = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        label = month_label or (lambda m: f"{m.month}/{m.year % 100:02d}")
        every = max(1, ((end - start).days // 31) // 8 + 1)  # at most about 8 labels
        n = 0
        while d <= end:
            if n % every == 0:
                out.append((d, label(d)))
            n += 1
            d = date(d.year + d.month // 12, d.month % 12 + 1, 1)
    else:
        d = start + timedelta(days=(7 - start.weekday()) % 7 or 7)
        while d <= end:
            out.append((d, day_label(d)))
            d += timedelta(days=7)
    # Too near today's mark, a label would overlap it.
    near = max(1, (end - start).days // 9)
    return [(d, lab) for d, lab in out if (d - start).days >= near]


def short_labels(full_day: DayLabel) -> tuple[DayLabel, DayLabel]:
    """Axis labels made from a formatter of whole dates ("5 december 2026", the page's
    language): the day as "5 dec", the month as "dec" ("jan 2027" for January)."""

    def day(d: date) -> str:
        number, month, *_ = full_day(d).split()
        return f"{number} {month[:3]}"

    def month(d: date) -> str:
        name = full_day(d).split()[1][:3]
        return f"{name} {d.year}" if d.month == 1 else name

    return day, month
