"""The admin's sources: health list, add and edit (with a test fetch), switch on and off,
delete, poll now, release or silence held items.

A test fetch (``action=test``) parses and shows what the source gives without storing
anything (``watcher.preview``); a save goes through ``watcher.editing.ConfigEditor``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from notifications.labels import format_number
from sources import registry
from watcher.config import Config, SourceConfig
from watcher.editing import ConfigEditor
from watcher.exceptions import ConfigError, EditConflict
from watcher.preview import Preview, preview_source
from watcher.types import SourceState
from watcher.web import adapter_labels, charts
from watcher.web.admin.access import admin_router, form_data, redirect, require_admin, session_of
from watcher.web.admin.entries import (
    check_entry,
    delete_entry,
    existing_entry,
    refuse_form,
    save_entry,
)
from watcher.web.admin.forms import SourceForm
from watcher.web.render import Formatter, Gettext, app_of, gettext_for, render, request_lang

router = admin_router()


@dataclass(frozen=True)
class Bar:
    """One poll in the activity chart."""

    x: int
    height: int
    css: str
    title: str


CHART_HEIGHT = 24


def activity_bars(history: Sequence[Mapping[str, Any]], fmt: Formatter, t: Gettext) -> list[Bar]:
    """The last polls, oldest first: a tall red bar for a failure, a green bar as high as
    the new and updated items (log scale), a low grey bar for nothing new."""
    bars = []
    for i, h in enumerate(reversed(list(history))):
        status = h.get("status")
        changed = int(h.get("new") or 0) + int(h.get("updated") or 0)
        when = fmt.stamp(h.get("started_at"))
        if status == "error":
            height, css = CHART_HEIGHT, "bar-error"
            title = f"{when}: {t('fel')} {fmt.error(h.get('error_code'))}"
        elif status == "partial":
            height, css = CHART_HEIGHT // 2, "bar-partial"
            title = f"{when}: {t('delvis')} {fmt.error(h.get('error_code'))}"
        elif changed:
            height = min(CHART_HEIGHT, 6 + int(6 * math.log2(1 + changed)))
            css = "bar-new"
            title = f"{when}: {t('{n} nya eller ändrade', n=fmt.number(changed))}"
        else:
            height, css = 3, "bar-quiet"
            title = f"{when}: {t('inget nytt')}"
        bars.append(Bar(i * 5, height, css, title))
    return bars


@router.get("/sources", response_class=HTMLResponse)
def sources_list(request: Request) -> HTMLResponse:
    app = app_of(request)
    now = app.now()
    t = gettext_for(request)
    fmt = Formatter(request_lang(request), app.config.tz, now)
    states = app.storage.source_states()
    recent = app.storage.recent_item_counts(now - timedelta(days=30))
    held = app.storage.held_counts()
    query = source_query(request.query_params)
    rows = []
    for s in app.config.sources:
        state = states.get(s.id) or SourceState(source_id=s.id)
        if not query.keeps(s, state, held.get(s.id, 0)):
            continue
        history = app.storage.poll_history(s.id, 30)
        ok = sum(1 for h in history if h.get("status") != "error")
        rows.append(
            {
                "source": s,
                "state": state,
                "recent": recent.get(s.id, 0),
                "held": held.get(s.id, 0),
                "bars": activity_bars(history, fmt, t),
                "chart_label": t(
                    "Senaste {n} hämtningarna: {ok} lyckade, {bad} misslyckade",
                    n=len(history),
                    ok=ok,
                    bad=len(history) - ok,
                ),
            }
        )
    rows.sort(key=query.sort_key, reverse=query.sort in ("failures", "recent"))
    return render(
        request,
        "admin/sources.html",
        {
            "rows": rows,
            "kinds": registry.kinds(),
            "chart_height": CHART_HEIGHT,
            "query": query,
            "total": len(app.config.sources),
        },
    )


HEALTH_FILTERS = ("", "failing", "warning", "held", "disabled", "never")
SOURCE_SORTS = ("name", "failures", "recent", "last_success")


@dataclass(frozen=True)
class SourceQuery:
    """The source table's search, health filter and order (query parameters ``q``,
    ``health``, ``sort``): with dozens of sources the admin finds the one in trouble."""

    q: str = ""
    health: str = ""
    sort: str = "name"

    def keeps(self, s: SourceConfig, state: SourceState, held: int) -> bool:
        if self.q:
            hay = f"{s.id} {s.name} {s.kind} {s.url}".casefold()
            if not all(word in hay for word in self.q.casefold().split()):
                return False
        match self.health:
            case "failing":
                return state.consecutive_failures > 0
            case "warning":
                return bool(state.warning)
            case "held":
                return held > 0
            case "disabled":
                return not s.enabled
            case "never":
                return state.last_poll_at is None
        return True

    def sort_key(self, row: Mapping[str, Any]) -> Any:
        s, st = row["source"], row["state"]
        match self.sort:
            case "failures":
                return (
                    st.consecutive_failures,
                    st.last_error_at or datetime.min.replace(tzinfo=UTC),
                )
            case "recent":
                return row["recent"]
            case "last_success":
                return (
                    st.last_success_at is not None,
                    st.last_success_at or datetime.min.replace(tzinfo=UTC),
                )
        return s.name.casefold()


def source_query(params: Mapping[str, str]) -> SourceQuery:
    """The table's query from the request; unknown values fall back to the defaults."""
    health = params.get("health", "")
    sort = params.get("sort", "name")
    return SourceQuery(
        q=params.get("q", "").strip()[:100],
        health=health if health in HEALTH_FILTERS else "",
        sort=sort if sort in SOURCE_SORTS else "name",
    )


