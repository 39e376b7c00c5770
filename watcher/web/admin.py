"""The admin at ``/admin``: sources, networks and rules, edited safely.

Every route but the login page needs a logged-in session (``require_admin``); every POST
needs the session's CSRF token (``csrf_protect``): both are dependencies of the routers, so
no route can forget them. A form is validated the way ``config.toml`` is (the whole edited
document through ``validate_data``), and each problem is shown on the field its key path
names. A valid edit is written with ``watcher.config_edit`` (tomlkit, atomic, refused when
the file changed since the form was opened, with the admin's input kept on the page), put
in force with ``App.set_config`` (the scheduler re-syncs through ``hooks.config_changed``),
and recorded in the audit log with secrets redacted.

Rules: the admin edits the files listed in ``[rules] paths`` (or creates
``rules/local.toml`` next to ``config.toml`` and lists it); a save first shows the back-test
(which stored items gain or lose which tags), then writes the file, reloads the rules and
re-tags the stored items.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from watcher import config as config_mod
from watcher.config import AREAS, THEMES, Config
from watcher.config_edit import (
    ABSENT,
    NETWORK_KEYS,
    SOURCE_KEYS,
    ConfigFile,
    EditConflict,
    TextFile,
    diff_entries,
    redact,
    save_text,
)
from watcher.exceptions import ConfigError, ConfigProblem, WatcherError
from watcher.types import SourceState
from watcher.web import auth
from watcher.web.messages import localise
from watcher.web.public import (
    AREA_LABELS,
    KIND_LABELS,
    THEME_LABELS,
    label,
    render,
    request_lang,
    translator,
)

log = logging.getLogger(__name__)

LOGIN_LIMIT_PER_ADDRESS = 5
LOGIN_LIMIT_PER_USER = 20
LOGIN_WINDOW = timedelta(minutes=15)


# -- access ----------------------------------------------------------------------------------


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


def _session(request: Request) -> auth.Session:
    session = getattr(request.state, "session", None)
    if session is None:  # the session middleware is missing: refuse rather than guess
        raise HTTPException(403)
    return session  # type: ignore[no-any-return]


def require_admin(request: Request) -> str:
    """The logged-in admin's name, or NotLoggedIn."""
    user = _session(request).user
    if user is None:
        raise NotLoggedIn()
    return user


async def form_data(request: Request) -> FormData:
    cached = getattr(request.state, "form", None)
    if cached is None:
        cached = await request.form(max_files=0, max_fields=2000)
        request.state.form = cached
    return cast(FormData, cached)


