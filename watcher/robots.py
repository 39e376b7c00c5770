"""robots.txt: parsing and matching (RFC 9309), and a per-origin cache.

``RobotsRules.parse(text, user_agent)`` keeps the rules that apply to our product token
(the part of the User-Agent before the first ``/``, e.g. ``EU-bevakning``): the groups naming
that token, merged; else the ``*`` groups, merged; else nothing (allow all).
``rules.allows(path)`` follows RFC 9309 rather than ``urllib.robotparser``:

- the longest matching rule wins, and ``Allow`` wins a tie (robotparser takes the first
  rule in file order, which disallows ``/a/b`` under ``Disallow: /a`` + ``Allow: /a/b``);
- ``*`` matches any run of characters and a final ``$`` anchors the end (robotparser
  treats both literally);
- paths and patterns are compared after percent-encoding normalisation;
- ``/robots.txt`` itself is always allowed.

``RobotsCache`` fetches each origin's file through a fetch function the HTTP client supplies
and remembers the outcome (``RobotsEntry``) for 24 hours, as RFC 9309 §2.4 asks (the
service's client lives for months). A file that cannot be fetched again meanwhile leaves the
last copy in force, and is tried again after an hour. How an HTTP
outcome maps to an entry is decided by the client (see ``watcher.http``): a 4xx answer means
"no robots.txt" (allow all); a 5xx answer or a network failure means "unreachable", which
RFC 9309 would treat as "disallow all" but we treat as "allow all, and remember why" so an
operator sees it on source health instead of silently losing a source.

A process that lives for one poll (``watcher poll``) would fetch every origin's robots.txt
again before its feeds, one more round trip per host: ``RobotsCopy`` is an origin's file as
kept between processes (its text, when it was fetched, how), and the client seeds its cache
from a ``RobotsStore`` (the database) and saves what it fetched there. A kept copy is used
until it is 24 hours old, as one in memory is.
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

__all__ = [
    "RobotsCache",
    "RobotsCopy",
    "RobotsEntry",
    "RobotsRules",
    "RobotsStatus",
    "RobotsStore",
    "Rule",
    "normalise_path",
    "product_token",
]

# Characters RFC 3986 reserves: a percent-encoded one keeps its encoding, because decoding
# it would change what the URL means (``%2F`` is not a path separator).
_RESERVED = frozenset(":/?#[]@!$&'()*+,;=")
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_TOKEN_RE = re.compile(r"[A-Za-z_-]+")


def product_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: ``EU-bevakning/0.1 (+…)``
    → ``eu-bevakning`` (lower-case, letters, ``_`` and ``-`` only, as RFC 9309 allows)."""
    m = _TOKEN_RE.match(user_agent.strip())
    return m.group(0).lower() if m else ""


def normalise_path(path: str) -> str:
    """Percent-encoding normalisation for comparing paths with patterns.

    Non-ASCII characters are UTF-8 percent-encoded; an encoded unreserved ASCII character is
    decoded; every remaining escape gets upper-case hex. ``/a%7eb`` and ``/a~b`` compare equal;
    ``/a%2Fb`` and ``/a/b`` do not.
    """

    def unescape(m: re.Match[str]) -> str:
        char = chr(int(m.group(1), 16))
        if 0x21 <= ord(char) < 0x7F and char not in _RESERVED and char != "%":
            return char
        return "%" + m.group(1).upper()

    encoded = "".join(
        c if ord(c) < 0x80 else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in path
    )
    return _PERCENT_RE.sub(unescape, encoded)


@dataclass(frozen=True)
class Rule:
    """One ``Allow``/``Disallow`` line of the group that applies to us."""

    allow: bool
    pattern: str  # normalised

    @property
    def length(self) -> int:
        """Specificity: the pattern's length in characters (RFC 9309's "most octets")."""
        return len(self.pattern)

    def matches(self, path: str) -> bool:
        return _compile(self.pattern).match(path) is not None