CHART_DAYS = 30


def activity_chart(request: Request, source_id: str) -> tuple[Markup, list[charts.DayActivity]]:
    """The source's last 30 days from the poll log: the chart and its numbers, a day a row
    (days without a poll included, as zeros)."""
    app = app_of(request)
    now = app.now()
    fmt = Formatter(request_lang(request), app.config.tz, now)
    t = gettext_for(request)
    today = fmt.local(now).date()
    first = today - timedelta(days=CHART_DAYS - 1)
    since = datetime.combine(first, time(), app.config.tz)
    counts = app.storage.daily_poll_counts(source_id, since, app.config.tz)
    days = []
    for i in range(CHART_DAYS):
        day = first + timedelta(days=i)
        c = counts.get(day)
        days.append(
            charts.DayActivity(day, c.polls, c.failures, c.new) if c else charts.DayActivity(day)
        )
    total, failed = sum(d.polls for d in days), sum(d.failures for d in days)
    text = charts.ActivityText(
        title=t(
            "Hämtningar, misslyckade hämtningar och nya poster per dag de senaste {n} dagarna: "
            "{polls} hämtningar, {failed} misslyckade, {new} nya poster",
            n=CHART_DAYS,
            polls=total,
            failed=failed,
            new=sum(d.new for d in days),
        ),
        polls=t("Hämtningar"),
        failures=t("misslyckade"),
        new=t("Nya poster"),
        day=t("{day}: {polls} hämtningar, {failures} misslyckade, {new} nya poster"),
    )
    day_label, _month = charts.short_labels(fmt.day)
    return charts.activity_chart(days, text, day_label), days


def _kind_help(kind: str, lang: str) -> str:
    """What the adapter kind does: its docstring in English, ``adapter_labels`` in Swedish."""
    try:
        english = registry.get(kind).help()
    except KeyError:
        return ""
    return (adapter_labels.kind_help(kind) or english) if lang == "sv" else english


