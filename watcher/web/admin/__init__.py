"""The admin at ``/admin``: sources, networks and rules, edited safely.

Every route but the login page needs a logged-in session (``require_admin``, whose record
the database keeps); every POST needs the session's CSRF token and this service's own
origin (``csrf_protect``): both are dependencies of each room's
router (``access.admin_router``), so no route can forget them. A form is validated the way
``config.toml`` is (the whole edited document), and each problem is shown on the field its
key path names. A valid edit is written, put in force and recorded in the audit log by the
editing service (``watcher.editing``, shared with the CLI): atomically, and refused when
the file changed since the form was opened, with the admin's input kept on the page.

Rules: the admin edits the files listed in ``[rules] paths`` (or creates
``rules/local.toml`` next to ``config.toml`` and lists it); a save first shows the back-test
(which stored items gain or lose which tags), then writes the file, reloads the rules and
re-tags the stored items.

The rooms, one concern each: ``login``, ``overview`` (front page, audit log), ``sources``,
``networks`` (and the digest preview), ``deliveries``, ``events`` (the admin's alerts),
``rules``; ``forms`` builds and reads the source and network forms, ``entries`` turns the
editing service's answers into pages, ``access`` holds what every room needs. No GET writes
to the database.
"""

from __future__ import annotations

from types import ModuleType
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.types import Scope

from watcher.web import auth
from watcher.web.admin import (
    corrections,
    deliveries,
    events,
    login,
    networks,
    overview,
    rules,
    sources,
    subscribers,
)
from watcher.web.admin.access import (
    AdminState,
    NotLoggedIn,
    csrf_protect,
    redirect,
    require_admin,
)
from watcher.web.errors import error_page

__all__ = [
    "AdminState",
    "NotLoggedIn",
    "csrf_protect",
    "install",
    "prepare",
    "require_admin",
    "routers",
]

PREFIX = "/admin"

# The rooms, each with its own router: the login room's checks the CSRF token of a POST
# (``access.login_router``), every other room's the login too (``access.admin_router``).
ROOMS: tuple[ModuleType, ...] = (
    login,
    overview,
    sources,
    networks,
    deliveries,
    events,
    rules,
    corrections,
    subscribers,
)


def routers() -> list[APIRouter]:
    """The rooms' routers, mounted under ``PREFIX`` by ``install``."""
    return [room.router for room in ROOMS]


async def not_logged_in(request: Request, exc: Exception) -> Response:
    """To the login page (and back here after it) for a GET; 403 for anything else."""
    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"{PREFIX}/login?" + urlencode({"next": auth.safe_next(target)}))
    return error_page(request, 403)


def prepare(web: FastAPI) -> None:
    """Make the session codec now (at startup), not on the first request: without
    ``WATCHER_SECRET_KEY`` its key is generated once and stored in the database, and a
    GET must not be what writes it."""
    state: AdminState = web.state.admin
    if state.codec is None:
        state.codec = auth.SessionCodec(auth.secret_key(web.state.app))


def install(web: FastAPI) -> None:
    """The admin: session middleware, routers, the login redirect."""
    app = web.state.app
    web.state.admin = AdminState()

    def codec(scope: Scope) -> auth.SessionCodec:
        # Made by ``prepare`` at startup; here only when that could not reach the database.
        prepare(web)
        state: AdminState = web.state.admin
        assert state.codec is not None
        return state.codec

    def secure(scope: Scope) -> bool:
        return bool(scope.get("scheme") == "https") or app.config.watcher.base_url.startswith(
            "https:"
        )

    web.add_middleware(
        auth.SessionMiddleware,
        codec=codec,
        now=lambda _scope: app.now(),
        fingerprint=lambda _scope: auth.credentials_for(app.config).fingerprint,
        live=lambda sid, now: app.storage.session_user(sid, now),
        max_age=lambda _scope: app.config.web.session_max_age,
        secure=secure,
    )
    for room_router in routers():
        web.include_router(room_router, prefix=PREFIX)
    web.add_exception_handler(NotLoggedIn, not_logged_in)
