"""The admin's networks: list, add and edit, delete, and the preview of a network's next
digest (the real email in a sandboxed frame, and its text part; nothing is sent or
recorded). A save goes through ``watcher.editing.ConfigEditor``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from notifications.delivery import run_digests
from notifications.digest import Digest, build_digest
from notifications.render import RenderedDigest, render_digest
from watcher.app import App
from watcher.editing import ConfigEditor
from watcher.exceptions import StorageError
from watcher.storage.deliveries import DeliveryStore
from watcher.web.admin.access import admin_router, form_data, redirect, require_admin, session_of
from watcher.web.admin.entries import delete_entry, existing_entry, refuse_form, save_entry
from watcher.web.admin.forms import NetworkForm
from watcher.web.render import app_of, gettext_for, render, request_lang

router = admin_router()

# The digest preview's frame: the email's HTML with its own inline styles, and nothing
# else (no scripts, no requests, no navigation), framed by the admin page only.
PREVIEW_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}


@router.get("/networks", response_class=HTMLResponse)
def networks_list(request: Request) -> HTMLResponse:
    app = app_of(request)
    try:  # digests missed while no process ran (notifications/schedule.py)
        plans = DeliveryStore(app.storage).digest_plans()
    except StorageError:
        plans = {}
    missed = {k: p for k, p in plans.items() if p.recent_miss(app.now())}
    last_sent: dict[str, Any] = {}
    try:
        store = DeliveryStore(app.storage)
        for net in app.config.networks:
            sent = [d for d in store.digests(net.id, limit=10) if d.counts.get("sent")]
            if sent:
                last_sent[net.id] = sent[0].created_at
    except StorageError:
        pass
    return render(
        request,
        "admin/networks.html",
        {
            "networks": app.config.networks,
            "missed": missed,
            "plans": plans,
            "last_sent": last_sent,
        },
    )


@router.post("/networks/{network_id}/send")
async def network_send_now(
    request: Request, network_id: str, user: str = Depends(require_admin)
) -> Response:
    """ "Skicka nu": the network's next digest, now, through the same exactly-once run as
    the schedule (a digest already being built or sent by another process is left to it;
    nothing is sent twice)."""
    app = app_of(request)
    t = gettext_for(request)
    try:
        app.config.network(network_id)
    except KeyError:
        raise HTTPException(404) from None
    [outcome] = await run_in_threadpool(run_digests, app, [network_id])
    app.storage.audit(user, "network.send_now", network_id, outcome.as_json(), app.now())
    session = session_of(request)
    if outcome.errors:
        session.flash(
            t("Utskicket till {id} misslyckades: {e}", id=network_id, e="; ".join(outcome.errors)),
            "error",
        )
    elif outcome.skipped_reason:
        session.flash(
            t("Inget utskick till {id}: {why}.", id=network_id, why=outcome.skipped_reason)
        )
    else:
        session.flash(
            t(
                "Utskick till {id}: {sent} skickade, {failed} misslyckade, {deferred} försöks igen.",
                id=network_id,
                sent=outcome.sent,
                failed=outcome.failed,
                deferred=outcome.deferred,
            )
        )
    return redirect("/admin/networks")


def _render_network_form(
    request: Request,
    form: NetworkForm,
    *,
    new: bool,
    version: str,
    conflict: str | None = None,
    saved: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    app = app_of(request)
    fields = form.fields(gettext_for(request), request_lang(request), app.config.sources, new=new)
    return render(
        request,
        "admin/network_form.html",
        {
            "form": form,
            "new": new,
            "fields": fields,
            "errors": form.errors,
            "general": form.general,
            "version": version,
            "conflict": conflict,
            "saved": saved,
            "action": "/admin/networks/new" if new else f"/admin/networks/{form.entry['id']}",
        },
        status_code=status_code,
    )


@router.get("/networks/new", response_class=HTMLResponse)
def network_new(request: Request, user: str = Depends(require_admin)) -> HTMLResponse:
    cf = ConfigEditor(app_of(request), user).read()
    return _render_network_form(
        request, NetworkForm({"id": "", "name": ""}), new=True, version=cf.version
    )


@router.get("/networks/{network_id}", response_class=HTMLResponse)
def network_edit(
    request: Request, network_id: str, user: str = Depends(require_admin)
) -> HTMLResponse:
    editor = ConfigEditor(app_of(request), user)
    cf = editor.read()
    try:
        entry = editor.entry(cf, "networks", network_id)
    except KeyError:
        raise HTTPException(404) from None
    return _render_network_form(request, NetworkForm(entry), new=False, version=cf.version)


@router.post("/networks/new", response_class=HTMLResponse)
async def network_create(request: Request, user: str = Depends(require_admin)) -> Response:
    return await _network_submit(request, user, None)


@router.post("/networks/{network_id}", response_class=HTMLResponse)
async def network_update(
    request: Request, network_id: str, user: str = Depends(require_admin)
) -> Response:
    return await _network_submit(request, user, network_id)


async def _network_submit(request: Request, user: str, network_id: str | None) -> Response:
    """Save a network form; then its digest preview opens."""
    t = gettext_for(request)
    form_in = await form_data(request)
    new = network_id is None
    version = str(form_in.get("version", ""))
    editor = ConfigEditor(app_of(request), user)
    cf = editor.read()
    existing = existing_entry(editor, cf, "networks", network_id)
    form = NetworkForm.from_form(form_in, existing, t)
    nid = form.entry["id"]
    if new and nid and cf.index_of("networks", nid) is not None:
        form.errors.setdefault("id", []).append(
            t("Det finns redan ett nätverk med id {id}", id=nid)
        )
    again = functools.partial(_render_network_form, request, form, new=new)
    if form.errors:
        await run_in_threadpool(refuse_form, editor, "networks", form, network_id)
        return again(version=version, status_code=422)
    refused = await save_entry(
        request, editor, cf, "networks", form, existing=existing, version=version, render=again
    )
    if refused is not None:
        return refused
    session_of(request).flash(t("Nätverket {name} sparades.", name=form.entry["name"]))
    return redirect(f"/admin/networks/{nid}/digest")


@router.get("/networks/{network_id}/delete", response_class=HTMLResponse)
def network_delete_confirm(request: Request, network_id: str) -> HTMLResponse:
    try:
        net = app_of(request).config.network(network_id)
    except KeyError:
        raise HTTPException(404) from None
    return render(
        request, "admin/confirm_delete.html", {"what": "network", "entry": net, "count": 0}
    )


@router.post("/networks/{network_id}/delete")
async def network_delete(
    request: Request, network_id: str, user: str = Depends(require_admin)
) -> Response:
    t = gettext_for(request)
    return await delete_entry(
        request, user, "networks", network_id, t("Nätverket {id} togs bort.", id=network_id)
    )


def _digest_preview(app: App, network_id: str) -> tuple[Digest, RenderedDigest]:
    """The network's next digest as it would go out now, rendered. Only reads."""
    digest = build_digest(app, network_id, app.now())
    return digest, render_digest(digest, app.config.tz)


@router.get("/networks/{network_id}/digest", response_class=HTMLResponse)
async def network_digest(request: Request, network_id: str) -> HTMLResponse:
    """What the network's next digest would hold if it went out now (nothing is sent)."""
    app = app_of(request)
    try:
        net = app.config.network(network_id)
    except KeyError:
        raise HTTPException(404) from None
    digest, rendered = await run_in_threadpool(_digest_preview, app, network_id)
    return render(
        request,
        "admin/digest.html",
        {"network": net, "digest": digest, "rendered": rendered},
    )


@router.get("/networks/{network_id}/digest.html")
async def network_digest_html(request: Request, network_id: str) -> Response:
    """The digest's HTML part, for the preview's sandboxed frame: no scripts, no requests,
    only the email's own inline styles."""
    app = app_of(request)
    try:
        app.config.network(network_id)
    except KeyError:
        raise HTTPException(404) from None
    _digest, rendered = await run_in_threadpool(_digest_preview, app, network_id)
    html, _text = rendered.for_member("#unsubscribe-preview")
    return HTMLResponse(html, headers=PREVIEW_HEADERS)