def _render_source_form(
    request: Request,
    form: SourceForm,
    *,
    new: bool,
    version: str,
    preview: Preview | None = None,
    conflict: str | None = None,
    saved: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    t = gettext_for(request)
    common, options = form.fields(t, request_lang(request), new=new)
    app = app_of(request)
    history = [] if new else app.storage.poll_history(str(form.entry.get("id")), 10)
    chart, chart_days = (Markup(""), []) if new else activity_chart(request, str(form.entry["id"]))
    return render(
        request,
        "admin/source_form.html",
        {
            "form": form,
            "new": new,
            "kinds": registry.kinds(),
            "kind_help": _kind_help(form.kind, request_lang(request)),
            "common": common,
            "options": options,
            "errors": form.errors,
            "general": form.general,
            "version": version,
            "preview": preview,
            "conflict": conflict,
            "saved": saved,
            "history": history,
            "chart": chart,
            "chart_days": chart_days,
            "action": "/admin/sources/new" if new else f"/admin/sources/{form.entry['id']}",
        },
        status_code=status_code,
    )


@router.get("/sources/new", response_class=HTMLResponse)
def source_new(request: Request, user: str = Depends(require_admin)) -> HTMLResponse:
    kind = request.query_params.get("kind", "html")
    if kind not in registry.kinds():
        kind = "html"
    cf = ConfigEditor(app_of(request), user).read()
    entry = {"id": "", "name": "", "kind": kind, "url": "", "schedule": "6h"}
    return _render_source_form(request, SourceForm(kind, entry), new=True, version=cf.version)


@router.get("/sources/{source_id}", response_class=HTMLResponse)
def source_edit(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> HTMLResponse:
    editor = ConfigEditor(app_of(request), user)
    cf = editor.read()
    try:
        entry = editor.entry(cf, "sources", source_id)
    except KeyError:
        raise HTTPException(404) from None
    kind = request.query_params.get("kind")
    form = SourceForm.from_entry(entry)
    if kind and kind != form.kind and kind in registry.kinds():
        form = SourceForm(kind, {**entry, "kind": kind, "options": {}})
    return _render_source_form(request, form, new=False, version=cf.version)


@router.post("/sources/new", response_class=HTMLResponse)
async def source_create(request: Request, user: str = Depends(require_admin)) -> Response:
    return await _source_submit(request, user, None)


@router.post("/sources/{source_id}", response_class=HTMLResponse)
async def source_update(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    return await _source_submit(request, user, source_id)


async def _source_submit(request: Request, user: str, source_id: str | None) -> Response:
    """Test-fetch (``action=test``) or save (``action=save``) a source form."""
    app = app_of(request)
    t = gettext_for(request)
    form_in = await form_data(request)
    new = source_id is None
    version = str(form_in.get("version", ""))
    action = form_in.get("action", "save")
    kind = str(form_in.get("kind", "html"))
    if kind not in registry.kinds():
        raise HTTPException(400)
    editor = ConfigEditor(app, user)
    cf = editor.read()
    existing = existing_entry(editor, cf, "sources", source_id)
    form = SourceForm.from_form(form_in, kind, existing, t)
    sid = form.entry["id"]
    if new and sid and cf.index_of("sources", sid) is not None:
        form.errors.setdefault("id", []).append(t("Det finns redan en källa med id {id}", id=sid))
    again = functools.partial(_render_source_form, request, form, new=new)
    if action == "test":
        # A test fetch shows the validation's problems too, beside the form's own.
        cfg: Config | None = check_entry(request, editor, cf, "sources", form, None if new else sid)
        if form.errors or form.general or cfg is None:
            return again(version=version, status_code=422)
        preview = await preview_source(app, cfg.source(sid), http=app.http)
        return again(version=version, preview=preview)
    if form.errors:
        await run_in_threadpool(refuse_form, editor, "sources", form, source_id)
        return again(version=version, status_code=422)
    refused = await save_entry(
        request, editor, cf, "sources", form, existing=existing, version=version, render=again
    )
    if refused is not None:
        return refused
    session_of(request).flash(t("Källan {name} sparades.", name=form.entry["name"]))
    return redirect("/admin/sources")


@router.post("/sources/{source_id}/enabled")
async def source_enable(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    """Switch a source on or off (``enabled=1|0``: the intent, not a toggle)."""
    app = app_of(request)
    t = gettext_for(request)
    want = (await form_data(request)).get("enabled") == "1"
    editor = ConfigEditor(app, user)
    try:
        await run_in_threadpool(editor.set_enabled, "sources", source_id, want)
    except KeyError:
        raise HTTPException(404) from None
    except (ConfigError, EditConflict) as e:
        session_of(request).flash(t("Kunde inte spara: {error}", error=str(e)), "error")
        return redirect("/admin/sources")
    session_of(request).flash(
        t("Källan {id} är aktiv.", id=source_id)
        if want
        else t("Källan {id} är avstängd.", id=source_id)
    )
    return redirect("/admin/sources")


@router.get("/sources/{source_id}/delete", response_class=HTMLResponse)
def source_delete_confirm(request: Request, source_id: str) -> HTMLResponse:
    app = app_of(request)
    try:
        src = app.config.source(source_id)
    except KeyError:
        raise HTTPException(404) from None
    count = app.storage.source_state(source_id).item_count
    return render(
        request, "admin/confirm_delete.html", {"what": "source", "entry": src, "count": count}
    )


@router.post("/sources/{source_id}/delete")
async def source_delete(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    t = gettext_for(request)
    return await delete_entry(
        request,
        user,
        "sources",
        source_id,
        t("Källan {id} togs bort. Dess poster finns kvar.", id=source_id),
    )


@router.post("/sources/{source_id}/poll")
async def source_poll(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    """Poll one source now and report how it went."""
    app = app_of(request)
    t = gettext_for(request)
    try:
        app.config.source(source_id)
    except KeyError:
        raise HTTPException(404) from None
    [result] = await app.poll([source_id])
    app.storage.audit(user, "source.poll", source_id, result.as_dict(), app.now())
    session = session_of(request)
    if result.status.value == "skipped":
        session.flash(t("Hämtning av {id} pågår redan; försök igen om en stund.", id=source_id))
    elif result.status.value == "partial" and result.error is not None:
        session.flash(
            t(
                "{id}: {new} nya, {updated} uppdaterade, {unchanged} oförändrade; "
                "{n} ofullständiga ({code}), de läses igen vid nästa hämtning.",
                id=source_id,
                new=result.new,
                updated=result.updated,
                unchanged=result.unchanged,
                n=result.incomplete,
                code=result.error.code,
            ),
            "warning",
        )
    elif result.error is not None:
        session.flash(
            t(
                "Hämtningen av {id} misslyckades: {code}: {message}",
                id=source_id,
                code=result.error.code,
                message=result.error.message,
            ),
            "error",
        )
    elif result.status.value == "not_modified":
        session.flash(t("{id}: inte ändrad sedan förra hämtningen.", id=source_id))
    else:
        session.flash(
            t(
                "{id}: {new} nya, {updated} uppdaterade, {unchanged} oförändrade.",
                id=source_id,
                new=result.new,
                updated=result.updated,
                unchanged=result.unchanged,
            )
        )
    if result.announced is not None:
        session.flash(
            t(
                "{id}: första hämtningen. {announced} öppna eller kommande utlysningar "
                "kommer med i nästa nyhetsbrev; {baselined} poster sparades tyst som "
                "utgångsläge.",
                id=source_id,
                announced=result.announced,
                baselined=result.baselined,
            )
        )
    for w in result.warnings:
        session.flash(f"{source_id}: {w}", "warning")
    return redirect("/admin/sources")


@router.post("/sources/{source_id}/held")
async def source_release_held(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    """Release a source's held flood into the next digests, or mark it silent."""
    app = app_of(request)
    t = gettext_for(request)
    discard = (await form_data(request)).get("action") == "discard"
    n = app.storage.release_held(source_id, discard=discard, now=app.now())
    app.storage.audit(
        user,
        "source.discard_held" if discard else "source.release_held",
        source_id,
        {"items": n},
        app.now(),
    )
    count = format_number(n, request_lang(request))
    session_of(request).flash(
        t("{n} hållna poster markerades som tysta.", n=count)
        if discard
        else t("{n} hållna poster släpps till nästa utskick.", n=count)
    )
    return redirect("/admin/sources")
