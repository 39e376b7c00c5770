"""The admin's subscribers: everyone who subscribed themselves at ``/prenumerera``, with
their choices; export one (JSON: everything kept about the person) or delete one (their
choices, own digests, deliveries and opt-outs go; the audit log keeps no address)."""

from __future__ import annotations

import json

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from notifications.subscriptions import describe
from watcher.web.admin.access import admin_router, redirect, require_admin, session_of
from watcher.web.render import app_of, gettext_for, render, request_lang

router = admin_router()


@router.get("/subscribers", response_class=HTMLResponse)
async def subscribers_page(request: Request) -> HTMLResponse:
    """Every subscriber and their choices."""
    app = app_of(request)
    lang = request_lang(request)
    people = await run_in_threadpool(app.storage.subscribers)
    rows = [
        (p, [(s, describe(s.choice, app.config, lang)) for s in p.subscriptions]) for p in people
    ]
    return render(
        request,
        "admin/subscribers.html",
        {"rows": rows, "allowed_domains": app.config.subscriptions.allowed_domains},
    )


@router.get("/subscribers/export")
async def subscriber_export(request: Request) -> Response:
    """One subscriber as JSON (``?address=``)."""
    app = app_of(request)
    person = await run_in_threadpool(
        app.storage.subscriber, request.query_params.get("address", "")
    )
    if person is None:
        return Response(status_code=404)
    return Response(
        json.dumps(person.as_json(), ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="subscriber.json"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/subscribers/delete")
async def subscriber_delete(request: Request, user: str = Depends(require_admin)) -> Response:
    """Delete a subscriber and everything of theirs."""
    app = app_of(request)
    form = await request.form()
    address = str(form.get("address", ""))
    deleted = await run_in_threadpool(app.storage.delete_subscriber, address)
    t = gettext_for(request)
    if deleted:
        await run_in_threadpool(app.storage.audit, user, "subscriber.delete", "", {}, app.now())
        session_of(request).flash(t("Prenumeranten och allt om personen är borttaget."))
    else:
        session_of(request).flash(t("Ingen prenumerant har den adressen."), "warning")
    return redirect("/admin/subscribers")