async def csrf_protect(request: Request) -> None:
    """Every state-changing request carries the session's CSRF token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    form = await form_data(request)
    token = form.get("csrf_token")
    if not auth.check_csrf(_session(request), token if isinstance(token, str) else None):
        log.warning("refused %s %s: missing or wrong CSRF token", request.method, request.url.path)
        raise HTTPException(403)


login_router = APIRouter(
    prefix="/admin", include_in_schema=False, dependencies=[Depends(csrf_protect)]
)
router = APIRouter(
    prefix="/admin",
    include_in_schema=False,
    dependencies=[Depends(require_admin), Depends(csrf_protect)],
)


def _app(request: Request) -> Any:
    return request.app.state.app


def _(request: Request) -> Any:
    return translator(request_lang(request))


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- login -------------------------------------------------------------------------------------


@login_router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    creds = auth.credentials_for(_app(request).config)
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


@login_router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    app = _app(request)
    state: AdminState = request.app.state.admin
    form = await form_data(request)
    username = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))[:1000]
    target = auth.safe_next(str(form.get("next", "")))
    now = app.now()
    t = _(request)
    addr_key, user_key = f"addr:{_client_address(request)}", f"user:{username.lower()}"
    wait = max(
        state.by_address.retry_after(addr_key, now), state.by_user.retry_after(user_key, now)
    )
    creds = auth.credentials_for(app.config)
    context = {"next": target, "configured": creds.configured, "username": username}
    if wait:
        app.storage.audit(
            username or "?",
            "admin.login_refused",
            _client_address(request),
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
        app.storage.audit(username or "?", "admin.login_failed", _client_address(request), {}, now)
        return render(
            request,
            "admin/login.html",
            {**context, "error": t("Fel användarnamn eller lösenord.")},
            status_code=401,
        )
    state.by_address.succeeded(addr_key)
    state.by_user.succeeded(user_key)
    session = _session(request)
    # A new session (and CSRF token) at login: a token seen before login is worth nothing.
    session.start(
        now,
        timedelta(seconds=app.config.web.session_max_age),
        user=creds.user,
        pw=creds.fingerprint,
    )
    app.storage.audit(creds.user, "admin.login", _client_address(request), {}, now)
    return _redirect(target)


@login_router.post("/logout")
async def logout(request: Request) -> Response:
    app = _app(request)
    session = _session(request)
    if session.user:
        app.storage.audit(session.user, "admin.logout", _client_address(request), {}, app.now())
    session.data.pop("flash", None)
    session.start(app.now(), auth.ANON_SESSION)
    return _redirect("/admin/login")


# -- overview and audit ------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    app = _app(request)
    states = app.storage.source_states()
    enabled = [s for s in app.config.sources if s.enabled]
    failing = [s for s in enabled if s.id in states and states[s.id].consecutive_failures > 0]
    warned = [s for s in enabled if s.id in states and states[s.id].warning]
    classifier = app.classifier
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
            "rules_error": classifier.error if classifier is not None else None,
            "audit": app.storage.audit_entries(10),
        },
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_log(request: Request) -> HTMLResponse:
    app = _app(request)
    return render(request, "admin/audit.html", {"entries": app.storage.audit_entries(500)})


# -- config plumbing -------------------------------------------------------------------------


def config_file_path(app: Any) -> Path:
    """The config file the admin edits: the one loaded, or where one would be loaded from."""
    return Path(app.config.path) if app.config.path else config_mod.config_path(None).resolve()


def _problems_for(
    problems: Sequence[ConfigProblem], prefix: str, lang: str
) -> tuple[dict[str, list[str]], list[str]]:
    """Split problems into those of one entry (``prefix`` = ``sources[3]``), keyed by form
    field (``options.item`` → ``opt.item``), and the rest (shown at the top), in ``lang``."""
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    for p in problems:
        message = localise(p.message, lang)
        if p.path == prefix or p.path.startswith(prefix + "."):
            rest = p.path[len(prefix) + 1 :]
            parts = rest.split(".")
            if not rest:
                general.append(message)
                continue
            if parts[0] == "options" and len(parts) > 1:
                name = "opt." + parts[1].split("[")[0]
            else:
                name = parts[0].split("[")[0]
            fields.setdefault(name, []).append(message)
        else:
            general.append(f"{p.path}: {message}" if p.path else message)
    return fields, general


class _EntryForm(Protocol):
    entry: dict[str, Any]
    errors: dict[str, list[str]]
    general: list[str]


def _existing_entry(cf: ConfigFile, table: str, entry_id: str | None) -> dict[str, Any] | None:
    """The entry being edited (None for a new one); 404 when it is not in the file."""
    if entry_id is None:
        return None
    index = cf.index_of(table, entry_id)
    if index is None:
        raise HTTPException(404)
    return cf.entries(table)[index]


def _validate_entry(
    request: Request,
    cf: ConfigFile,
    table: str,
    form: _EntryForm,
    replace_id: str | None,
    order: Sequence[str],
) -> Config | None:
    """Put the form's entry into the file and validate the whole of it, as `watcher
    check-config` would; problems go onto the form's fields (in the interface's language).
    The config, or None when it has problems."""
    try:
        cf.put_entry(table, form.entry, replace_id=replace_id, order=order)
        return cf.validate()
    except ConfigError as e:
        prefix = f"{table}[{cf.index_of(table, form.entry['id'])}]"
        fields, general = _problems_for(e.problems, prefix, request_lang(request))
        for k, msgs in fields.items():
            form.errors.setdefault(k, []).extend(msgs)
        form.general.extend(general)
        return None


def _apply(
    app: Any,
    cf: ConfigFile,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
    expected: str,
) -> Config:
    """Save the edited file (if still at ``expected``), put it in force, audit it."""
    new = cf.save(expected)
    app.set_config(new)
    app.storage.audit(actor, action, target, details, app.now())
    return new


def conflict_message(t: Any) -> str:
    return str(
        t(
            "config.toml har ändrats sedan du öppnade formuläret (av någon annan eller i en "
            "textredigerare). Inget sparades. Dina uppgifter finns kvar nedan: jämför med det "
            "sparade och spara igen."
        )
    )


# -- the per-kind source form ----------------------------------------------------------------


@dataclass(frozen=True)
class FormField:
    """One field as the template's ``field`` macro draws it."""

    name: str
    label: str
    type: str = "text"  # text | number | checkbox | textarea | select | checkboxes
    value: Any = ""
    hint: str = ""
    required: bool = False
    choices: Sequence[tuple[str, str]] = ()
    rows: int = 3


@dataclass(frozen=True)
class OptionSpec:
    """One adapter option, from its pydantic field."""

    name: str
    shape: str  # bool | int | float | str | optstr | list | dict | choice
    default: Any
    required: bool
    description: str
    choices: tuple[str, ...] = ()


def option_specs(kind: str) -> list[OptionSpec]:
    """The options of an adapter kind, for building its form."""
    from sources import registry

    model: type[BaseModel] = registry.get(kind).Options
    specs = []
    for name, fld in model.model_fields.items():
        shape, choices = _shape(fld.annotation)
        default = None if fld.is_required() else fld.get_default(call_default_factory=True)
        specs.append(
            OptionSpec(name, shape, default, fld.is_required(), fld.description or "", choices)
        )
    return specs


def _shape(annotation: Any) -> tuple[str, tuple[str, ...]]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if annotation is str:
        return "str", ()
    if origin is Literal:
        return "choice", tuple(str(a) for a in args)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            inner, choices = _shape(rest[0])
            if inner == "str":
                return "optstr", ()
            return inner, choices
    if origin in (tuple, list, set, frozenset):
        return "list", ()
    if origin is dict:
        return "dict", ()
    return "str", ()


def _display(spec: OptionSpec, value: Any) -> Any:
    if spec.shape == "bool":
        return bool(value)
    if value is None:
        return ""
    if spec.shape == "list":
        return "\n".join(str(v) for v in value)
    if spec.shape == "dict":
        return "\n".join(f"{k} = {v}" for k, v in dict(value).items())
    return str(value)


KEEP = object()  # the form did not carry the field: keep what the entry has
DEFAULT = object()  # the field was emptied: use the adapter's default


def _parse_option(spec: OptionSpec, form: FormData, t: Any) -> tuple[Any, str | None]:
    """(value, error) of one option from the form; the value may be KEEP or DEFAULT."""
    key = f"opt.{spec.name}"
    if spec.shape == "bool":
        # A checkbox that is not ticked is not sent: absent means false.
        return form.get(key) == "1", None
    if key not in form:
        return KEEP, None
    raw = str(form.get(key, "")).replace("\r\n", "\n")
    text = raw.strip()
    if spec.shape == "list":
        return [line.strip() for line in raw.split("\n") if line.strip()], None
    if spec.shape == "dict":
        out: dict[str, str] = {}
        for n, line in enumerate(raw.split("\n"), 1):
            if not line.strip():
                continue
            if "=" not in line:
                return None, t("rad {n}: skriv 'nyckel = värde'", n=n)
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
        return out, None
    if not text:
        if spec.required:
            return None, t("Obligatoriskt fält")
        if spec.shape == "optstr" and spec.default is not None:
            return "", None  # emptied on purpose: TOML has no null, and "" switches it off
        return DEFAULT, None
    if spec.shape == "int":
        try:
            return int(text), None
        except ValueError:
            return None, t("Ange ett heltal")
    if spec.shape == "float":
        try:
            return float(text.replace(",", ".")), None
        except ValueError:
            return None, t("Ange ett tal")
    return text, None


def _same(a: Any, b: Any) -> bool:
    """Equal, counting a tuple and a list with the same elements as equal."""

    def norm(v: Any) -> Any:
        return list(v) if isinstance(v, tuple | list) else v

    return bool(norm(a) == norm(b))


@dataclass
class SourceForm:
    """A source form's state: the entry it would write, its fields, and their errors."""

    kind: str
    entry: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> SourceForm:
        return cls(str(entry.get("kind", "")), dict(entry))

    @classmethod
    def from_form(
        cls, form: FormData, kind: str, existing: Mapping[str, Any] | None, t: Any
    ) -> SourceForm:
        """The entry the form describes. Options equal to the adapter's default are left
        out (unless the entry already spelled them out), so the file stays short."""
        errors: dict[str, list[str]] = {}
        entry: dict[str, Any] = {}
        entry["id"] = str(existing["id"]) if existing else str(form.get("id", "")).strip()
        entry["name"] = str(form.get("name", "")).strip()
        if not entry["name"]:
            errors.setdefault("name", []).append(t("Ange ett namn"))
        entry["kind"] = kind
        entry["url"] = str(form.get("url", "")).strip()
        schedule = str(form.get("schedule", "")).strip()
        entry["schedule"] = schedule or "6h"
        if form.get("enabled") != "1":
            entry["enabled"] = False
        entry["areas"] = [a for a in form.getlist("areas") if isinstance(a, str)]
        entry["themes"] = [x for x in form.getlist("themes") if isinstance(x, str)]
        language = str(form.get("language", "")).strip()
        if language:
            entry["language"] = language
        # Options of another kind (the admin switched the kind) do not carry over.
        same_kind = existing is not None and existing.get("kind") == kind
        old_opts = dict((existing or {}).get("options", {}) or {}) if same_kind else {}
        options: dict[str, Any] = {}
        try:
            specs = option_specs(kind)
        except KeyError:
            specs = []
            errors.setdefault("kind", []).append(t("Okänd typ"))
        for spec in specs:
            value, error = _parse_option(spec, form, t)
            if error:
                errors.setdefault(f"opt.{spec.name}", []).append(error)
            elif value is KEEP:
                if spec.name in old_opts:
                    options[spec.name] = old_opts[spec.name]
            elif value is DEFAULT:
                continue
            elif spec.required or spec.name in old_opts or not _same(value, spec.default):
                options[spec.name] = value
        if options:
            entry["options"] = options
        # Keep what a form does not show (e.g. a key the admin wrote by hand).
        for k, v in (existing or {}).items():
            if k not in entry and k not in ("enabled", "language", "options", "areas", "themes"):
                entry[k] = v
        if not entry["areas"] and "areas" not in (existing or {}):
            entry.pop("areas")
        if not entry["themes"] and "themes" not in (existing or {}):
            entry.pop("themes")
        return cls(kind, entry, errors)

    def fields(self, t: Any, lang: str, *, new: bool) -> tuple[list[FormField], list[FormField]]:
        """(common fields, option fields) with the current values."""
        e = self.entry
        common = []
        if new:
            common.append(
                FormField(
                    "id",
                    t("Id"),
                    value=e.get("id", ""),
                    required=True,
                    hint=t("Små bokstäver, siffror, - och _. Kan inte ändras senare."),
                )
            )
        common += [
            FormField("name", t("Namn"), value=e.get("name", ""), required=True),
            FormField(
                "url",
                t("Adress (URL)"),
                value=e.get("url", ""),
                required=True,
                hint=t("http:// eller https://"),
            ),
            FormField(
                "schedule",
                t("Schema"),
                value=e.get("schedule", "6h"),
                hint=t("Ett intervall som 30m, 6h, 1d eller ett cron-uttryck som '0 7 * * 1-5'."),
            ),
            FormField(
                "enabled", t("Aktiv (hämtas enligt schemat)"), "checkbox", e.get("enabled", True)
            ),
            FormField(
                "areas",
                t("Områden som alltid sätts"),
                "checkboxes",
                list(e.get("areas", [])),
                choices=[(a, label(AREA_LABELS, a, lang)) for a in AREAS],
            ),
            FormField(
                "themes",
                t("Teman som alltid sätts"),
                "checkboxes",
                list(e.get("themes", [])),
                choices=[(x, label(THEME_LABELS, x, lang)) for x in THEMES],
            ),
            FormField(
                "language",
                t("Språk"),
                value=e.get("language", "") or "",
                hint=t("Tvåbokstavskod som sv eller en; tomt = upptäcks automatiskt."),
            ),
        ]
        options = []
        current = dict(e.get("options", {}) or {})
        try:
            specs = option_specs(self.kind)
        except KeyError:
            specs = []
        for spec in specs:
            value = current.get(spec.name, spec.default)
            ftype = {
                "bool": "checkbox",
                "int": "number",
                "float": "text",
                "list": "textarea",
                "dict": "textarea",
                "choice": "select",
            }.get(spec.shape, "text")
            hint = spec.description
            if spec.shape == "list":
                hint = (hint + " " if hint else "") + t("(en per rad)")
            elif spec.shape == "dict":
                hint = (hint + " " if hint else "") + t("(en per rad: nyckel = värde)")
            options.append(
                FormField(
                    f"opt.{spec.name}",
                    spec.name,
                    ftype,
                    _display(spec, value),
                    hint=hint,
                    required=spec.required,
                    choices=[(c, c) for c in spec.choices],
                    rows=4 if spec.shape in ("list", "dict") else 3,
                )
            )
        return common, options


# -- sources -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One poll in the activity chart."""

    x: int
    height: int
    css: str
    title: str


CHART_HEIGHT = 24


def activity_bars(history: Sequence[Mapping[str, Any]], fmt: Any, t: Any) -> list[Bar]:
    """The last polls, oldest first: a tall red bar for a failure, a green bar as high as
    the new and updated items (log scale), a low grey bar for nothing new."""
    import math

    bars = []
    for i, h in enumerate(reversed(list(history))):
        status = h.get("status")
        changed = int(h.get("new") or 0) + int(h.get("updated") or 0)
        when = fmt.stamp(h.get("started_at"))
        if status == "error":
            height, css = CHART_HEIGHT, "bar-error"
            title = f"{when}: {t('fel')} {h.get('error_code') or ''}"
        elif changed:
            height = min(CHART_HEIGHT, 6 + int(6 * math.log2(1 + changed)))
            css = "bar-new"
            title = f"{when}: {t('{n} nya eller ändrade', n=changed)}"
        else:
            height, css = 3, "bar-quiet"
            title = f"{when}: {t('inget nytt')}"
        bars.append(Bar(i * 5, height, css, title))
    return bars


@router.get("/sources", response_class=HTMLResponse)
def sources_list(request: Request) -> HTMLResponse:
    from watcher.web.public import Formatter

    app = _app(request)
    now = app.now()
    t = _(request)
    fmt = Formatter(request_lang(request), app.config.tz, now)
    states = app.storage.source_states()
    recent = app.storage.recent_item_counts(now - timedelta(days=30))
    held = app.storage.held_counts()
    rows = []
    for s in app.config.sources:
        history = app.storage.poll_history(s.id, 30)
        ok = sum(1 for h in history if h.get("status") != "error")
        rows.append(
            {
                "source": s,
                "state": states.get(s.id) or SourceState(source_id=s.id),
                "recent": recent.get(s.id, 0),
                "held": held.get(s.id, 0),
                "bars": activity_bars(history, fmt, t),
                "chart_label": t(
                    "Senaste {n} hämtningarna: {ok} lyckade, {bad} misslyckade",
                    n=len(history),
                    ok=ok,
                    bad=len(history) - ok,
                ),
            }
        )
    from sources import registry

    return render(
        request,
        "admin/sources.html",
        {"rows": rows, "kinds": registry.kinds(), "chart_height": CHART_HEIGHT},
    )


def _kind_help(kind: str) -> str:
    from sources import registry

    try:
        return registry.get(kind).help()
    except KeyError:
        return ""


def _render_source_form(
    request: Request,
    form: SourceForm,
    *,
    new: bool,
    version: str,
    preview: Any = None,
    conflict: str | None = None,
    saved: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    from sources import registry

    t = _(request)
    common, options = form.fields(t, request_lang(request), new=new)
    app = _app(request)
    history = [] if new else app.storage.poll_history(str(form.entry.get("id")), 10)
    return render(
        request,
        "admin/source_form.html",
        {
            "form": form,
            "new": new,
            "kinds": registry.kinds(),
            "kind_help": _kind_help(form.kind),
            "common": common,
            "options": options,
            "errors": form.errors,
            "general": form.general,
            "version": version,
            "preview": preview,
            "conflict": conflict,
            "saved": saved,
            "history": history,
            "action": "/admin/sources/new" if new else f"/admin/sources/{form.entry['id']}",
        },
        status_code=status_code,
    )


@router.get("/sources/new", response_class=HTMLResponse)
def source_new(request: Request) -> HTMLResponse:
    from sources import registry

    kind = request.query_params.get("kind", "html")
    if kind not in registry.kinds():
        kind = "html"
    cf = ConfigFile.read(config_file_path(_app(request)))
    entry = {"id": "", "name": "", "kind": kind, "url": "", "schedule": "6h"}
    return _render_source_form(request, SourceForm(kind, entry), new=True, version=cf.version)


@router.get("/sources/{source_id}", response_class=HTMLResponse)
def source_edit(request: Request, source_id: str) -> HTMLResponse:
    cf = ConfigFile.read(config_file_path(_app(request)))
    index = cf.index_of("sources", source_id)
    if index is None:
        raise HTTPException(404)
    entry = cf.entries("sources")[index]
    kind = request.query_params.get("kind")
    form = SourceForm.from_entry(entry)
    if kind and kind != form.kind:
        from sources import registry

        if kind in registry.kinds():
            form = SourceForm(kind, {**entry, "kind": kind, "options": {}})
    return _render_source_form(request, form, new=False, version=cf.version)


@router.post("/sources/new", response_class=HTMLResponse)
async def source_create(request: Request, user: str = Depends(require_admin)) -> Response:
    return await _source_submit(request, user, None)


@router.post("/sources/{source_id}", response_class=HTMLResponse)
async def source_update(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    return await _source_submit(request, user, source_id)


async def _source_submit(request: Request, user: str, source_id: str | None) -> Response:
    """Test-fetch (``action=test``) or save (``action=save``) a source form."""
    from sources import registry
    from watcher.preview import preview_source

    app = _app(request)
    t = _(request)
    form_in = await form_data(request)
    new = source_id is None
    version = str(form_in.get("version", ""))
    action = form_in.get("action", "save")
    kind = str(form_in.get("kind", "html"))
    if kind not in registry.kinds():
        raise HTTPException(400)
    cf = ConfigFile.read(config_file_path(app))
    existing = _existing_entry(cf, "sources", source_id)
    form = SourceForm.from_form(form_in, kind, existing, t)
    sid = form.entry["id"]
    if new and sid and cf.index_of("sources", sid) is not None:
        form.errors.setdefault("id", []).append(t("Det finns redan en källa med id {id}", id=sid))
    cfg: Config | None = None
    if not form.errors or action == "test":
        cfg = _validate_entry(request, cf, "sources", form, None if new else sid, SOURCE_KEYS)
    if form.errors or form.general or cfg is None:
        return _render_source_form(request, form, new=new, version=version, status_code=422)
    if action == "test":
        src = cfg.source(sid)
        preview = await preview_source(app, src, http=app.http)
        return _render_source_form(request, form, new=new, version=version, preview=preview)
    refused = await _save_entry(
        app,
        cf,
        user,
        "source.add" if new else "source.edit",
        sid,
        existing,
        form.entry,
        version,
        conflict_message(t),
        functools.partial(_render_source_form, request, form, new=new),
    )
    if refused is not None:
        return refused
    _session(request).flash(t("Källan {name} sparades.", name=form.entry["name"]))
    return _redirect("/admin/sources")


async def _delete_entry(
    request: Request, user: str, table: str, entry_id: str, done: str
) -> Response:
    """Remove a source or network from config.toml, put the result in force, audit it."""
    app = _app(request)
    t = _(request)

    def delete() -> dict[str, Any]:
        cf = ConfigFile.read(config_file_path(app))
        removed = cf.delete_entry(table, entry_id)
        app.set_config(cf.save(cf.version))
        return removed

    try:
        removed = await run_in_threadpool(delete)
    except KeyError:
        raise HTTPException(404) from None
    except (ConfigError, EditConflict) as e:
        _session(request).flash(t("Kunde inte spara: {error}", error=str(e)), "error")
        return _redirect(f"/admin/{table}")
    action = f"{table.removesuffix('s')}.delete"
    app.storage.audit(user, action, entry_id, {"removed": redact(removed)}, app.now())
    _session(request).flash(done)
    return _redirect(f"/admin/{table}")


async def _save_entry(
    app: Any,
    cf: ConfigFile,
    user: str,
    action: str,
    target: str,
    existing: Mapping[str, Any] | None,
    entry: Mapping[str, Any],
    version: str,
    conflict: str,
    render: Callable[..., Response],
) -> Response | None:
    """Write a validated source or network edit; None when saved. An edit based on a
    version of config.toml that is no longer the one on disk is refused (409) with the
    admin's input kept on the page, whether the change is seen before writing or by the
    atomic write itself."""
    if version != cf.version:
        return render(version=cf.version, conflict=conflict, saved=existing, status_code=409)
    try:
        await run_in_threadpool(
            _apply,
            app,
            cf,
            user,
            action,
            target,
            {"changes": diff_entries(existing, entry)},
            version,
        )
    except EditConflict:
        fresh = ConfigFile.read(config_file_path(app))
        return render(version=fresh.version, conflict=conflict, status_code=409)
    return None


def _edit_entry(
    app: Any, key: str, entry_id: str, change: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the file, change one entry with ``change(entry) -> entry``, save (the file as
    just read is the expected version). Returns (old, new)."""
    cf = ConfigFile.read(config_file_path(app))
    index = cf.index_of(key, entry_id)
    if index is None:
        raise HTTPException(404)
    old = cf.entries(key)[index]
    new = change(dict(old))
    cf.put_entry(
        key, new, replace_id=entry_id, order=SOURCE_KEYS if key == "sources" else NETWORK_KEYS
    )
    cfg = cf.save(cf.version)
    app.set_config(cfg)
    return old, new


@router.post("/sources/{source_id}/enabled")
async def source_enable(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    """Switch a source on or off (``enabled=1|0``: the intent, not a toggle)."""
    app = _app(request)
    t = _(request)
    want = (await form_data(request)).get("enabled") == "1"

    def change(entry: dict[str, Any]) -> dict[str, Any]:
        entry.pop("enabled", None)
        if not want:
            entry["enabled"] = False
        return entry

    try:
        old, new = await run_in_threadpool(_edit_entry, app, "sources", source_id, change)
    except (ConfigError, EditConflict) as e:
        _session(request).flash(t("Kunde inte spara: {error}", error=str(e)), "error")
        return _redirect("/admin/sources")
    app.storage.audit(
        user,
        "source.enable" if want else "source.disable",
        source_id,
        {"changes": diff_entries(old, new)},
        app.now(),
    )
    _session(request).flash(
        t("Källan {id} är aktiv.", id=source_id)
        if want
        else t("Källan {id} är avstängd.", id=source_id)
    )
    return _redirect("/admin/sources")


@router.get("/sources/{source_id}/delete", response_class=HTMLResponse)
def source_delete_confirm(request: Request, source_id: str) -> HTMLResponse:
    app = _app(request)
    try:
        src = app.config.source(source_id)
    except KeyError:
        raise HTTPException(404) from None
    count = app.storage.source_state(source_id).item_count
    return render(
        request, "admin/confirm_delete.html", {"what": "source", "entry": src, "count": count}
    )


@router.post("/sources/{source_id}/delete")
async def source_delete(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    t = _(request)
    return await _delete_entry(
        request,
        user,
        "sources",
        source_id,
        t("Källan {id} togs bort. Dess poster finns kvar.", id=source_id),
    )


@router.post("/sources/{source_id}/poll")
async def source_poll(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    """Poll one source now and report how it went."""
    app = _app(request)
    t = _(request)
    try:
        app.config.source(source_id)
    except KeyError:
        raise HTTPException(404) from None
    [result] = await app.poll([source_id])
    app.storage.audit(user, "source.poll", source_id, result.as_dict(), app.now())
    session = _session(request)
    if result.error is not None:
        session.flash(
            t(
                "Hämtningen av {id} misslyckades: {code}: {message}",
                id=source_id,
                code=result.error.code,
                message=result.error.message,
            ),
            "error",
        )
    elif result.status.value == "not_modified":
        session.flash(t("{id}: inte ändrad sedan förra hämtningen.", id=source_id))
    else:
        session.flash(
            t(
                "{id}: {new} nya, {updated} uppdaterade, {unchanged} oförändrade.",
                id=source_id,
                new=result.new,
                updated=result.updated,
                unchanged=result.unchanged,
            )
        )
    for w in result.warnings:
        session.flash(f"{source_id}: {w}", "warning")
    return _redirect("/admin/sources")


@router.post("/sources/{source_id}/held")
async def source_release_held(
    request: Request, source_id: str, user: str = Depends(require_admin)
) -> Response:
    """Release a source's held flood into the next digests, or mark it silent."""
    app = _app(request)
    t = _(request)
    discard = (await form_data(request)).get("action") == "discard"
    n = app.storage.release_held(source_id, discard=discard, now=app.now())
    app.storage.audit(
        user,
        "source.discard_held" if discard else "source.release_held",
        source_id,
        {"items": n},
        app.now(),
    )
    _session(request).flash(
        t("{n} hållna poster markerades som tysta.", n=n)
        if discard
        else t("{n} hållna poster släpps till nästa utskick.", n=n)
    )
    return _redirect("/admin/sources")


# -- networks ----------------------------------------------------------------------------------


@dataclass
class NetworkForm:
    entry: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    @classmethod
    def from_form(cls, form: FormData, existing: Mapping[str, Any] | None, t: Any) -> NetworkForm:
        errors: dict[str, list[str]] = {}
        entry: dict[str, Any] = {}
        entry["id"] = str(existing["id"]) if existing else str(form.get("id", "")).strip()
        entry["name"] = str(form.get("name", "")).strip()
        if not entry["name"]:
            errors.setdefault("name", []).append(t("Ange ett namn"))
        for key in ("areas", "themes"):
            chosen = [v for v in form.getlist(key) if isinstance(v, str)]
            entry[key] = ["all"] if "all" in chosen else chosen
        raw = str(form.get("members", "")).replace(",", "\n").replace(";", "\n")
        entry["members"] = [m.strip() for m in raw.splitlines() if m.strip()]
        entry["schedule"] = str(form.get("schedule", "")).strip() or "mon 08:00"
        entry["language"] = "en" if form.get("language") == "en" else "sv"
        entry["sources"] = [v for v in form.getlist("sources") if isinstance(v, str)]
        entry["kinds"] = [v for v in form.getlist("kinds") if isinstance(v, str)]
        if form.get("enabled") != "1":
            entry["enabled"] = False
        prior = dict(existing or {})
        # Defaults are left out unless the entry already spelled them out.
        defaults = {
            "areas": ["all"],
            "themes": ["all"],
            "language": "sv",
            "sources": [],
            "kinds": [],
        }
        for key, default in defaults.items():
            if entry[key] == default and key not in prior:
                entry.pop(key)
        for k, v in prior.items():
            if k not in entry and k != "enabled" and k not in defaults:
                entry[k] = v
        return cls(entry, errors)

    def fields(self, t: Any, lang: str, app: Any, *, new: bool) -> list[FormField]:
        e = self.entry
        out = []
        if new:
            out.append(
                FormField(
                    "id",
                    t("Id"),
                    value=e.get("id", ""),
                    required=True,
                    hint=t("Små bokstäver, siffror, - och _. Kan inte ändras senare."),
                )
            )
        out += [
            FormField("name", t("Namn"), value=e.get("name", ""), required=True),
            FormField(
                "areas",
                t("Områden"),
                "checkboxes",
                list(e.get("areas", ["all"])),
                choices=[
                    ("all", t("Alla områden")),
                    *((a, label(AREA_LABELS, a, lang)) for a in AREAS),
                ],
                hint=t("Nätverket får poster med något av de valda områdena."),
            ),
            FormField(
                "themes",
                t("Teman"),
                "checkboxes",
                list(e.get("themes", ["all"])),
                choices=[
                    ("all", t("Alla teman")),
                    *((x, label(THEME_LABELS, x, lang)) for x in THEMES),
                ],
                hint=t("… och något av de valda temana."),
            ),
            FormField(
                "members",
                t("Medlemmar"),
                "textarea",
                "\n".join(e.get("members", [])),
                hint=t("En e-postadress per rad."),
                rows=6,
            ),
            FormField(
                "schedule",
                t("Utskick"),
                value=e.get("schedule", "mon 08:00"),
                required=True,
                hint=t(
                    "'daily 07:30', 'weekdays 08:00', 'mon 08:00' eller 'mon,thu 08:00' (svensk tid)."
                ),
            ),
            FormField(
                "language",
                t("Språk i utskicket"),
                "select",
                e.get("language", "sv"),
                choices=[("sv", "svenska"), ("en", "English")],
            ),
            FormField(
                "sources",
                t("Bara dessa källor (inget val = alla)"),
                "checkboxes",
                list(e.get("sources", [])),
                choices=[(s.id, s.name) for s in app.config.sources],
            ),
            FormField(
                "kinds",
                t("Bara dessa typer (inget val = alla)"),
                "checkboxes",
                list(e.get("kinds", [])),
                choices=[(k, label(KIND_LABELS, k, lang)) for k in KIND_LABELS],
            ),
            FormField(
                "enabled", t("Aktivt (utskick enligt schemat)"), "checkbox", e.get("enabled", True)
            ),
        ]
        return out


@router.get("/networks", response_class=HTMLResponse)
def networks_list(request: Request) -> HTMLResponse:
    return render(request, "admin/networks.html", {"networks": _app(request).config.networks})


def _render_network_form(
    request: Request,
    form: NetworkForm,
    *,
    new: bool,
    version: str,
    conflict: str | None = None,
    saved: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    app = _app(request)
    return render(
        request,
        "admin/network_form.html",
        {
            "form": form,
            "new": new,
            "fields": form.fields(_(request), request_lang(request), app, new=new),
            "errors": form.errors,
            "general": form.general,
            "version": version,
            "conflict": conflict,
            "saved": saved,
            "action": "/admin/networks/new" if new else f"/admin/networks/{form.entry['id']}",
        },
        status_code=status_code,
    )


@router.get("/networks/new", response_class=HTMLResponse)
def network_new(request: Request) -> HTMLResponse:
    cf = ConfigFile.read(config_file_path(_app(request)))
    return _render_network_form(
        request, NetworkForm({"id": "", "name": ""}), new=True, version=cf.version
    )


@router.get("/networks/{network_id}", response_class=HTMLResponse)
def network_edit(request: Request, network_id: str) -> HTMLResponse:
    cf = ConfigFile.read(config_file_path(_app(request)))
    index = cf.index_of("networks", network_id)
    if index is None:
        raise HTTPException(404)
    return _render_network_form(
        request, NetworkForm(cf.entries("networks")[index]), new=False, version=cf.version
    )


@router.post("/networks/new", response_class=HTMLResponse)
async def network_create(request: Request, user: str = Depends(require_admin)) -> Response:
    return await _network_submit(request, user, None)


@router.post("/networks/{network_id}", response_class=HTMLResponse)
async def network_update(
    request: Request, network_id: str, user: str = Depends(require_admin)
) -> Response:
    return await _network_submit(request, user, network_id)


async def _network_submit(request: Request, user: str, network_id: str | None) -> Response:
    app = _app(request)
    t = _(request)
    form_in = await form_data(request)
    new = network_id is None
    version = str(form_in.get("version", ""))
    cf = ConfigFile.read(config_file_path(app))
    existing = _existing_entry(cf, "networks", network_id)
    form = NetworkForm.from_form(form_in, existing, t)
    nid = form.entry["id"]
    if new and nid and cf.index_of("networks", nid) is not None:
        form.errors.setdefault("id", []).append(
            t("Det finns redan ett nätverk med id {id}", id=nid)
        )
    if not form.errors:
        _validate_entry(request, cf, "networks", form, None if new else nid, NETWORK_KEYS)
    if form.errors or form.general:
        return _render_network_form(request, form, new=new, version=version, status_code=422)
    refused = await _save_entry(
        app,
        cf,
        user,
        "network.add" if new else "network.edit",
        nid,
        existing,
        form.entry,
        version,
        conflict_message(t),
        functools.partial(_render_network_form, request, form, new=new),
    )
    if refused is not None:
        return refused
    _session(request).flash(t("Nätverket {name} sparades.", name=form.entry["name"]))
    return _redirect(f"/admin/networks/{nid}/digest")


@router.get("/networks/{network_id}/delete", response_class=HTMLResponse)
def network_delete_confirm(request: Request, network_id: str) -> HTMLResponse:
    try:
        net = _app(request).config.network(network_id)
    except KeyError:
        raise HTTPException(404) from None
    return render(
        request, "admin/confirm_delete.html", {"what": "network", "entry": net, "count": 0}
    )


@router.post("/networks/{network_id}/delete")
async def network_delete(
    request: Request, network_id: str, user: str = Depends(require_admin)
) -> Response:
    t = _(request)
    return await _delete_entry(
        request, user, "networks", network_id, t("Nätverket {id} togs bort.", id=network_id)
    )


def _digest_preview(app: Any, network_id: str) -> tuple[Any, Any]:
    from notifications.digest import build_digest
    from notifications.render import render_digest

    digest = build_digest(app, network_id, app.now())
    return digest, render_digest(digest, app.config.tz)


@router.get("/networks/{network_id}/digest", response_class=HTMLResponse)
async def network_digest(request: Request, network_id: str) -> HTMLResponse:
    """What the network's next digest would hold if it went out now (nothing is sent)."""
    app = _app(request)
    try:
        net = app.config.network(network_id)
    except KeyError:
        raise HTTPException(404) from None
    digest, rendered = await run_in_threadpool(_digest_preview, app, network_id)
    return render(
        request,
        "admin/digest.html",
        {"network": net, "digest": digest, "rendered": rendered},
    )


@router.get("/networks/{network_id}/digest.html")
async def network_digest_html(request: Request, network_id: str) -> Response:
    """The digest's HTML part, for the preview's sandboxed frame: no scripts, no requests,
    only the email's own inline styles."""
    app = _app(request)
    try:
        app.config.network(network_id)
    except KeyError:
        raise HTTPException(404) from None
    _digest, rendered = await run_in_threadpool(_digest_preview, app, network_id)
    html, _text = rendered.for_member("#unsubscribe-preview")
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "no-store",
        },
    )


@router.get("/deliveries", response_class=HTMLResponse)
def delivery_log(request: Request) -> HTMLResponse:
    """Sent, failed and opted-out deliveries; opt-outs."""
    from watcher.storage.deliveries import DeliveryStore

    app = _app(request)
    store = DeliveryStore(app.storage)
    network = request.query_params.get("network") or None
    if network is not None and network not in {n.id for n in app.config.networks}:
        network = None
    status = request.query_params.get("status") or None
    if status not in (None, "sent", "failed", "opted_out", "pending", "sending", "cancelled"):
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
    from watcher.storage.deliveries import DeliveryStore

    app = _app(request)
    n = DeliveryStore(app.storage).retry_failed()
    app.storage.audit(user, "deliveries.retry", "", {"queued": n}, app.now())
    _session(request).flash(_(request)("{n} misslyckade utskick köades igen.", n=n))
    return _redirect("/admin/deliveries")


# -- rules -----------------------------------------------------------------------------------


def rule_targets(config: Config) -> list[Path]:
    """The rule files the admin may edit: those in ``[rules] paths`` (a folder's
    ``*.toml`` files), or ``rules/local.toml`` next to config.toml when none is listed."""
    out: list[Path] = []
    for p in config.rules.paths:
        path = config.resolve_path(p)
        if path.is_dir():
            out.extend(sorted(path.glob("*.toml")))
        else:
            out.append(path)
    if not config.rules.paths:
        out.append(config.base_dir / "rules" / "local.toml")
    return [p.resolve() for p in out]


def _target(config: Config, raw: str | None) -> Path:
    targets = rule_targets(config)
    for p in targets:
        if raw == str(p):
            return p
    raise HTTPException(404)


NEW_RULES_TEXT = """\
# Local classification rules, loaded after the built-in ones (rules/defaults/).
# A rule with the id of a built-in rule replaces it. Format: docs/rules.md.
#
# [[rule]]
# id = "local-example"
# area = "kompetens"
# terms.sv = ["webbinarium", "utbildningsdag"]
"""


@router.get("/rules", response_class=HTMLResponse)
def rules_overview(request: Request) -> HTMLResponse:
    from rules.loader import DEFAULTS_DIR

    app = _app(request)
    classifier = app.classifier
    targets = [(p, p.exists()) for p in rule_targets(app.config)]
    defaults = sorted(DEFAULTS_DIR.glob("*.toml")) if app.config.rules.use_defaults else []
    return render(
        request,
        "admin/rules.html",
        {
            "targets": targets,
            "defaults": defaults,
            "error": classifier.error if classifier is not None else None,
            "version": classifier.version if classifier is not None else "",
            "count": len(classifier.store.rules.rules) if classifier is not None else 0,
        },
    )


@router.get("/rules/default", response_class=HTMLResponse)
def rules_default(request: Request) -> HTMLResponse:
    from rules.loader import DEFAULTS_DIR

    name = request.query_params.get("name", "")
    files = {p.name: p for p in DEFAULTS_DIR.glob("*.toml")}
    if name not in files:
        raise HTTPException(404)
    return render(
        request,
        "admin/rules_view.html",
        {"name": name, "text": files[name].read_text(encoding="utf-8")},
    )


@router.get("/rules/edit", response_class=HTMLResponse)
def rules_edit(request: Request) -> HTMLResponse:
    app = _app(request)
    path = _target(app.config, request.query_params.get("file"))
    tf = TextFile.read(path)
    return render(
        request,
        "admin/rules_edit.html",
        _rules_context(
            path, tf.text if tf.exists else NEW_RULES_TEXT, tf.version, exists=tf.exists
        ),
    )


def _rules_context(
    path: Path, text: str, version: str, *, exists: bool, **extra: Any
) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "file": str(path),
        "text": text,
        "version": version,
        "exists": exists,
        "errors": [],
        "diffs": None,
        "summary": None,
        "tested": "",
        "conflict": None,
        "checked": 0,
        "changed_total": 0,
    }
    ctx.update(extra)
    return ctx


def _text_token(text: str, version: str) -> str:
    return hashlib.sha256(f"{version}\0{text}".encode()).hexdigest()[:24]


def candidate_rules(config: Config, path: Path, text: str) -> Any:
    """The rule set in force if ``path`` held ``text``: the same files in the same order
    (defaults first), with this one's text replaced. Raises RuleSetError."""
    from rules.loader import RuleSetError, rule_files, rules_from_texts

    files = [
        f.resolve()
        for f in rule_files(
            [config.resolve_path(p) for p in config.rules.paths], defaults=config.rules.use_defaults
        )
    ]
    texts: list[tuple[str, str]] = []
    for f in files:
        if f == path:
            texts.append((str(f), text))
        else:
            try:
                texts.append((str(f), f.read_text(encoding="utf-8")))
            except OSError as e:
                from watcher.exceptions import RuleError

                raise RuleSetError([RuleError(f"cannot read rule file: {e}", str(f))]) from e
    if path not in files:
        texts.append((str(path), text))
    return rules_from_texts(texts)


BACKTEST_SHOWN = 100


def run_backtest(app: Any, new_rules: Any) -> tuple[list[Any], int]:
    """(diffs, items checked): stored items whose tags would change, against the rules in
    force with the sources' default tags, in batches."""
    from rules.backtest import backtest

    classifier = app.classifier
    defaults = {s.id: (s.areas, s.themes) for s in app.config.sources}
    ids = app.storage.all_item_ids()
    diffs: list[Any] = []
    for start in range(0, len(ids), 500):
        batch = app.storage.get_items(ids[start : start + 500])
        diffs.extend(backtest(batch, classifier.store.rules, new_rules, source_defaults=defaults))
    return diffs, len(ids)


@router.post("/rules/edit", response_class=HTMLResponse)
async def rules_submit(request: Request, user: str = Depends(require_admin)) -> Response:
    """Check and back-test (``action=check``), then save (``action=save``) a rule file.
    A save whose text was not back-tested as it stands shows the back-test first."""
    from rules.backtest import summarise
    from rules.loader import RuleSetError

    app = _app(request)
    t = _(request)
    form = await form_data(request)
    path = _target(app.config, str(form.get("file", "")))
    text = str(form.get("text", "")).replace("\r\n", "\n")
    version = str(form.get("version", ""))
    exists = version != ABSENT
    action = form.get("action", "check")
    try:
        new_rules = await run_in_threadpool(candidate_rules, app.config, path, text)
    except RuleSetError as e:
        return render(
            request,
            "admin/rules_edit.html",
            _rules_context(path, text, version, exists=exists, errors=e.errors),
            status_code=422,
        )
    token = _text_token(text, version)
    if action != "save" or form.get("tested") != token:
        diffs, checked = await run_in_threadpool(run_backtest, app, new_rules)
        return render(
            request,
            "admin/rules_edit.html",
            _rules_context(
                path,
                text,
                version,
                exists=exists,
                diffs=diffs[:BACKTEST_SHOWN],
                summary=summarise(diffs),
                tested=token,
                checked=checked,
                changed_total=len(diffs),
            ),
        )
    current = TextFile.read(path)
    try:
        new_version = await run_in_threadpool(save_text, path, text, version)
    except EditConflict:
        return render(
            request,
            "admin/rules_edit.html",
            _rules_context(
                path,
                text,
                current.version,
                exists=current.exists,
                conflict=t(
                    "Regelfilen har ändrats sedan du öppnade den. Inget sparades. Din text finns kvar nedan; provkör igen för att spara över den nya versionen."
                ),
            ),
            status_code=409,
        )
    try:
        report = await run_in_threadpool(_after_rules_saved, app, path)
    except WatcherError as e:  # saved, but not in force (another rule file broke meanwhile)
        report = None
        _session(request).flash(t("Kunde inte spara: {error}", error=str(e)), "error")
    diff = "".join(
        difflib.unified_diff(
            current.text.splitlines(True),
            (text if text.endswith("\n") else text + "\n").splitlines(True),
            fromfile=f"{path.name} (before)",
            tofile=f"{path.name} (after)",
        )
    )
    details: dict[str, Any] = {
        "version": {"old": current.version[:16], "new": new_version[:16]},
        "diff": diff[:20000],
    }
    if report is not None:
        details["retag"] = {
            "items": report.items,
            "changed": report.changed,
            "added": report.added,
            "removed": report.removed,
        }
        _session(request).flash(
            t(
                "Reglerna sparades. {changed} av {items} poster fick ändrade taggar.",
                changed=report.changed,
                items=report.items,
            )
        )
    app.storage.audit(user, "rules.save", str(path), details, app.now())
    return _redirect("/admin/rules")


def _after_rules_saved(app: Any, path: Path) -> Any:
    """List a newly created file in config.toml, reload the rules, re-tag stored items.
    Raises WatcherError when the rules in force cannot be loaded."""
    from watcher.classify import retag

    cfg = app.config
    listed = {cfg.resolve_path(p).resolve() for p in cfg.rules.paths}
    if path not in listed and not any(path.is_relative_to(p) for p in listed if p.is_dir()):
        cf = ConfigFile.read(config_file_path(app))
        try:
            rel = str(path.relative_to(cfg.base_dir.resolve()))
        except ValueError:
            rel = str(path)
        cf.add_rules_path(rel)
        app.set_config(cf.save(cf.version))
    classifier = app.classifier
    if not classifier.reload_if_changed():
        classifier.store.reload()  # same size and time stamp as before: load it anyway
    if classifier.error is not None:
        raise WatcherError(f"the rules do not load: {classifier.error}")
    report = retag(app.storage, classifier, app.now())
    if report.changed:
        for hook in app.hooks.items_retagged:
            hook(report.changed_ids)
    return report


# -- installing ------------------------------------------------------------------------------


async def not_logged_in(request: Request, exc: Exception) -> Response:
    from watcher.web.public import _error_page

    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        from urllib.parse import urlencode

        return _redirect("/admin/login?" + urlencode({"next": auth.safe_next(target)}))
    return _error_page(request, 403)


def install(web: FastAPI) -> None:
    """The admin: session middleware, routers, the login redirect."""
    app = web.state.app
    web.state.admin = AdminState()

    def codec(scope: Any) -> auth.SessionCodec:
        state: AdminState = web.state.admin
        if state.codec is None:
            state.codec = auth.SessionCodec(auth.secret_key(app))
        return state.codec

    def secure(scope: Any) -> bool:
        return bool(scope.get("scheme") == "https") or app.config.watcher.base_url.startswith(
            "https:"
        )

    web.add_middleware(
        auth.SessionMiddleware,
        codec=codec,
        now=lambda _scope: app.now(),
        fingerprint=lambda _scope: auth.credentials_for(app.config).fingerprint,
        max_age=lambda _scope: app.config.web.session_max_age,
        secure=secure,
    )
    web.include_router(login_router)
    web.include_router(router)
    web.add_exception_handler(NotLoggedIn, not_logged_in)
