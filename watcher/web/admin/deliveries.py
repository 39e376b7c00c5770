"""The admin's delivery log: sent, failed, opted-out and pending deliveries, the opt-outs,
and re-queueing failed deliveries for the next digest run."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from notifications.labels import format_number
from watcher.storage.deliveries import DeliveryStore
from watcher.web.admin.access import admin_router, redirect, require_admin, session_of
from watcher.web.render import app_of, gettext_for, render, request_lang

router = admin_router()

STATUSES = ("sent", "failed", "opted_out", "pending", "sending", "cancelled")


@router.get("/deliveries", response_class=HTMLResponse)
def delivery_log(request: Request) -> HTMLResponse:
    """Sent, failed and opted-out deliveries; opt-outs."""
    app = app_of(request)
    store = DeliveryStore(app.storage)
    network = request.query_params.get("network") or None
    if network is not None and network not in {n.id for n in app.config.networks}:
        network = None
    status = request.query_params.get("status") or None
    if status not in STATUSES:
        status = None
    return render(
        request,
        "admin/deliveries.html",
        {
            "entries": store.delivery_log(network, status=status, limit=300),
            "optouts": store.optouts(network),
            "networks": app.config.networks,
            "network": network or "",
            "status": status or "",
        },
    )


@router.post("/deliveries/retry")
async def deliveries_retry(request: Request, user: str = Depends(require_admin)) -> Response:
    """Queue failed deliveries again; the next digest run sends them."""
    app = app_of(request)
    n = DeliveryStore(app.storage).retry_failed()
    app.storage.audit(user, "deliveries.retry", "", {"queued": n}, app.now())
    t = gettext_for(request)
    count = format_number(n, request_lang(request))
    session_of(request).flash(t("{n} misslyckade utskick köades igen.", n=count))
    return redirect("/admin/deliveries")
