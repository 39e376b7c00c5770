"""Configuration: ``config.toml`` read into validated, typed models.

Every problem is reported with its dotted key path (``sources[3].options.item``), all at
once, as a ``ConfigError``. Secrets never live here: an SMTP or admin password in the file is
itself a config error; they come from the environment.

This module is at the bottom of the layers (adapters, the HTTP client and everything else
import it), so it cannot know the adapters: a source's ``options`` stay a raw table here.
They are checked against the adapter's own ``Options`` model (unknown keys are errors) one
layer up, by ``sources.registry``, whose ``load_config`` / ``validate_config`` pass that check
in through ``checks`` so its problems come out with the model's, in one ``ConfigError``.
Config that is loaded for use goes through those two; ``load`` and ``validate_data`` here
alone check the structure only.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from watcher.exceptions import ConfigError, ConfigProblem

DEFAULT_CONFIG = "config.toml"
ENV_CONFIG = "WATCHER_CONFIG"

AREAS: tuple[str, ...] = (
    "fonder-program",
    "paverkan",
    "kompetens",
    "partners",
    "forhandsinfo",
    "natverkssamverkan",
)
THEMES: tuple[str, ...] = (
    "arbetsmarknad",
    "utbildning",
    "social-valfard",
    "samhallsbyggnad",
    "naringsliv-innovation",
)

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class Strict(BaseModel):
    """Base for config models: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Schedule:
    """A source's polling schedule: an interval or a cron expression."""

    interval: timedelta | None = None
    cron: str | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        m = _INTERVAL_RE.match(text)
        if m:
            seconds = int(m.group(1)) * _UNITS[m.group(2)]
            if seconds < 60:
                raise ValueError("interval must be at least 1 minute")
            return cls(interval=timedelta(seconds=seconds))
        fields = text.split()
        if len(fields) == 5:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(text)
            except ValueError as e:
                raise ValueError(f"invalid cron expression {text!r}: {e}") from e
            return cls(cron=text)
        raise ValueError(
            f"{text!r} is neither an interval like '6h', '30m', '1d' "
            "nor a 5-field cron expression like '0 7 * * 1-5'"
        )

    @property
    def approx_seconds(self) -> float:
        """The typical time between runs (for back-off caps and 'overdue' checks)."""
        if self.interval is not None:
            return self.interval.total_seconds()
        return 86400.0


def validate_email(address: str) -> str:
    """One plain address: no display name, no list, no CR/LF."""
    a = address.strip()
    if not _EMAIL_RE.match(a) or len(a) > 254:
        raise ValueError(f"{address!r} is not one plain email address")
    return a


class WatcherSection(Strict):
    database_url: str = "sqlite:///var/watcher.db"
    timezone: str = "Europe/Stockholm"
    user_agent: str = "EU-bevakning/0.1 (+https://goteborgsregionen.se; contact: eu-bevakning@goteborgsregionen.se)"
    data_dir: str = "var"
    base_url: str = "http://127.0.0.1:8000"
    # Spread the first polls after a start over this many seconds (politeness).
    start_jitter: float = Field(60.0, ge=0, le=3600)
    # Worker processes for parsing and classifying (0: threads of the service's process).
    workers: int = Field(0, ge=0, le=32)
    # Seconds a stop (SIGTERM) waits for polls and digests in flight before it cancels them.
    shutdown_grace: float = Field(20.0, ge=0, le=600)
    # Every `watcher run` process on this database polls (each source once per slot, by
    # whichever process comes first), instead of only the one that holds the scheduler lock.
    shared_polling: bool = False

    @field_validator("user_agent")
    @classmethod
    def _ua(cls, v: str) -> str:
        # It goes into an HTTP header: printable ASCII only.
        if not v.strip() or any(not (32 <= ord(c) < 127) for c in v):
            raise ValueError("use printable ASCII only (it is sent as an HTTP header)")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v


