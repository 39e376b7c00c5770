"""``/healthz``: is the service alive, can it reach its database, which sources fail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from watcher.exceptions import StorageError
from watcher.web.render import app_of

router = APIRouter()


@router.get("/healthz", tags=["health"])
def healthz(request: Request) -> JSONResponse:
    app = app_of(request)
    scheduler = request.app.state.scheduler
    body: dict[str, Any] = {"status": "ok"}
    try:
        app.storage.ping()
        states = app.storage.source_states()
        body["database"] = "ok"
    except StorageError as e:
        return JSONResponse({"status": "error", "database": str(e)[:200]}, status_code=503)
    enabled = [s.id for s in app.config.sources if s.enabled]
    failing = sorted(
        sid for sid in enabled if sid in states and states[sid].consecutive_failures > 0
    )
    body["sources"] = {"enabled": len(enabled), "failing": failing}
    body["scheduler"] = (
        "off" if scheduler is None else ("leader" if scheduler.leader else "standby")
    )
    if app.config_error is not None:
        body["config_error"] = str(app.config_error)
    return JSONResponse(body)