_compiled: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    regex = _compiled.get(pattern)
    if regex is None:
        anchored = pattern.endswith("$")
        body = pattern[:-1] if anchored else pattern
        regex = re.compile(
            ".*".join(re.escape(part) for part in body.split("*")) + ("$" if anchored else "")
        )
        _compiled[pattern] = regex
    return regex


@dataclass(frozen=True)
class RobotsRules:
    """The rules of one robots.txt that apply to one product token."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def allow_all(cls) -> RobotsRules:
        return cls(())

    @classmethod
    def parse(cls, text: str, user_agent: str) -> RobotsRules:
        """Parse a robots.txt body and keep the rules for ``user_agent``'s product token."""
        token = product_token(user_agent)
        groups: list[tuple[set[str], list[Rule]]] = []
        agents: set[str] = set()
        rules: list[Rule] = []
        in_rules = False  # a user-agent line after rules starts a new group
        for raw in text.lstrip("\ufeff").splitlines():
            line = raw.split("#", 1)[0].strip()
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key, value = key.strip().lower(), value.strip()
            if key == "user-agent":
                if in_rules:
                    groups.append((agents, rules))
                    agents, rules, in_rules = set(), [], False
                agents.add("*" if value == "*" else product_token(value))
            elif key in ("allow", "disallow"):
                if not agents:
                    continue  # rules before any user-agent line belong to no group
                in_rules = True
                if value:  # an empty Disallow (or Allow) says nothing
                    rules.append(Rule(key == "allow", normalise_path(value)))
        if agents:
            groups.append((agents, rules))
        mine = [r for names, rs in groups if token and token in names for r in rs]
        if not any(token and token in names for names, _ in groups):
            mine = [r for names, rs in groups if "*" in names for r in rs]
        return cls(tuple(mine))

    def allows(self, url: str) -> bool:
        """Whether a URL (or a path with its query) may be fetched."""
        if "://" in url:
            parts = urlsplit(url)
            url = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        path = normalise_path(url or "/")
        if path == "/robots.txt":
            return True
        best: Rule | None = None
        for rule in self.rules:
            if not rule.matches(path):
                continue
            if (
                best is None
                or rule.length > best.length
                or (rule.length == best.length and rule.allow and not best.allow)
            ):
                best = rule
        return best is None or best.allow


class RobotsStatus(enum.StrEnum):
    """How an origin's robots.txt was obtained."""

    FETCHED = "fetched"  # a 2xx answer, parsed
    MISSING = "missing"  # a 4xx answer: no rules, allow all
    UNREACHABLE = "unreachable"  # 5xx or a network failure: allow all, remembered


@dataclass(frozen=True)
class RobotsEntry:
    """What is known about one origin's robots.txt."""

    status: RobotsStatus
    rules: RobotsRules = RobotsRules()
    reason: str = ""  # for MISSING/UNREACHABLE: the error code, e.g. "http_404", "timeout"
    text: str = field(default="", repr=False, compare=False)  # FETCHED: the file, to keep

    def allows(self, url: str) -> bool:
        return self.rules.allows(url)

    @classmethod
    def fetched(cls, body: bytes, user_agent: str) -> RobotsEntry:
        # RFC 9309 mandates UTF-8; a stray invalid byte must not void the whole file.
        return cls.parsed(body.decode("utf-8", "replace"), user_agent)

    @classmethod
    def parsed(cls, text: str, user_agent: str) -> RobotsEntry:
        return cls(RobotsStatus.FETCHED, RobotsRules.parse(text, user_agent), text=text)

    @classmethod
    def missing(cls, reason: str) -> RobotsEntry:
        return cls(RobotsStatus.MISSING, RobotsRules.allow_all(), reason)

    @classmethod
    def unreachable(cls, reason: str) -> RobotsEntry:
        return cls(RobotsStatus.UNREACHABLE, RobotsRules.allow_all(), reason)


