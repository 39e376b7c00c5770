"""What every admin room needs: the session, the login check, CSRF, and its router.

Every route but the login page needs a logged-in session (``require_admin``); every POST
needs the session's CSRF token and must come from the service's own origin
(``csrf_protect``). Both are dependencies of the router each room gets from
``admin_router``, so no route can forget them; the login room's ``login_router`` has the
CSRF and origin check only.

The rooms import this module, not the package: the package's ``__init__`` imports the
rooms to put their routes together, so a room importing it would be an import cycle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from watcher.exceptions import StorageError
from watcher.web import auth
from watcher.web.render import app_of

log = logging.getLogger(__name__)

LOGIN_LIMIT_PER_ADDRESS = 5
LOGIN_LIMIT_PER_USER = 20
LOGIN_WINDOW = timedelta(minutes=15)


class NotLoggedIn(Exception):
    """Raised by ``require_admin``; answered with a redirect to the login page (GET) or
    403 (anything else)."""


@dataclass
class AdminState:
    """Per web application: the login limiters and the session codec."""

    by_address: auth.LoginLimiter = field(
        default_factory=lambda: auth.LoginLimiter(LOGIN_LIMIT_PER_ADDRESS, LOGIN_WINDOW)
    )
    by_user: auth.LoginLimiter = field(
        default_factory=lambda: auth.LoginLimiter(LOGIN_LIMIT_PER_USER, LOGIN_WINDOW)
    )
    codec: auth.SessionCodec | None = None


def session_of(request: Request) -> auth.Session:
    """The request's admin session (set by ``auth.SessionMiddleware``)."""
    session = getattr(request.state, "session", None)
    if session is None:  # the session middleware is missing: refuse rather than guess
        raise HTTPException(403)
    return cast(auth.Session, session)


def require_admin(request: Request) -> str:
    """The logged-in admin's name, or NotLoggedIn."""
    user = session_of(request).user
    if user is None:
        raise NotLoggedIn()
    return user


async def form_data(request: Request) -> FormData:
    """The request's form, read once (the CSRF check and the route both need it)."""
    cached = getattr(request.state, "form", None)
    if cached is None:
        cached = await request.form(max_files=0, max_fields=2000)
        request.state.form = cached
    return cast(FormData, cached)


async def csrf_protect(request: Request) -> None:
    """Every state-changing request comes from this service's own pages (``Origin``, or
    ``Referer`` without it: refused with 403 and an audit entry otherwise) and carries the
    session's CSRF token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    await origin_protect(request)
    form = await form_data(request)
    token = form.get("csrf_token")
    if not auth.check_csrf(session_of(request), token if isinstance(token, str) else None):
        log.warning("refused %s %s: missing or wrong CSRF token", request.method, request.url.path)
        raise HTTPException(403)


async def origin_protect(request: Request) -> None:
    """403, recorded in the audit log, for a request that says it comes from another site:
    the token alone could have been taken by a page there (an injected form, a framed
    page, a leaked token)."""
    app = app_of(request)
    origin, referer = request.headers.get("origin"), request.headers.get("referer")
    allowed = auth.own_origins(
        request.url.scheme, request.headers.get("host"), app.config.watcher.base_url
    )
    refused_by = auth.check_origin(origin, referer, allowed)
    if refused_by is None:
        return
    log.warning(
        "refused %s %s: %s %r is not this service's origin",
        request.method,
        request.url.path,
        refused_by,
        origin if refused_by == "origin" else referer,
    )
    details = {
        "method": request.method,
        "refused_by": refused_by,
        "origin": (origin or "")[:200],
        # The other site's page only: its path and query may carry what is not ours to keep.
        "referer": (auth.origin_of(referer) or "?") if referer else "",
        "address": client_address(request),
    }
    try:
        await run_in_threadpool(
            app.storage.audit,
            session_of(request).user or "?",
            "admin.origin_refused",
            request.url.path,
            details,
            app.now(),
        )
    except StorageError as e:  # refused all the same
        log.error("the refused request is not in the audit log: %s", e)
    raise HTTPException(403)


def admin_router() -> APIRouter:
    """A room's router: every route needs a login, every POST the CSRF token."""
    return APIRouter(
        include_in_schema=False, dependencies=[Depends(require_admin), Depends(csrf_protect)]
    )


def login_router() -> APIRouter:
    """The login room's router: no login needed, but every POST needs the CSRF token (the
    login form too, against login CSRF)."""
    return APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


def redirect(url: str) -> RedirectResponse:
    """After a POST: see the page at ``url`` (303, so the browser GETs it)."""
    return RedirectResponse(url, status_code=303)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
