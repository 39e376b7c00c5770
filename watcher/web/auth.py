"""Admin authentication: password hashes, signed session cookies, CSRF tokens, login limits.

* **Passwords.** ``watcher admin set-password`` stores a salted scrypt hash
  (``scrypt$n$r$p$salt$hash``, base64) in ``[web] admin_password_hash``. Without a hash,
  the password in the environment variable ``WATCHER_ADMIN_PASSWORD`` is accepted. With
  neither, nobody can log in (the login page says how to set one).
* **Sessions.** A cookie signed with the secret key (``WATCHER_SECRET_KEY``, or a random key
  generated once and kept in the database's ``meta`` table), ``HttpOnly``,
  ``SameSite=Strict``, ``Secure`` when served over HTTPS, scoped to ``/admin``. It holds a
  CSRF token and an expiry computed from the app's clock; a logged-in one also the user, a
  fingerprint of the password, and a random session id whose record the database keeps
  (``Storage.start_session``). A login is live only while that record is: logout, a
  password change and ``watcher admin revoke-sessions`` delete it, and a copied cookie is
  then worth nothing. Expiry is absolute from login and nothing is written when a session
  is used, so a GET only reads. Changing the password also ends every session through the
  fingerprint (an environment password changed under a running service).
* **CSRF.** Every visitor of ``/admin`` (logged in or not) gets a session with a random token;
  every form posts it back and ``check_csrf`` compares in constant time. The token is
  replaced at login and logout. Every state-changing request must also come from the
  service's own origin (``check_origin``: ``Origin``, or ``Referer`` when there is no
  ``Origin``, against the origin the request came to and ``[watcher] base_url``).
* **Login limits.** Failed logins are counted per client address and per user name in a
  sliding window (the app's clock); over the limit, logins are refused with 429 and a
  Retry-After until the window passes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watcher.app import App
from watcher.config import Config
from watcher.exceptions import StorageError

log = logging.getLogger(__name__)

SESSION_COOKIE = "watcher_admin"
SECRET_META_KEY = "web.secret_key"
PASSWORD_ENV = "WATCHER_ADMIN_PASSWORD"
ANON_SESSION = timedelta(hours=2)  # a login form stays usable this long
MIN_PASSWORD_LENGTH = 10

# scrypt cost: 2**15 × 8 × 128 bytes = 32 MiB and ~0.1 s per check: slow enough to hurt a
# stolen hash, quick enough for a login.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


# -- password hashes ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash of ``password``, as stored in ``[web] admin_password_hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r), dklen=32
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _maxmem(n: int, r: int) -> int:
    return 128 * n * r * 2 + 1024 * 1024


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches the stored hash; a malformed hash matches nothing."""
    try:
        scheme, n_s, r_s, p_s, salt_s, digest_s = encoded.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt, digest = base64.b64decode(salt_s), base64.b64decode(digest_s)
        if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=_maxmem(n, r),
            dklen=len(digest),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, digest)


@dataclass(frozen=True)
class Credentials:
    """Who may log in, and how the password is checked."""

    user: str
    password_hash: str | None
    env_password: str | None

    @property
    def configured(self) -> bool:
        return bool(self.password_hash or self.env_password)

    def check(self, user: str, password: str) -> bool:
        # Both comparisons always run, so timing does not tell which part was wrong.
        user_ok = hmac.compare_digest(user.encode("utf-8"), self.user.encode("utf-8"))
        if self.password_hash:
            pw_ok = verify_password(password, self.password_hash)
        elif self.env_password:
            pw_ok = hmac.compare_digest(password.encode("utf-8"), self.env_password.encode("utf-8"))
        else:
            pw_ok = False
        return user_ok and pw_ok

    @property
    def fingerprint(self) -> str:
        """Changes when the password changes; kept in sessions to end them then."""
        basis = self.password_hash or self.env_password or ""
        return hashlib.sha256(f"{self.user}\0{basis}".encode()).hexdigest()[:16]


