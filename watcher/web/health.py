"""``/healthz``: is the service alive, can it reach its database, which sources fail.

Public, so it says what state things are in, with error codes, never the text behind them
(a database error's text can carry SQL and the driver's words, a config error the file's
contents): that is for the log and the admin's pages."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from watcher.exceptions import StorageError
from watcher.web.render import app_of

log = logging.getLogger(__name__)

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
        log.error("healthz: the database is not available: %s", e)
        return JSONResponse(
            {"status": "error", "database": "error", "code": e.code}, status_code=503
        )
    enabled = [s.id for s in app.config.sources if s.enabled]
    failing = sorted(
        sid for sid in enabled if sid in states and states[sid].consecutive_failures > 0
    )
    body["sources"] = {"enabled": len(enabled), "failing": failing}
    body["scheduler"] = (
        "off" if scheduler is None else ("leader" if scheduler.leader else "standby")
    )
    # config.toml's problems are on the admin's pages; here only that there are some.
    body["config"] = "ok" if app.config_error is None else "error"
    return JSONResponse(body)
