"""Error pages and the exception handlers behind them.

An HTML error page says what went wrong in general terms and never echoes the request (its
path or parameters) back; the JSON API and feeds get FastAPI's JSON answers. A database
that is down is a 503 page, not a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from watcher.exceptions import StorageError
from watcher.web.render import render

log = logging.getLogger(__name__)

_HTML_PREFIXES = ("/items", "/deadlines", "/subscribe", "/lang", "/admin", "/static")


def wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith("/api"):
        return False
    if path == "/" or path.startswith(_HTML_PREFIXES):
        return True
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status: int, headers: Mapping[str, str] | None = None) -> Response:
    """An error page that says what went wrong in general terms, and never echoes the
    request (its path or parameters) back."""
    try:
        return render(
            request, "error.html", {"status": status}, status_code=status, headers=headers
        )
    except Exception:  # the error page itself failed (database down …): plain text
        log.exception("the error page could not be rendered")
        return Response(f"Error {status}", status_code=status, media_type="text/plain")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not wants_html(request):
        return await http_exception_handler(request, exc)
    return error_page(request, exc.status_code, getattr(exc, "headers", None))


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not wants_html(request):
        return await request_validation_exception_handler(request, exc)
    return error_page(request, 400)


async def storage_error(request: Request, exc: Exception) -> Response:
    log.error("database error on %s: %s", request.url.path, exc)
    if not wants_html(request):
        return Response(
            '{"detail":"the database is not available"}',
            status_code=503,
            media_type="application/json",
        )
    return error_page(request, 503)


def install(web: FastAPI) -> None:
    """The error pages: HTTP errors, invalid requests, database failures."""
    web.add_exception_handler(StarletteHTTPException, http_error)
    web.add_exception_handler(RequestValidationError, validation_error)
    web.add_exception_handler(StorageError, storage_error)
