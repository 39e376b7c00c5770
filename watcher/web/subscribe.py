"""Self-service subscriptions: ``/prenumerera`` (sign-up), the confirmation page and the
preferences page (``notifications.subscriptions`` does the work; this is only the web).

- ``GET /prenumerera`` the form; ``POST`` stores a pending choice and mails the link
  (limited per address and per client address); the answer never says whether the address
  subscribes already;
- ``GET /prenumerera/bekrafta/{token}`` only reads and shows a button (a mail system's link
  scanner confirms nothing); ``POST`` confirms;
- ``GET /prenumerera/installningar/{token}`` (the signed link in every digest a subscriber
  gets) shows the choices; ``POST`` changes the frequency, a choice's areas and themes or
  words, or ends one or all; ``List-Unsubscribe=One-Click`` ends those behind the digest.

No GET writes to the database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from notifications.subscriptions import (
    PreferenceLinks,
    SignUpRefused,
    address_key,
    describe,
    read_confirmation,
    scope_ids,
    sign_up,
)
from watcher.app import App
from watcher.config import AREAS, THEMES
from watcher.exceptions import WatcherError
from watcher.storage.subscriptions import FREQUENCIES, Choice, Subscriber
from watcher.types import Kind
from watcher.web import auth
from watcher.web.render import app_of, gettext_for, render, request_lang

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}
KIND_CHOICES = tuple(k.value for k in Kind)


@dataclass
class SignUpLimits:
    """Sign-ups per address (3 an hour: each mails a link) and per client (20 an hour)."""

    by_address: auth.LoginLimiter = field(
        default_factory=lambda: auth.LoginLimiter(3, timedelta(hours=1))
    )
    by_client: auth.LoginLimiter = field(
        default_factory=lambda: auth.LoginLimiter(20, timedelta(hours=1))
    )


def install(web: FastAPI) -> None:
    web.state.signup_limits = SignUpLimits()
    web.include_router(router)


async def _form(request: Request) -> dict[str, list[str]]:
    body = (await request.body()).decode("utf-8", "replace")
    return parse_qs(body, keep_blank_values=True)


def _one(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0].strip()


def _many(form: dict[str, list[str]], name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for v in dict.fromkeys(form.get(name, ())) if v in allowed)


def _foreign(request: Request) -> bool:
    """A form POST from another site (see ``auth.check_origin``)."""
    app = app_of(request)
    allowed = auth.own_origins(
        request.url.scheme, request.headers.get("host"), app.config.watcher.base_url
    )
    return (
        auth.check_origin(request.headers.get("origin"), request.headers.get("referer"), allowed)
        is not None
    )


def _context(app: App) -> dict[str, Any]:
    return {
        "networks": [n for n in app.config.networks if n.enabled],
        "AREAS": AREAS,
        "THEMES": THEMES,
        "KINDS": KIND_CHOICES,
        "allowed_domains": app.config.subscriptions.allowed_domains,
        "error": "",
    }


def _choice(form: dict[str, list[str]], app: App) -> Choice | None:
    kind = _one(form, "kind")
    if kind == "network":
        nid = _one(form, "network")
        if nid not in {n.id for n in app.config.networks if n.enabled}:
            return None
        return Choice("network", network_id=nid)
    areas = _many(form, "areas", AREAS)
    themes = _many(form, "themes", THEMES)
    if kind == "topics":
        return Choice("topics", areas=areas, themes=themes) if areas or themes else None
    if kind == "search":
        query = " ".join(_one(form, "query").split())[:200]
        kinds = _many(form, "kinds", KIND_CHOICES)
        return (
            Choice("search", areas=areas, themes=themes, kinds=kinds, query=query)
            if query
            else None
        )
    return None


# -- sign-up -------------------------------------------------------------------------------


@router.get("/prenumerera", response_class=HTMLResponse)
def signup_page(request: Request) -> HTMLResponse:
    """The sign-up form."""
    return render(request, "prenumerera.html", {**_context(app_of(request)), "form": {}})


@router.post("/prenumerera", response_class=HTMLResponse)
async def signup(request: Request) -> HTMLResponse:
    """Store a pending choice and mail the confirmation link."""
    app = app_of(request)
    t = gettext_for(request)
    form = await _form(request)
    values: dict[str, Any] = {k: v[0] for k, v in form.items() if v}
    values.update(areas=form.get("areas", []), themes=form.get("themes", []))

    def again(error: str, status: int) -> HTMLResponse:
        return render(
            request,
            "prenumerera.html",
            {**_context(app), "form": values, "error": error},
            status_code=status,
            headers=NO_STORE,
        )

    if _foreign(request):
        return again(t("Formuläret skickades från en annan webbplats."), 403)
    address = _one(form, "email")
    choice = _choice(form, app)
    if choice is None:
        return again(t("Välj ett nätverk, minst ett område eller tema, eller skriv sökord."), 400)
    limits: SignUpLimits = request.app.state.signup_limits
    now = app.now()
    client = request.client.host if request.client else "-"
    key = address_key(address)
    wait = max(limits.by_address.retry_after(key, now), limits.by_client.retry_after(client, now))
    if wait:
        return again(
            t("För många försök. Försök igen om {minutes} minuter.", minutes=wait // 60 + 1), 429
        )
    limits.by_address.failed(key, now)
    limits.by_client.failed(client, now)
    try:
        await run_in_threadpool(sign_up, app, address, choice, lang=request_lang(request))
    except SignUpRefused as e:
        if e.reason == "domain":
            return again(
                t(
                    "Adresser i domänen {domain} kan inte prenumerera. Använd din adress i "
                    "en av medlemskommunerna: {allowed}.",
                    domain=str(e),
                    allowed=", ".join(app.config.subscriptions.allowed_domains),
                ),
                400,
            )
        return again(t("Skriv en e-postadress, till exempel namn@kommun.se."), 400)
    except WatcherError as e:
        log.warning("sign-up: the confirmation could not be sent: %s", e)
        return again(t("Bekräftelsen kunde inte skickas just nu. Försök igen senare."), 503)
    return render(
        request, "prenumerera_sent.html", {"address": address.strip().lower()}, headers=NO_STORE
    )


# -- confirmation --------------------------------------------------------------------------


def _bad_link(request: Request) -> HTMLResponse:
    return render(request, "prenumerera_bad.html", status_code=400, headers=NO_STORE)


@router.get("/prenumerera/bekrafta/{token}", response_class=HTMLResponse)
async def confirm_page(request: Request, token: str) -> HTMLResponse:
    """What the link confirms, and the button; reads only."""
    app = app_of(request)
    parsed = read_confirmation(token)
    found = None
    if parsed is not None:
        found = await run_in_threadpool(app.storage.pending_subscription, *parsed, app.now())
    if found is None:
        return _bad_link(request)
    address, choice = found
    return render(
        request,
        "prenumerera_confirm.html",
        {
            "address": address,
            "what": describe(choice, app.config, request_lang(request)),
            "action": f"/prenumerera/bekrafta/{token}",
        },
        headers=NO_STORE,
    )


@router.post("/prenumerera/bekrafta/{token}", response_class=HTMLResponse)
async def confirm(request: Request, token: str) -> Response:
    """Make the choice active; then to the preferences page."""
    app = app_of(request)
    parsed = read_confirmation(token)
    if parsed is None or _foreign(request):
        return _bad_link(request)
    address = await run_in_threadpool(app.storage.confirm_subscription, *parsed, app.now())
    if address is None:
        return _bad_link(request)
    log.info("subscription %s confirmed", parsed[0])
    url = await run_in_threadpool(_prefs_path, app, address)
    return RedirectResponse(url + "?bekraftad=1", status_code=303)


def _prefs_path(app: App, address: str) -> str:
    return "/prenumerera/installningar/" + PreferenceLinks.for_app(app).token(address)


# -- preferences ---------------------------------------------------------------------------


def _person(app: App, token: str) -> tuple[str, str, Subscriber | None] | None:
    found = PreferenceLinks.for_app(app).read(token)
    if found is None:
        return None
    address, scope = found
    return address, scope, app.storage.subscriber(address)


@router.get("/prenumerera/installningar/{token}", response_class=HTMLResponse)
async def preferences_page(request: Request, token: str) -> HTMLResponse:
    """A person's choices, to change or end."""
    app = app_of(request)
    found = await run_in_threadpool(_person, app, token)
    if found is None:
        return _bad_link(request)
    address, _scope, person = found
    lang = request_lang(request)
    active = person.active if person else ()
    return render(
        request,
        "prenumerera_preferences.html",
        {
            **_context(app),
            "address": address,
            "person": person,
            "subscriptions": [(s, describe(s.choice, app.config, lang)) for s in active],
            "has_personal": bool(person and person.personal),
            "FREQUENCIES": FREQUENCIES,
            "action": f"/prenumerera/installningar/{token}",
            "confirmed": request.query_params.get("bekraftad") == "1",
            "saved": request.query_params.get("sparat") == "1",
        },
        headers=NO_STORE,
    )


