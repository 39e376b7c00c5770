"""The admin's "Händelser": what the admin was told (``notifications.alerts``), newest
first. An open problem shows as one; a resolved one turns neutral, with when it was
resolved. Only reads."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from notifications.alerts import KINDS
from watcher.web.admin.access import admin_router
from watcher.web.render import app_of, render

router = admin_router()


@router.get("/events", response_class=HTMLResponse)
def events(request: Request) -> HTMLResponse:
    """The latest 300 events (of one kind with ``?kind=``), and how their sending went."""
    app = app_of(request)
    kind = request.query_params.get("kind") or None
    if kind not in KINDS:
        kind = None
    cfg = app.config
    return render(
        request,
        "admin/events.html",
        {
            "events": app.storage.admin_events(300, kind=kind),
            "kinds": KINDS,
            "kind": kind or "",
            "source_names": {s.id: s.name for s in cfg.sources},
            "network_names": {n.id: n.name for n in cfg.networks},
            "targets": len(cfg.admin.alert_emails) + len(cfg.admin.alert_urls),
        },
    )
