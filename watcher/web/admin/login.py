"""Logging in and out of the admin.

Failed logins are limited per client address and per user name (``AdminState``'s
limiters, on the app's clock); every attempt, refusal, login and logout is in the audit
log. A login starts a new session with a new CSRF token: a token seen before login is
worth nothing afterwards. The login's record is kept in the database (its id in the
cookie), and logout deletes it: a cookie copied before logout opens nothing afterwards.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from watcher.app import App
from watcher.web import auth
from watcher.web.admin.access import (
    AdminState,
    client_address,
    form_data,
    login_router,
    redirect,
    session_of,
)
from watcher.web.render import app_of, gettext_for, render

router = login_router()


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    creds = auth.credentials_for(app_of(request).config)
    return render(
        request,
        "admin/login.html",
        {
            "next": auth.safe_next(request.query_params.get("next")),
            "configured": creds.configured,
            "error": None,
            "username": "",
        },
    )


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    app = app_of(request)
    state: AdminState = request.app.state.admin
    form = await form_data(request)
    username = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))[:1000]
    target = auth.safe_next(str(form.get("next", "")))
    now = app.now()
    t = gettext_for(request)
    addr_key, user_key = f"addr:{client_address(request)}", f"user:{username.lower()}"
    wait = max(
        state.by_address.retry_after(addr_key, now), state.by_user.retry_after(user_key, now)
    )
    creds = auth.credentials_for(app.config)
    context = {"next": target, "configured": creds.configured, "username": username}
    if wait:
        app.storage.audit(
            username or "?",
            "admin.login_refused",
            client_address(request),
            {"retry_after": wait},
            now,
        )
        minutes = max(1, -(-wait // 60))
        return render(
            request,
            "admin/login.html",
            {
                **context,
                "error": t(
                    "För många misslyckade inloggningar. Försök igen om {n} minuter.", n=minutes
                ),
            },
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
    ok = await run_in_threadpool(creds.check, username, password)
    if not ok:
        state.by_address.failed(addr_key, now)
        state.by_user.failed(user_key, now)
        app.storage.audit(username or "?", "admin.login_failed", client_address(request), {}, now)
        return render(
            request,
            "admin/login.html",
            {**context, "error": t("Fel användarnamn eller lösenord.")},
            status_code=401,
        )
    state.by_address.succeeded(addr_key)
    state.by_user.succeeded(user_key)
    session = session_of(request)
    lifetime = timedelta(seconds=app.config.web.session_max_age)
    sid = secrets.token_urlsafe(32)
    previous = session.sid
    await run_in_threadpool(_start_session, app, sid, creds.user, previous, now, now + lifetime)
    # A new session (and CSRF token) at login: a token seen before login is worth nothing.
    session.start(now, lifetime, user=creds.user, pw=creds.fingerprint, sid=sid)
    app.storage.audit(creds.user, "admin.login", client_address(request), {}, now)
    return redirect(target)


def _start_session(
    app: App, sid: str, user: str, previous: str | None, now: datetime, expires: datetime
) -> None:
    """Record the login (its expiry is fixed now: using a session never extends it); a
    session the browser had before ends."""
    if previous:
        app.storage.end_session(previous)
    app.storage.start_session(sid, user, now, expires)


@router.post("/logout")
async def logout(request: Request) -> Response:
    app = app_of(request)
    session = session_of(request)
    if session.sid:
        await run_in_threadpool(app.storage.end_session, session.sid)
    if session.user:
        app.storage.audit(session.user, "admin.logout", client_address(request), {}, app.now())
    session.data.pop("flash", None)
    session.start(app.now(), auth.ANON_SESSION)
    return redirect("/admin/login")