@router.post("/prenumerera/installningar/{token}", response_class=HTMLResponse)
async def preferences(request: Request, token: str) -> Response:
    """Change the frequency or a choice, end one or all; RFC 8058 one-click ends the
    choices behind the digest the link came in."""
    app = app_of(request)
    found = await run_in_threadpool(_person, app, token)
    if found is None:
        return _bad_link(request)
    address, scope, person = found
    form = await _form(request)
    back = RedirectResponse(f"/prenumerera/installningar/{token}?sparat=1", status_code=303)
    if person is None:
        return back
    storage = app.storage
    if _one(form, "List-Unsubscribe") == "One-Click":
        await run_in_threadpool(storage.end_subscriptions, address, scope_ids(person, scope))
        log.info("one-click unsubscribe of a subscriber from %s", scope)
        return Response(status_code=200)
    if _foreign(request):
        return _bad_link(request)
    action = _one(form, "action")
    own = {s.id: s for s in person.active}
    sid = int(_one(form, "subscription")) if _one(form, "subscription").isdigit() else None
    if action == "frequency" and _one(form, "frequency") in FREQUENCIES:
        await run_in_threadpool(storage.set_frequency, address, _one(form, "frequency"))
    elif action == "end" and sid in own:
        await run_in_threadpool(storage.end_subscriptions, address, [sid])
    elif action == "end_all":
        await run_in_threadpool(storage.end_subscriptions, address, None)
    elif action == "change" and sid in own:
        old = own[sid].choice
        new = _choice({**form, "kind": [old.kind], "network": [old.network_id or ""]}, app)
        if new is not None:
            await run_in_threadpool(storage.change_subscription, address, sid, new)
    return back