@dataclass(frozen=True)
class RobotsCopy:
    """An origin's robots.txt as kept between processes: the file's text (parsed again
    when read, for the User-Agent configured then), when it was fetched, and how it was
    obtained (``FETCHED`` or ``MISSING``; an unreachable file is not kept)."""

    origin: str
    status: RobotsStatus
    fetched_at: datetime
    text: str = ""
    reason: str = ""

    @classmethod
    def of(cls, origin: str, entry: RobotsEntry, fetched_at: datetime) -> RobotsCopy:
        return cls(origin, entry.status, fetched_at, entry.text, entry.reason)

    def entry(self, user_agent: str) -> RobotsEntry:
        if self.status is RobotsStatus.FETCHED:
            return RobotsEntry.parsed(self.text, user_agent)
        return RobotsEntry(self.status, RobotsRules.allow_all(), self.reason)


class RobotsStore(Protocol):
    """Where robots.txt copies are kept between processes (``Storage`` is one)."""

    def robots_copies(self) -> Mapping[str, RobotsCopy]:
        """Every kept copy, by origin."""
        ...

    def save_robots_copies(self, copies: Sequence[RobotsCopy]) -> None:
        """Keep these copies, each replacing its origin's."""
        ...


FRESH_FOR = 24 * 3600.0  # seconds a fetched (or missing) robots.txt is used: RFC 9309 §2.4
RETRY_UNREACHABLE = 3600.0  # seconds before an unreachable robots.txt is tried again


class RobotsCache:
    """One ``RobotsEntry`` per origin, fetched once per period even under concurrent use.

    ``clock``: seconds from an interval timer (``time.monotonic``), not domain time: this
    only says how old a copy is."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[RobotsEntry]],
        *,
        clock: Callable[[], float] = time.monotonic,
        fresh_for: float = FRESH_FOR,
        retry_unreachable: float = RETRY_UNREACHABLE,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self.fresh_for = fresh_for
        self.retry_unreachable = retry_unreachable
        self._entries: dict[str, tuple[RobotsEntry, float]] = {}  # origin: (entry, good until)
        self._stale: dict[str, str] = {}  # origin: why its last copy could not be renewed
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def entries(self) -> Mapping[str, RobotsEntry]:
        """Origins seen so far and their outcome (for source health)."""
        return {origin: entry for origin, (entry, _) in self._entries.items()}

    def outcome(self, origin: str) -> RobotsEntry | None:
        """``origin``'s entry in force, if it was seen (one lookup: source health asks this
        for every polled source)."""
        found = self._entries.get(origin)
        return found[0] if found is not None else None

    def seed(self, origin: str, entry: RobotsEntry, age: float) -> None:
        """Start from a copy fetched ``age`` seconds ago (kept by another process): it is
        used until it is ``fresh_for`` old; an older one is fetched again on first use, and
        stays in force should that fail, as a copy of this cache's own would. A negative
        age (fetched "later" than now: the clock moved back) counts as too old."""
        if age < 0:
            age = self.fresh_for
        if origin not in self._entries and entry.status is not RobotsStatus.UNREACHABLE:
            self._entries[origin] = (entry, self._clock() + self.fresh_for - age)

    def stale(self, origin: str) -> str | None:
        """Why ``origin``'s copy in force could not be renewed (an error code), or None."""
        return self._stale.get(origin)

    async def get(self, origin: str) -> RobotsEntry:
        """The entry for ``origin`` (``scheme://host[:port]``), fetching it the first time
        and again when the copy is too old."""
        cached = self._entries.get(origin)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            cached = self._entries.get(origin)
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            entry = await self._fetch(origin)
            now = self._clock()
            if entry.status is RobotsStatus.UNREACHABLE:
                if cached is not None and cached[0].status is not RobotsStatus.UNREACHABLE:
                    # The last copy stays in force while the file cannot be fetched.
                    self._stale[origin] = entry.reason
                    entry = cached[0]
                self._entries[origin] = (entry, now + self.retry_unreachable)
            else:
                self._stale.pop(origin, None)
                self._entries[origin] = (entry, now + self.fresh_for)
        return entry