class FetchSection(Strict):
    timeout: float = Field(30.0, gt=0, le=600)
    max_bytes: int = Field(10_000_000, gt=0)
    max_redirects: int = Field(5, ge=0, le=20)
    per_host_concurrency: int = Field(2, ge=1, le=50)
    global_concurrency: int = Field(20, ge=1, le=500)
    retries: int = Field(2, ge=0, le=10)
    backoff: float = Field(1.0, ge=0, le=60)
    # Seconds a Retry-After is waited out inside a poll; a longer one ends the poll as
    # rate_limited and the scheduler tries the source again when the server said.
    max_retry_after: float = Field(5.0, ge=0, le=30)
    respect_robots_txt: bool = True
    allow_private_networks: tuple[str, ...] = ()

    @field_validator("allow_private_networks")
    @classmethod
    def _allow(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for entry in v:
            parse_allow_entry(entry)
        return v


def parse_allow_entry(
    entry: str,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]:
    """``10.0.0.0/8``, ``127.0.0.1``, ``127.0.0.1:8080`` or ``[::1]:8080`` → network, port."""
    text = entry.strip()
    port: int | None = None
    m = re.match(r"^\[(.+)\]:(\d+)$", text) or re.match(r"^([0-9.]+(?:/\d+)?):(\d+)$", text)
    if m:
        text, port = m.group(1), int(m.group(2))
    try:
        return ipaddress.ip_network(text, strict=False), port
    except ValueError as e:
        raise ValueError(f"{entry!r} is not an IP address, CIDR network or IP:port") from e


class WebSection(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    admin_user: str = "admin"
    # A bcrypt-like hash set by `watcher admin set-password`; or WATCHER_ADMIN_PASSWORD.
    admin_password_hash: str | None = None
    secret_key_env: str = "WATCHER_SECRET_KEY"
    session_max_age: int = Field(8 * 3600, ge=60)

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and ("admin_password" in data or "secret_key" in data):
            raise ValueError(
                "passwords and secret keys do not belong in config.toml: set "
                "WATCHER_ADMIN_PASSWORD / WATCHER_SECRET_KEY in the environment "
                "or use `watcher admin set-password`"
            )
        return data


class SmtpSection(Strict):
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str = "WATCHER_SMTP_PASSWORD"
    timeout: float = Field(30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "password" in data:
            raise ValueError(
                "the SMTP password must not be in config.toml: put it in the environment "
                "variable named by email.smtp.password_env (default WATCHER_SMTP_PASSWORD)"
            )
        return data


class EmailSection(Strict):
    backend: Literal["file", "smtp"] = "file"
    sender: str = "EU-bevakning <eu-bevakning@localhost>"
    outbox: str = "var/outbox"
    max_attempts: int = Field(5, ge=1, le=50)
    retry_delay: float = Field(60.0, ge=0)
    closing_soon_days: int = Field(14, ge=1, le=90)
    flood_threshold: int = Field(50, ge=1)
    # Hours: a digest slot that passed while no process ran is sent at start when it is at
    # most this old; an older one is recorded as missed for the admin.
    missed_digest_grace: float = Field(6.0, ge=0, le=168)
    smtp: SmtpSection = SmtpSection()


_APPRISE_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]{1,31}://\S+$", re.I)


class AdminSection(Strict):
    """Who is told when something breaks (``notifications/alerts.py``)."""

    # Plain addresses that get each alert by email, through [email]'s transport.
    alert_emails: tuple[str, ...] = ()
    # Apprise URLs (msteams://, slack://, matrix://, json:// …): they carry tokens, so they
    # are never shown, logged or audited whole (``notifications.alerts.redact_alert_url``).
    alert_urls: tuple[str, ...] = ()
    # A source is reported failing after this many failed polls in a row.
    alert_after_failures: int = Field(3, ge=1, le=100)

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_email(a) for a in v)

    @field_validator("alert_urls")
    @classmethod
    def _urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, url in enumerate(v):
            if not _APPRISE_URL_RE.match(url.strip()):
                # The URL itself is not repeated: it may hold a token.
                raise ValueError(
                    f"entry {i + 1} is not an Apprise URL like 'msteams://…' or 'json://host/…'"
                )
        return tuple(u.strip() for u in v)


class RulesSection(Strict):
    paths: tuple[str, ...] = ()  # extra rule files/folders; the defaults are always loaded first
    use_defaults: bool = True


class SourceConfig(Strict):
    id: str
    name: str
    kind: str
    url: str
    schedule: str = "6h"
    enabled: bool = True
    areas: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    language: str | None = None
    # A raw table here: the adapter's Options model checks it (sources.registry).
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("use lower-case letters, digits, '-' and '_' (max 63)")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        Schedule.parse(v)
        return v

    @field_validator("areas")
    @classmethod
    def _areas(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _known(v, AREAS, "area")

    @field_validator("themes")
    @classmethod
    def _themes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _known(v, THEMES, "theme")

    @property
    def parsed_schedule(self) -> Schedule:
        return Schedule.parse(self.schedule)


_NETWORK_SCHEDULE_RE = re.compile(
    r"^\s*(daily|weekdays|mon|tue|wed|thu|fri|sat|sun)((?:,(?:mon|tue|wed|thu|fri|sat|sun))*)"
    r"\s+([01]?\d|2[0-3]):([0-5]\d)\s*$"
)


@dataclass(frozen=True)
class DigestSchedule:
    """When a network's digest goes out: days of week (0 = Monday) and a local time."""

    days: tuple[int, ...]
    hour: int
    minute: int

    @classmethod
    def parse(cls, text: str) -> DigestSchedule:
        m = _NETWORK_SCHEDULE_RE.match(text.lower())
        if not m:
            raise ValueError(
                f"{text!r}: use 'daily HH:MM', 'weekdays HH:MM' or days like 'mon 08:00', "
                "'mon,thu 08:00'"
            )
        names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        first = m.group(1)
        if first == "daily":
            days: tuple[int, ...] = tuple(range(7))
        elif first == "weekdays":
            days = tuple(range(5))
        else:
            extra = [d for d in m.group(2).split(",") if d]
            days = tuple(sorted({names.index(first), *(names.index(d) for d in extra)}))
        return cls(days, int(m.group(3)), int(m.group(4)))

    def cron_fields(self) -> dict[str, str]:
        names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        return {
            "day_of_week": ",".join(names[d] for d in self.days),
            "hour": str(self.hour),
            "minute": str(self.minute),
        }


class NetworkConfig(Strict):
    id: str
    name: str
    areas: tuple[str, ...] = ("all",)
    themes: tuple[str, ...] = ("all",)
    members: tuple[str, ...] = ()
    schedule: str = "mon 08:00"
    language: Literal["sv", "en"] = "sv"
    sources: tuple[str, ...] = ()  # optional extra condition: only these sources
    kinds: tuple[str, ...] = ()  # optional extra condition: only these kinds
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("use lower-case letters, digits, '-' and '_' (max 63)")
        return v

    @field_validator("areas")
    @classmethod
    def _areas(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return v if tuple(v) == ("all",) else _known(v, AREAS, "area")

    @field_validator("themes")
    @classmethod
    def _themes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return v if tuple(v) == ("all",) else _known(v, THEMES, "theme")

    @field_validator("members")
    @classmethod
    def _members(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(validate_email(a) for a in v)
        seen: set[str] = set()
        for a in out:
            if a.lower() in seen:
                raise ValueError(f"{a!r} is listed twice")
            seen.add(a.lower())
        return out

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        DigestSchedule.parse(v)
        return v

    @property
    def parsed_schedule(self) -> DigestSchedule:
        return DigestSchedule.parse(self.schedule)


class SubscriptionsSection(Strict):
    """Self-service sign-up at ``/prenumerera`` (``notifications/subscriptions.py``)."""

    # Only addresses in these domains may sign up (the member municipalities'); empty: any.
    allowed_domains: tuple[str, ...] = ()
    # When a person's own digest (areas and themes, saved searches) is sent, by frequency.
    daily_schedule: str = "daily 07:00"
    weekly_schedule: str = "mon 07:00"

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(d.strip().lower().lstrip("@") for d in v)
        for d in out:
            if not re.match(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$", d):
                raise ValueError(f"{d!r} is not a domain like 'goteborg.se'")
        return out

    @field_validator("daily_schedule", "weekly_schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        DigestSchedule.parse(v)
        return v


def _known(values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    for v in values:
        if v not in allowed:
            raise ValueError(f"unknown {what} {v!r}; known: {', '.join(allowed)}")
    return tuple(values)


class Config(Strict):
    watcher: WatcherSection = WatcherSection()
    fetch: FetchSection = FetchSection()
    web: WebSection = WebSection()
    email: EmailSection = EmailSection()
    rules: RulesSection = RulesSection()
    admin: AdminSection = AdminSection()
    sources: tuple[SourceConfig, ...] = ()
    networks: tuple[NetworkConfig, ...] = ()
    subscriptions: SubscriptionsSection = SubscriptionsSection()

    # Set by load(); not part of the file.
    path: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> Config:
        for what, ids in (
            ("sources", [s.id for s in self.sources]),
            ("networks", [n.id for n in self.networks]),
        ):
            dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
            if dupes:
                raise ValueError(f"{what}: duplicate id(s) {', '.join(dupes)}")
        return self

    @functools.cached_property
    def sources_by_id(self) -> dict[str, SourceConfig]:
        """The sources by id (the config is frozen: made once, on first use)."""
        return {s.id: s for s in self.sources}

    def source(self, source_id: str) -> SourceConfig:
        """The source with this id (``KeyError`` if none): a re-tag of every stored item
        asks once per item, so not a walk through thousands of sources each time."""
        return self.sources_by_id[source_id]

    def network(self, network_id: str) -> NetworkConfig:
        for n in self.networks:
            if n.id == network_id:
                return n
        raise KeyError(network_id)

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent if self.path else Path.cwd()

    def resolve_path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.base_dir / path

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.watcher.timezone)


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def problems_from(e: ValidationError) -> list[ConfigProblem]:
    """A pydantic error as our problems: dotted key paths, plain messages ("unknown key" for
    a key the model forbids). Public so that checks from the layers above (the adapter
    options) read exactly like the model's own."""
    problems = []
    for err in e.errors():
        loc = [p for p in err["loc"] if p not in ("function-after", "function-before")]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        msg = msg.removeprefix("Value error, ")
        problems.append(ConfigProblem(_loc(loc), msg))
    return problems


ConfigCheck = Callable[[Mapping[str, Any]], list[ConfigProblem]]
"""A check over the raw parsed data that a layer above adds (``sources.registry.check_options``).
It sees the data before the models do, so its problems are reported along with theirs."""


def validate_data(
    data: Mapping[str, Any], path: str | None = None, *, checks: Sequence[ConfigCheck] = ()
) -> Config:
    """Validate parsed TOML data, every problem at once. Without ``checks`` only the
    structure is checked (options are raw tables): to validate config for use, call
    ``sources.registry.validate_config``, which adds the adapter-options check."""
    problems = [p for check in checks for p in check(data)]
    try:
        cfg = Config.model_validate({**data, "path": path})
    except ValidationError as e:
        raise ConfigError(problems_from(e) + problems, source=path or "") from e
    if problems:
        raise ConfigError(problems, source=path or "")
    return cfg


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else Path(DEFAULT_CONFIG)


def load(
    path: str | os.PathLike[str] | None = None, *, checks: Sequence[ConfigCheck] = ()
) -> Config:
    """Read and validate the config file. A missing default file means all defaults.
    ``checks`` as in ``validate_data``: for use, call ``sources.registry.load_config``."""
    p = config_path(path)
    if not p.exists():
        if path or os.environ.get(ENV_CONFIG):
            raise ConfigError(f"config file {p} does not exist")
        return validate_data({}, None, checks=checks)
    try:
        data = tomli.loads(p.read_text(encoding="utf-8"))
    except tomli.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", source=str(p)) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {e}", source=str(p)) from e
    return validate_data(data, str(p), checks=checks)
