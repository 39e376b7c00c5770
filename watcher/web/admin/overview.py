"""The admin's front page (what needs attention) and the audit log."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from watcher.web.admin.access import admin_router
from watcher.web.render import app_of, render

router = admin_router()


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    """Failing and warned sources, held items, the rules' error, the latest changes."""
    app = app_of(request)
    states = app.storage.source_states()
    enabled = [s for s in app.config.sources if s.enabled]
    failing = [s for s in enabled if s.id in states and states[s.id].consecutive_failures > 0]
    warned = [s for s in enabled if s.id in states and states[s.id].warning]
    return render(
        request,
        "admin/dashboard.html",
        {
            "sources": app.config.sources,
            "enabled": enabled,
            "failing": failing,
            "warned": warned,
            "states": states,
            "held": app.storage.held_counts(),
            "items": app.storage.count_items(),
            "networks": app.config.networks,
            "rules_error": app.classifier.error,
            "audit": app.storage.audit_entries(10),
        },
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_log(request: Request) -> HTMLResponse:
    return render(
        request, "admin/audit.html", {"entries": app_of(request).storage.audit_entries(500)}
    )