def credentials_for(config: Config, environ: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if environ is None else environ
    return Credentials(
        user=config.web.admin_user,
        password_hash=config.web.admin_password_hash,
        env_password=env.get(PASSWORD_ENV) or None,
    )


# -- the secret key ------------------------------------------------------------------------


def secret_key(app: App) -> str:
    """The key sessions are signed with: from the environment variable named by
    ``[web] secret_key_env``, else generated once and kept in the database (so every web
    process of one installation shares it, and it never lands in config or the repo)."""
    from_env = os.environ.get(app.config.web.secret_key_env)
    if from_env:
        return from_env
    key = app.storage.get_meta(SECRET_META_KEY)
    if not key:
        # Another process may store its key at the same moment: then that one is used.
        with contextlib.suppress(StorageError):
            app.storage.set_meta(SECRET_META_KEY, secrets.token_urlsafe(48))
        key = app.storage.get_meta(SECRET_META_KEY)
        if not key:
            raise StorageError("could not store the session key in the database")
    return str(key)


# -- sessions --------------------------------------------------------------------------------


@dataclass
class Session:
    """The admin session of one request. Changes are written back by the middleware."""

    data: dict[str, Any] = field(default_factory=dict)
    dirty: bool = False

    @property
    def user(self) -> str | None:
        user = self.data.get("user")
        return user if isinstance(user, str) else None

    @property
    def csrf(self) -> str:
        return str(self.data.get("csrf", ""))

    @property
    def sid(self) -> str | None:
        """The id of a logged-in session's server-side record."""
        sid = self.data.get("sid")
        return sid if isinstance(sid, str) else None

    def start(
        self, now: datetime, lifetime: timedelta, user: str | None = None, **extra: Any
    ) -> None:
        """A fresh session (new CSRF token): at first visit, login and logout."""
        flash = self.data.get("flash", [])
        self.data = {
            "csrf": secrets.token_urlsafe(32),
            "exp": (now + lifetime).timestamp(),
            **({"user": user} if user else {}),
            **extra,
        }
        if flash:
            self.data["flash"] = flash
        self.dirty = True

    def flash(self, message: str, level: str = "ok") -> None:
        """A message shown once on the next page (kept short: it travels in the cookie)."""
        if len(message) > 400:
            message = message[:399] + "…"
        self.data["flash"] = [*self.data.get("flash", [])[-4:], [level, message]]
        self.dirty = True

    def pop_flash(self) -> list[tuple[str, str]]:
        msgs = self.data.pop("flash", [])
        if msgs:
            self.dirty = True
        return [(str(level), str(msg)) for level, msg in msgs]


class SessionCodec:
    """Signs and reads the session cookie's value."""

    def __init__(self, key: str) -> None:
        self._s = URLSafeSerializer(key, salt="watcher-admin-session")

    def dumps(self, data: Mapping[str, Any]) -> str:
        return str(self._s.dumps(dict(data)))

    def loads(self, value: str) -> dict[str, Any] | None:
        try:
            data = self._s.loads(value)
        except (BadSignature, ValueError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None


class SessionMiddleware:
    """Loads the admin session for requests under ``/admin`` into ``request.state.session``
    and writes it back as a cookie when it changed. Expired, tampered or foreign cookies
    give a fresh anonymous session, and so does a login whose server-side record is gone
    (``live``: the user of a session id at a time, or None; it only reads)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        codec: Callable[[Scope], SessionCodec],
        now: Callable[[Scope], datetime],
        fingerprint: Callable[[Scope], str],
        live: Callable[[str, datetime], str | None],
        max_age: Callable[[Scope], int],
        secure: Callable[[Scope], bool],
    ) -> None:
        self.app = app
        self.codec, self.now, self.fingerprint, self.live = codec, now, fingerprint, live
        self.max_age, self.secure = max_age, secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_admin_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        codec = self.codec(scope)
        now = self.now(scope)
        session = Session()
        raw = _cookie(scope, SESSION_COOKIE)
        data = codec.loads(raw) if raw else None
        if data is not None and float(data.get("exp", 0)) > now.timestamp():
            if data.get("user") and not await self._logged_in(scope, data, now):
                data = None
        else:
            data = None
        if data is None:
            session.start(now, ANON_SESSION)
        else:
            session.data = data
        scope.setdefault("state", {})["session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.dirty:
                headers = list(message.get("headers", []))
                headers.append(
                    (b"set-cookie", self._cookie_header(scope, codec, session).encode("latin-1"))
                )
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _logged_in(self, scope: Scope, data: Mapping[str, Any], now: datetime) -> bool:
        """A login cookie is good while the password is the one it logged in with and its
        session's record is live, for its user."""
        if data.get("pw") != self.fingerprint(scope):
            return False  # the password changed since this login
        sid = data.get("sid")
        if not isinstance(sid, str) or not sid:
            return False  # a cookie from before sessions were kept server-side
        try:
            user = await run_in_threadpool(self.live, sid, now)
        except StorageError as e:  # refuse rather than guess
            log.warning("admin session not checked, treated as logged out: %s", e)
            return False
        return user is not None and user == data.get("user")

    def _cookie_header(self, scope: Scope, codec: SessionCodec, session: Session) -> str:
        value = codec.dumps(session.data)
        parts = [
            f"{SESSION_COOKIE}={value}",
            "Path=/admin",
            "HttpOnly",
            "SameSite=Strict",
            f"Max-Age={self.max_age(scope)}",
        ]
        if self.secure(scope):
            parts.append("Secure")
        return "; ".join(parts)


def _is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is treated as none
                continue
            if name in jar:
                return jar[name].value
    return None


def check_csrf(session: Session, submitted: str | None) -> bool:
    """The form's token matches the session's (constant-time)."""
    expected = session.csrf
    return bool(expected and submitted) and hmac.compare_digest(
        expected.encode("utf-8"), str(submitted).encode("utf-8")
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL (lower-cased, the default port
    left out), or None for anything else (``null``, another scheme, garbage)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origins(scheme: str, host: str | None, base_url: str = "") -> set[str]:
    """The origins this service answers as: the one a request came to (its scheme and
    ``Host``) and ``[watcher] base_url``'s (behind a proxy that ends TLS, the browser's
    origin is the public one)."""
    found = {origin_of(f"{scheme}://{host}") if host else None}
    found.add(origin_of(base_url) if base_url else None)
    return {o for o in found if o is not None}


def check_origin(origin: str | None, referer: str | None, allowed: Collection[str]) -> str | None:
    """Which header shows a state-changing request came from another site (``"origin"``
    or ``"referer"``), or None when it did not. ``Origin`` decides when present (``null``:
    a sandboxed frame, a ``data:`` page, is another site); without it, ``Referer``. With
    neither (a script, curl) the request passes: every browser sends ``Origin`` with a form
    POST, and the CSRF token and the ``SameSite=Strict`` cookie still guard it."""
    if origin is not None:
        return None if origin_of(origin) in allowed else "origin"
    if referer is not None:
        return None if origin_of(referer) in allowed else "referer"
    return None


# -- login limits ------------------------------------------------------------------------------


@dataclass
class LoginLimiter:
    """Failed logins per key in a sliding window; over ``limit`` the key must wait."""

    limit: int = 5
    window: timedelta = timedelta(minutes=15)
    _failures: dict[str, deque[datetime]] = field(default_factory=dict)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            self._failures.pop(key, None)
        return q

    def retry_after(self, key: str, now: datetime) -> int:
        """Seconds until ``key`` may try again (0: now)."""
        q = self._recent(key, now)
        if len(q) < self.limit:
            return 0
        return max(1, int((q[0] + self.window - now).total_seconds()) + 1)

    def failed(self, key: str, now: datetime) -> None:
        self._recent(key, now)
        self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of addresses
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            self._failures.pop(oldest, None)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


# -- redirects -------------------------------------------------------------------------------


def safe_next(target: str | None, default: str = "/admin") -> str:
    """Where to go after login: only a path inside this site's admin, never another host
    (``//evil``, ``/\\evil``, ``https://evil``, control characters)."""
    if not target or any(ord(c) < 32 or c == "\\" for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if not _is_admin_path(parts.path) or parts.path.startswith("/admin/login"):
        return default
    return target
