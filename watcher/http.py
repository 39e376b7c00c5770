"""The guarded HTTP client: every request the service makes to a source goes through here.

Adapters get an ``HttpClient`` and see only ``HttpResponse`` values and ``FetchError``; all
HTTP policy lives in this module:

- only ``http``/``https``;
- the host is resolved here and refused when any address is not publicly routable
  (loopback, private, link-local, CGNAT, multicast, reserved, unspecified, and IPv6 forms
  that embed one of those: IPv4-mapped/-compatible, NAT64, 6to4), however the URL spells it
  (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``, ``[::ffff:127.0.0.1]``,
  ``localhost.``), unless ``[fetch] allow_private_networks`` admits the address (and port);
- the connection goes to the address that was checked (the request names the IP; the
  ``Host`` header and TLS server name keep the host name), so DNS rebinding between check
  and connect cannot reach a refused address;
- redirects are followed here, each hop checked again (scheme, address, robots.txt);
- ``timeout`` is a total deadline per HTTP request, from DNS to the last body byte; a
  request that times out is not repeated inside the poll (the scheduler's back-off tries the
  source again later), and within one ``scope()`` (one poll) an origin that timed out is
  not asked again, so a hanging or dripping server holds a poll for one ``timeout``, not
  one per request;
- the decoded body is capped at ``max_bytes`` while streaming (a gzip bomb stops early);
- conditional GET (ETag / Last-Modified) and 304 as a value (``not_modified``);
- per-host and global concurrency limits, held only while a request is in flight;
- retries with exponential backoff on 500/502/503/504 and connection errors, and
  ``Retry-After`` on 429/503 waited out inline only up to ``max_retry_after`` (a few
  seconds); a longer one ends at once as ``RateLimited`` carrying the delay, which the
  poller turns into the source's next attempt;
- a body declared UTF-8 whose non-ASCII text is mostly valid UTF-8 has each invalid
  sequence replaced by U+FFFD (``HttpResponse.invalid_utf8`` counts them; the scope notes
  it for the source's health), so a few stray bytes do not turn the whole body into
  Windows-1252 mojibake;
- robots.txt fetched once a day per origin and obeyed for our User-Agent (``watcher.robots``).

Error codes (``FetchError.code``; they show up on source health). "Retried" means the
client tries again itself, with backoff, up to ``retries`` times before raising:

| code                 | meaning                                                     | retried  |
|----------------------|-------------------------------------------------------------|----------|
| `invalid_url`        | the URL cannot be parsed (no host, bad port, bad IPv6/IDN)  | no       |
| `blocked_scheme`     | not http/https, in the URL or in a redirect's Location      | no       |
| `blocked_address`    | the host is or resolves to a non-public address that        | no       |
|                      | `allow_private_networks` does not admit                     |          |
| `dns_error`          | the host name did not resolve                               | no       |
| `connection_error`   | refused, reset, or closed before the response was complete  | yes      |
| `tls_error`          | TLS handshake failed (e.g. certificate not valid for host)  | no       |
| `timeout`            | the deadline passed (DNS, connect, wait, or body), or the   | no       |
|                      | origin timed out earlier in the same scope                  |          |
| `too_many_redirects` | more than `max_redirects` hops, or a redirect loop          | no       |
| `too_large`          | the decoded body is larger than `max_bytes`                 | no       |
| `bad_encoding`       | a Content-Encoding we did not ask for (br, zstd …), or a    | no       |
|                      | corrupt compressed body                                     |          |
| `robots_disallowed`  | the origin's robots.txt disallows the URL for our UA        | no       |
| `rate_limited`       | still 429 after all retries, or a 429/503 Retry-After       | (429)    |
|                      | longer than `max_retry_after` (given up at once); raised    |          |
|                      | as `RateLimited`, whose `retry_after` is the delay asked    |          |
| `http_<status>`      | a final 4xx/5xx (`http_404`, `http_500` …), or a 3xx        | 500, 502 |
|                      | without Location                                            | 503, 504 |

POST requests are retried like GET: the service only POSTs search queries (the F&T portal),
which are safe to repeat. Cookies are neither stored nor sent: a poll needs none, and a
shared jar would carry one host's cookies to another host on the same pinned address.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import functools
import ipaddress
import logging
import re
import socket
import ssl
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import idna

from watcher.config import FetchSection, parse_allow_entry
from watcher.exceptions import FetchError, StorageError
from watcher.robots import RobotsCache, RobotsCopy, RobotsEntry, RobotsStatus, RobotsStore
from watcher.types import CacheState, Page
from watcher.wire import Outgoing, PoolPerServer

__all__ = [
    "ERROR_CODES",
    "FetchScope",
    "HttpClient",
    "HttpResponse",
    "HttpStats",
    "RateLimited",
    "Resolver",
    "is_public_address",
    "parse_host",
    "repair_utf8",
]

log = logging.getLogger(__name__)

# Every FetchError code this module raises (http_<status> stands for all statuses), for
# source health and the docs; the table in the module docstring explains each.
ERROR_CODES: tuple[str, ...] = (
    "invalid_url",
    "blocked_scheme",
    "blocked_address",
    "dns_error",
    "connection_error",
    "tls_error",
    "timeout",
    "too_many_redirects",
    "too_large",
    "bad_encoding",
    "robots_disallowed",
    "rate_limited",
    "http_<status>",
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

ACCEPT_ENCODING = "gzip, deflate"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({500, 502, 503, 504})
# RFC 9309 asks crawlers to read at least 500 KiB of a robots.txt; more is ignored.
ROBOTS_MAX_BYTES = 512 * 1024
# Raw bytes handed to a decompressor per step, so one step cannot inflate unboundedly.
_DECODE_STEP = 16 * 1024

_FORCED_HEADERS = frozenset({"user-agent", "accept-encoding", "host"})
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_NUMBER_RE = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")
_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)
_RETRY_SECONDS_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")
_XML_ENCODING_RE = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']", re.I
)
_META_CHARSET_RE = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.I)
_UTF8_BOM = b"\xef\xbb\xbf"
_REPLACEMENT = "\ufffd"


# ── addresses ────────────────────────────────────────────────────────────────────────────


def is_public_address(ip: IPAddress) -> bool:
    """Whether an address is globally routable, looking through IPv6 forms that embed an
    IPv4 address (mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``, 6to4 ``2002:…``)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _NAT64_LOCAL or ip.teredo is not None:
            return False
        if ip.sixtofour is not None and not is_public_address(ip.sixtofour):
            return False
        if int(ip) >> 32 == 0:  # ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
            return False
        if ip.is_site_local:
            return False
    elif ip in _CGNAT:
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _describe(ip: IPAddress) -> str:
    """An address for people, with the IPv4 address an IPv6 form embeds."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and int(ip) >> 32 == 0 and int(ip) > 1:
            embedded = ipaddress.IPv4Address(int(ip))
        if embedded is not None:
            return f"{ip} (IPv4 {embedded})"
    return str(ip)


def _parse_ipv4_number(host: str) -> ipaddress.IPv4Address | None:
    """The address an all-numeric host means to ``inet_aton`` (and so to getaddrinfo and
    browsers): ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``. None for a name."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER_RE.fullmatch(p) for p in parts):
        return None
    values: list[int] = []
    for p in parts:
        if p[:2].lower() == "0x":
            values.append(int(p[2:] or "0", 16))
        elif len(p) > 1 and p.startswith("0"):
            if not set(p) <= set("01234567"):
                raise ValueError(f"{p!r} is not an octal number")
            values.append(int(p, 8))
        else:
            values.append(int(p))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise ValueError("number out of range for an IPv4 address")
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << 8 * (5 - len(values)) | last
    return ipaddress.IPv4Address(number)


@functools.lru_cache(maxsize=4096)
def parse_host(hostname: str) -> tuple[str, IPAddress | None]:
    """Normalise a URL's host: the ASCII (IDNA) name without a trailing dot, and the IP
    address when the host is a literal in any spelling. Raises ``ValueError``. Remembered:
    every request asks it for its host two or three times, and a poll asks for the same
    few hundred hosts again and again."""
    host = hostname.strip().lower()
    if not host:
        raise ValueError("no host")
    if ":" in host:  # an IPv6 literal (urlsplit has removed the brackets)
        return host, ipaddress.IPv6Address(host.split("%", 1)[0])
    if not host.isascii():
        # UTS #46 mapping also folds full-width digits and dots ("１２７。０。０。１").
        host = idna.encode(host, uts46=True).decode("ascii")
    if host.endswith("."):
        host = host[:-1]
    ip = _parse_ipv4_number(host)
    return (str(ip) if ip else host), ip


# ── responses ────────────────────────────────────────────────────────────────────────────


class _Headers(Mapping[str, str]):
    """Read-only, case-insensitive response headers (repeated headers joined by ", ")."""

    def __init__(self, items: Mapping[str, str]) -> None:
        self._items = {k.lower(): (k, v) for k, v in items.items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __repr__(self) -> str:
        return f"Headers({dict(self._items.values())!r})"


@dataclass(frozen=True)
class HttpResponse:
    """A successful (2xx) or not-modified (304) response with its decoded body."""

    url: str  # the final URL after redirects
    status_code: int
    headers: Mapping[str, str]
    content: bytes  # decoded (gzip/deflate undone), at most max_bytes
    cache: CacheState  # validators of this response (on 304: the ones sent, if none came)
    invalid_utf8: int = 0  # invalid UTF-8 sequences replaced by U+FFFD (``repair_utf8``)

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304

    @property
    def content_type(self) -> str:
        """The media type, lower-case, without parameters (``text/html``)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def encoding(self) -> str | None:
        """The ``charset`` parameter of Content-Type, if any."""
        m = _CHARSET_RE.search(self.headers.get("content-type", ""))
        return m.group(1) if m else None

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding or "utf-8", "replace")

    @property
    def page(self) -> Page:
        return Page(
            url=self.url,
            content=self.content,
            content_type=self.content_type,
            encoding=self.encoding,
            headers=self.headers,
            status_code=self.status_code,
        )


@dataclass
class HttpStats:
    """Counters over the client's life."""

    requests: int = 0  # HTTP requests sent (each redirect hop and robots.txt included)
    responses_304: int = 0
    retries: int = 0
    bytes: int = 0  # decoded body bytes read
    by_status: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # FetchError codes raised to callers


def repair_utf8(content: bytes, content_type: str = "") -> tuple[bytes, int]:
    """A body declared UTF-8 with each invalid UTF-8 sequence replaced by U+FFFD, and how
    many were; any other body unchanged, with 0.

    Declared UTF-8: a BOM, the Content-Type charset, the XML declaration or an HTML meta
    charset say UTF-8 and none says otherwise (XML and JSON that say nothing are UTF-8 by
    their specifications). The repair is made only when the valid non-ASCII characters are
    at least as many as the invalid sequences: a body with more invalid than valid ones is
    more likely wholly in another encoding than the declared one (a Windows-1252 page
    declared UTF-8), and is left to the adapter's decoding, which falls back to
    Windows-1252 for the whole body. So a few stray bytes cost those bytes only, not every
    å ä ö in the feed."""
    if content.isascii():
        return content, 0
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return content, 0
    if not _declared_utf8(content, content_type):
        return content, 0
    text = content.decode("utf-8", "replace")
    replaced = text.count(_REPLACEMENT) - content.count(_REPLACEMENT.encode("utf-8"))
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if replaced > non_ascii - replaced:
        return content, 0
    return text.encode("utf-8"), replaced


def _declared_utf8(content: bytes, content_type: str) -> bool:
    head = content[:2048]
    said: list[str] = []
    if head.startswith(_UTF8_BOM):
        said.append("utf-8")
    m = _CHARSET_RE.search(content_type)
    if m:
        said.append(m.group(1))
    found = _XML_ENCODING_RE.match(head) or _META_CHARSET_RE.search(head)
    if found:
        said.append(found.group(1).decode("ascii"))
    if said:
        return all(_is_utf8(name) for name in said)
    media = content_type.split(";", 1)[0].strip().lower()
    return head.lstrip().startswith(b"<?xml") or media.endswith(("/xml", "+xml", "/json", "+json"))


def _is_utf8(name: str) -> bool:
    try:
        return codecs.lookup(name).name == "utf-8"
    except LookupError:
        return False


@dataclass
class FetchScope:
    """What the requests of one poll share (``HttpClient.scope()``): the origins that timed
    out, which are not asked again in the same scope, and notes for the source's health.
    Requests made outside any scope share nothing."""

    timed_out: dict[str, str] = field(default_factory=dict)  # origin: the URL that timed out
    repaired: dict[str, int] = field(default_factory=dict)  # URL: invalid UTF-8 replaced

    def warnings(self) -> list[str]:
        """Notes for the source's health (``PollResult.warnings``)."""
        if not self.repaired:
            return []
        total = sum(self.repaired.values())
        first = next(iter(self.repaired))
        where = first if len(self.repaired) == 1 else f"{len(self.repaired)} responses ({first} …)"
        return [
            f"invalid UTF-8 repaired: {total} invalid byte sequence(s) in a body declared "
            f"UTF-8 replaced with U+FFFD (\ufffd) in {where}"
        ]


# The scope of the poll running in this task (and in the tasks it starts).
_SCOPE: ContextVar[FetchScope | None] = ContextVar("watcher_http_scope", default=None)


class RateLimited(FetchError):
    """The server asked for a pause (429, or 503 with Retry-After) longer than is waited
    out inline; ``retry_after``: the seconds it asked for, None when it did not say."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message, code="rate_limited")
        self.retry_after = retry_after


class _StatusError(FetchError):
    """A final-status FetchError that also carries what the retry logic needs."""

    def __init__(self, message: str, status: int, retry_after: float | None) -> None:
        super().__init__(message, code=f"http_{status}")
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Redirect:
    location: str
    status: int


@dataclass(frozen=True)
class _Target:
    """One hop: the URL as the caller sees it, and where it may connect."""

    scheme: str
    host: str  # ASCII host name, or the canonical IP of a literal
    port: int
    path: str  # path and query, as in the URL
    written: str = ""  # the host as the URL spelled it (for error messages)
    addresses: tuple[IPAddress, ...] = ()

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host_header}"

    @property
    def url(self) -> str:
        return self.origin + self.path

    def pinned_url(self, ip: IPAddress) -> str:
        host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def _split(url: str) -> _Target:
    """Parse and normalise a URL (user info and fragment dropped); no I/O."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if not scheme:
            raise ValueError("not an absolute URL")
        if scheme not in ("http", "https"):
            raise FetchError(
                f"only http and https URLs are fetched, not {scheme}: {url}",
                code="blocked_scheme",
            )
        host, _ = parse_host(parts.hostname or "")
        port = parts.port or (443 if scheme == "https" else 80)
    except (ValueError, UnicodeError, idna.IDNAError) as e:
        raise FetchError(f"invalid URL {url!r}: {e}", code="invalid_url") from e
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, host, port, path, parts.hostname or host)


def host_of(url: str) -> str:
    """The host a request to ``url`` waits its turn under ([fetch] per_host_concurrency),
    named as the client names it; "" for a URL the client would refuse."""
    try:
        return _split(url).host
    except FetchError:
        return ""


def _with_params(url: str, params: Mapping[str, str] | None) -> str:
    """Append query parameters (the fragment, never sent, is dropped)."""
    if not params:
        return url
    base = url.partition("#")[0]
    extra = urlencode(list(params.items()))
    if base.endswith(("?", "&")):
        return base + extra
    return f"{base}{'&' if '?' in base else '?'}{extra}"


# ── bodies ───────────────────────────────────────────────────────────────────────────────


class _TooLarge(Exception):
    pass


class _ZlibStream:
    """Streaming gzip/deflate decoding that never produces more than it is allowed to."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._wbits = 16 + zlib.MAX_WBITS if kind == "gzip" else zlib.MAX_WBITS
        self._obj = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        """Decode ``data``; raise ``_TooLarge`` as soon as the output would pass ``room``."""
        out = bytearray()
        while data:
            if self._obj.eof:  # a further gzip member (RFC 1952 allows several)
                self._obj = zlib.decompressobj(self._wbits)
                self._started = True
            try:
                chunk = self._obj.decompress(data, room - len(out) + 1)
            except zlib.error:
                if self._kind == "deflate" and not self._started and self._wbits > 0:
                    # "deflate" is meant to be zlib-wrapped, but some servers send it raw.
                    self._wbits = -zlib.MAX_WBITS
                    self._obj = zlib.decompressobj(self._wbits)
                    continue
                raise
            self._started = True
            out += chunk
            if len(out) > room:
                raise _TooLarge
            data = self._obj.unconsumed_tail
            if self._obj.eof:
                rest = self._obj.unused_data
                # Another gzip member may follow; anything else after the end is padding
                # that browsers ignore too.
                data = rest if self._kind == "gzip" and rest[:2] == b"\x1f\x8b" else b""
        return bytes(out)

    def finish(self, room: int) -> bytes:
        out = self._obj.flush()
        if len(out) > room:
            raise _TooLarge
        return out


class _BodyReader:
    """Undo the Content-Encoding chain of a response while counting the decoded size."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        names = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        self._stages: list[_ZlibStream] = []
        for name in reversed(names):  # the last encoding applied is undone first
            if name in ("gzip", "x-gzip"):
                self._stages.append(_ZlibStream("gzip"))
            elif name == "deflate":
                self._stages.append(_ZlibStream("deflate"))
            elif name != "identity":
                raise ValueError(f"unsupported Content-Encoding {name!r}")
        self.limit = limit
        self.body = bytearray()

    @property
    def identity(self) -> bool:
        return not self._stages

    def feed(self, raw: bytes) -> None:
        for start in range(0, len(raw), _DECODE_STEP):
            data = raw[start : start + _DECODE_STEP]
            for stage in self._stages:
                data = stage.feed(data, self.limit - len(self.body))
            self._append(data)

    def finish(self) -> None:
        tail = b""
        for stage in self._stages:
            if tail:
                tail = stage.feed(tail, self.limit - len(self.body))
            tail += stage.finish(self.limit - len(self.body))
        self._append(tail)

    def _append(self, data: bytes) -> None:
        if len(self.body) + len(data) > self.limit:
            raise _TooLarge
        self.body += data


# ── the client ───────────────────────────────────────────────────────────────────────────


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_tls_failure(e: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError | ssl.CertificateError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


class HttpClient:
    """The guarded HTTP client (see the module docstring for the policy and error codes).

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``sleep`` is what
    backoff waits with; ``resolver(host, port)`` returns the host's addresses (default:
    the event loop's getaddrinfo); ``clock`` is read only for a Retry-After date when the
    response has no Date header, and to date the robots.txt copies kept in
    ``robots_store``: the client starts from the copies kept there (a copy younger than a
    day is not fetched again) and ``save_robots`` keeps what it fetched. Use as
    ``async with HttpClient(...) as http:``.
    """

    def __init__(
        self,
        settings: FetchSection,
        user_agent: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        resolver: Resolver | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        robots_store: RobotsStore | None = None,
    ) -> None:
        self.settings = settings
        self.user_agent = user_agent
        self.stats = HttpStats()
        self._sleep = sleep
        self._resolver = resolver or _system_resolver
        self._clock = clock
        self._allow = [parse_allow_entry(e) for e in settings.allow_private_networks]
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._global_slots = asyncio.Semaphore(settings.global_concurrency)
        self._robots = RobotsCache(self._fetch_robots)
        self._robots_store = robots_store
        self._robots_seeded = robots_store is None
        self._robots_seeding = asyncio.Lock()
        self._robots_fetched: dict[str, RobotsCopy] = {}  # not yet saved in the store
        # Requests go straight to the transport: this client follows redirects itself
        # (each hop checked), keeps no cookies and reads no proxy from the environment (it
        # would bypass the address pinning), so httpx's client layers (redirects, auth,
        # cookies, hooks) were only cost, a fifth of the CPU of an unchanged round. The
        # connections are this project's (``watcher.wire``): httpx's own transport cost
        # about twice the CPU per request. The deadline is ours (``_hop``), one for all.
        self._transport: httpx.AsyncBaseTransport = transport or PoolPerServer(
            settings.per_host_concurrency
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    @property
    def robots(self) -> Mapping[str, RobotsEntry]:
        """robots.txt outcome per origin seen so far (unreachable ones are remembered)."""
        return self._robots.entries

    def robots_warning(self, url: str) -> str | None:
        """A warning for the source health when ``url``'s site was polled without its
        robots.txt, or with an old copy (it could not be fetched), else None."""
        try:
            origin = _split(url).origin
        except FetchError:
            return None
        entry = self._robots.outcome(origin)
        if entry is None:
            return None
        if entry.status is RobotsStatus.UNREACHABLE:
            return f"robots.txt of {origin} could not be read ({entry.reason}): polled as allowed"
        why = self._robots.stale(origin)
        if why:
            return f"robots.txt of {origin} could not be read again ({why}): its last copy holds"
        return None

    @contextmanager
    def scope(self) -> Iterator[FetchScope]:
        """One poll's requests, made in this task or tasks it starts while the scope is
        open: an origin that times out is not asked again within it, and what the client
        repaired is noted on the scope (``FetchScope.warnings``) for the source's health."""
        scope = FetchScope()
        token = _SCOPE.set(scope)
        try:
            yield scope
        finally:
            _SCOPE.reset(token)

    # ── public requests ──

    async def get(
        self,
        url: str,
        *,
        cache: CacheState | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """GET ``url``; with ``cache``, a conditional GET whose 304 is ``not_modified``."""
        sent = dict(headers or {})
        if cache is not None:
            if cache.etag:
                sent["If-None-Match"] = cache.etag
            if cache.last_modified:
                sent["If-Modified-Since"] = cache.last_modified
        return await self._request("GET", _with_params(url, params), sent, {}, cache)

    async def post(
        self,
        url: str,
        *,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """POST a form (``data``), multipart parts (``files``, as bytes so a retry can resend
        them) or a JSON body."""
        body = {"files": files, "data": data, "json": json}
        return await self._request(
            "POST", _with_params(url, params), dict(headers or {}), body, None
        )

    # ── retries ──

    async def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: dict[str, Any],
        cache: CacheState | None,
    ) -> HttpResponse:
        attempt = 0
        while True:
            try:
                return self._repaired(await self._follow(method, url, headers, body, cache))
            except FetchError as e:
                error = e
            delay, final = self._retry_delay(error, attempt, url)
            if delay is None:
                self.stats.errors[final.code] += 1
                if final is error:
                    raise error
                raise final from error
            attempt += 1
            self.stats.retries += 1
            log.info("retry %d of %s %s in %.1f s (%s)", attempt, method, url, delay, error.code)
            await self._sleep(delay)

    def _retry_delay(
        self, e: FetchError, attempt: int, url: str
    ) -> tuple[float | None, FetchError]:
        """Seconds to wait before the next attempt, or None and the error to give up with.

        A timeout is not tried again here: the server had the whole ``timeout`` already,
        and asking again would hold the poll for another one (the scheduler's back-off
        tries the source later). A refused or dropped connection fails fast and is retried.
        """
        last = attempt >= self.settings.retries
        backoff = self.settings.backoff * 2**attempt
        if isinstance(e, _StatusError):
            if e.status in (429, 503) and e.retry_after is not None:
                if e.retry_after > self.settings.max_retry_after:
                    return None, RateLimited(
                        f"{url}: HTTP {e.status} asks to retry after {e.retry_after:g} s, "
                        f"more than max_retry_after ({self.settings.max_retry_after:g} s)",
                        e.retry_after,
                    )
                delay = e.retry_after
            elif e.status == 429 or e.status in RETRY_STATUSES:
                delay = backoff
            else:
                return None, e
            if last and e.status == 429:
                return None, RateLimited(
                    f"{url}: still HTTP 429 (too many requests) after {attempt + 1} attempt(s)",
                    e.retry_after,
                )
        elif e.code == "connection_error":
            delay = backoff
        else:
            return None, e
        return (None, e) if last else (delay, e)

    def _repaired(self, response: HttpResponse) -> HttpResponse:
        """The response with invalid UTF-8 replaced (``repair_utf8``), noted on the scope."""
        if response.not_modified:
            return response
        content, replaced = repair_utf8(response.content, response.headers.get("content-type", ""))
        if not replaced:
            return response
        log.info("%s: %d invalid UTF-8 sequence(s) replaced", response.url, replaced)
        scope = _SCOPE.get()
        if scope is not None:
            scope.repaired[response.url] = scope.repaired.get(response.url, 0) + replaced
        return dataclasses.replace(response, content=content, invalid_utf8=replaced)

    # ── redirects ──

    async def _follow(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: dict[str, Any],
        cache: CacheState | None,
        *,
        for_robots: bool = False,
    ) -> HttpResponse:
        """Send one request and follow its redirects, checking every hop. robots.txt itself
        (``for_robots``) is not checked against robots.txt and is cut, not refused, at
        ``ROBOTS_MAX_BYTES``."""
        limit = min(ROBOTS_MAX_BYTES, self.settings.max_bytes) if for_robots else None
        seen: set[tuple[str, str]] = set()
        target = _split(url)
        for hop in range(self.settings.max_redirects + 1):
            seen.add((method, target.url))
            target = await self._check(target)
            if not for_robots and self.settings.respect_robots_txt:
                if not self._robots_seeded:
                    await self._seed_robots()
                entry = await self._robots.get(target.origin)
                if not entry.allows(target.path):
                    raise FetchError(
                        f"robots.txt of {target.origin} disallows {target.url} for "
                        f"{self.user_agent.split('/', 1)[0]}",
                        code="robots_disallowed",
                    )
            result = await self._hop(
                method, target, headers, body, limit or self.settings.max_bytes, not for_robots
            )
            if isinstance(result, HttpResponse):
                if (
                    result.not_modified
                    and cache is not None
                    and not (result.cache.etag or result.cache.last_modified)
                ):
                    result = _replace_cache(result, cache)
                return result
            nxt = _split(urljoin(target.url, result.location))
            if nxt.origin != target.origin:
                # Credentials meant for one origin must not follow a redirect to another.
                headers = {
                    k: v
                    for k, v in headers.items()
                    if k.lower() not in ("authorization", "cookie", "proxy-authorization")
                }
            if result.status == 303 or (result.status in (301, 302) and method == "POST"):
                method, body = "GET", {}
            if (method, nxt.url) in seen:
                raise FetchError(
                    f"redirect loop: {target.url} leads back to {nxt.url}",
                    code="too_many_redirects",
                )
            if hop == self.settings.max_redirects:
                break
            target = nxt
        raise FetchError(
            f"more than {self.settings.max_redirects} redirects from {url}",
            code="too_many_redirects",
        )

    # ── address checks ──

    async def _check(self, target: _Target) -> _Target:
        """Resolve the hop's host and refuse any address that is not admitted."""
        _, literal = parse_host(target.host)
        if literal is not None:
            addresses: tuple[IPAddress, ...] = (literal,)
        else:
            try:
                async with asyncio.timeout(self.settings.timeout):
                    found = await self._resolver(target.host, target.port)
            except TimeoutError as e:
                _timed_out(target)
                raise FetchError(f"DNS lookup of {target.host} timed out", code="timeout") from e
            except (OSError, UnicodeError) as e:
                raise FetchError(f"cannot resolve {target.host}: {e}", code="dns_error") from e
            try:
                addresses = tuple(ipaddress.ip_address(a.split("%", 1)[0]) for a in found)
            except ValueError as e:
                raise FetchError(f"cannot resolve {target.host}: {e}", code="dns_error") from e
            if not addresses:
                raise FetchError(f"{target.host} has no addresses", code="dns_error")
        for ip in addresses:
            if not self._admitted(ip, target.port):
                written = target.written or target.host
                if literal is None:
                    what = f"{written} resolves to {_describe(ip)}, which is"
                elif written == str(ip):
                    what = f"{_describe(ip)} is"
                else:
                    what = f"{written} means {_describe(ip)}, which is"
                raise FetchError(
                    f"{what} not a public address; [fetch] allow_private_networks can admit "
                    f"it ({target.url})",
                    code="blocked_address",
                )
        return dataclasses.replace(target, addresses=addresses)

    def _admitted(self, ip: IPAddress, port: int) -> bool:
        if is_public_address(ip):
            return True
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(
            c.version == net.version and c in net and (allowed_port in (None, port))
            for net, allowed_port in self._allow
            for c in candidates
        )

    # ── one request ──

    @asynccontextmanager
    async def _slot(self, host: str) -> AsyncIterator[None]:
        """Per-host, then global: a request waiting for its host holds no global slot."""
        per_host = self._host_slots.setdefault(
            host, asyncio.Semaphore(self.settings.per_host_concurrency)
        )
        async with per_host, self._global_slots:
            yield

    async def _hop(
        self,
        method: str,
        target: _Target,
        headers: Mapping[str, str],
        body: dict[str, Any],
        limit: int,
        strict_size: bool,
    ) -> HttpResponse | _Redirect:
        timeout = self.settings.timeout
        async with self._slot(target.host):
            scope = _SCOPE.get()
            if scope is not None and target.origin in scope.timed_out:
                # Checked once the slot is ours: a request queued behind the one that timed
                # out stops here instead of waiting out a timeout of its own.
                raise FetchError(
                    f"{target.url} not requested: {target.origin} gave no complete answer to "
                    f"{scope.timed_out[target.origin]} within {timeout:g} s earlier in this poll",
                    code="timeout",
                )
            try:
                async with asyncio.timeout(timeout):
                    response = await self._connect(method, target, headers, body)
                    try:
                        return await self._answer(response, target, limit, strict_size)
                    finally:
                        await response.aclose()
            except TimeoutError as e:
                _timed_out(target)
                raise FetchError(
                    f"no complete answer from {target.url} within {timeout:g} s", code="timeout"
                ) from e
            except httpx.TimeoutException as e:
                _timed_out(target)
                raise FetchError(
                    f"timed out ({type(e).__name__}) on {target.url}", code="timeout"
                ) from e
            except httpx.TransportError as e:
                why = f"{target.url}: {e or type(e).__name__}"
                # A handshake that failed; a TLS error later (a corrupt record mid-body) is a
                # broken connection, retried as one.
                if isinstance(e, httpx.ConnectError) and _is_tls_failure(e):
                    raise FetchError(why, code="tls_error") from e
                raise FetchError(why, code="connection_error") from e
            except httpx.InvalidURL as e:  # e.g. a control character in the path
                raise FetchError(f"invalid URL {target.url!r}: {e}", code="invalid_url") from e
            except httpx.HTTPError as e:
                raise FetchError(
                    f"{target.url}: {e or type(e).__name__}", code="connection_error"
                ) from e

    async def _connect(
        self,
        method: str,
        target: _Target,
        headers: Mapping[str, str],
        body: dict[str, Any],
    ) -> httpx.Response:
        """Send to the checked addresses in turn until one accepts the connection."""
        # Our User-Agent and Accept-Encoding always (the body decoder knows only those
        # encodings); the Host header names the host while the URL names the checked address.
        sent = {k: v for k, v in headers.items() if k.lower() not in _FORCED_HEADERS}
        sent.update(
            {
                "User-Agent": self.user_agent,
                "Accept-Encoding": ACCEPT_ENCODING,
                "Host": target.host_header,
            }
        )
        # What httpx's client sent by default: some firewalls refuse a request without it.
        if not any(k.lower() == "accept" for k in sent):
            sent["Accept"] = "*/*"
        extensions: dict[str, Any] = {}
        if target.scheme == "https" and parse_host(target.host)[1] is None:
            extensions["sni_hostname"] = target.host
        content = {k: v for k, v in body.items() if v is not None}
        # Our own connections (or a subclass of them, as tests make) take a request
        # without a body as it goes on the wire, not as httpx's Request (see
        # ``Outgoing``); a body is httpx's to encode. The response they give then has no
        # ``request``: nothing here reads its ``request`` or ``url``.
        plain = method in ("GET", "HEAD") and not content
        wire = self._transport if plain and isinstance(self._transport, PoolPerServer) else None
        raw = _raw_headers(sent) if wire is not None else None
        failure: httpx.ConnectError | None = None
        for ip in target.addresses:
            self.stats.requests += 1
            try:
                if wire is not None and raw is not None:
                    out = Outgoing(
                        method,
                        target.scheme,
                        str(ip),
                        target.port,
                        _raw_target(target, ip),
                        raw,
                        target.host_header,
                        b"",
                        extensions.get("sni_hostname", ""),
                    )
                    return await wire.send(out)
                request = httpx.Request(
                    method,
                    target.pinned_url(ip),
                    headers=sent,
                    extensions=extensions,
                    **content,
                )
                return await self._transport.handle_async_request(request)
            except httpx.ConnectError as e:
                if _is_tls_failure(e):
                    raise
                failure = e
                log.debug("connect to %s for %s failed: %s", ip, target.host, e)
        assert failure is not None  # addresses is never empty after _check
        raise failure

    async def _answer(
        self,
        response: httpx.Response,
        target: _Target,
        limit: int,
        strict_size: bool,
    ) -> HttpResponse | _Redirect:
        status = response.status_code
        self.stats.by_status[status] += 1
        if status in REDIRECT_STATUSES and "location" in response.headers:
            return _Redirect(response.headers["location"], status)
        if status == 304:
            self.stats.responses_304 += 1
            # A 304 has no body; reading its (empty) end lets the connection be reused
            # instead of closed.
            await response.aread()
            return HttpResponse(
                target.url, 304, _Headers(response.headers), b"", _cache_of(response)
            )
        if not 200 <= status < 300:
            raise _StatusError(
                f"HTTP {status} {response.reason_phrase} from {target.url}",
                status,
                self._retry_after(response),
            )
        content = await self._read(response, target, limit, strict_size)
        return HttpResponse(
            target.url, status, _Headers(response.headers), content, _cache_of(response)
        )

    async def _read(
        self, response: httpx.Response, target: _Target, limit: int, strict: bool
    ) -> bytes:
        """Stream and decode the body, stopping at ``limit`` decoded bytes: with ``strict``
        a larger body is an error, else it is cut (robots.txt: the first 512 KiB count)."""
        # A response an in-memory transport (httpx.MockTransport) built with ``content=``
        # arrives already read and decoded by httpx; a network response arrives raw.
        preloaded = response.is_stream_consumed
        encoding = "" if preloaded else response.headers.get("content-encoding", "")
        try:
            reader = _BodyReader(encoding, limit)
        except ValueError as e:
            raise FetchError(f"{target.url}: {e}", code="bad_encoding") from e
        too_large = FetchError(
            f"{target.url}: body larger than max_bytes ({limit} bytes)", code="too_large"
        )
        declared = response.headers.get("content-length", "")
        if strict and reader.identity and declared.isdigit() and int(declared) > limit:
            raise too_large
        try:
            if preloaded:
                reader.feed(response.content)
            else:
                async for raw in response.aiter_raw():
                    reader.feed(raw)
            reader.finish()
        except _TooLarge as e:
            if strict:
                raise too_large from e
        except zlib.error as e:
            raise FetchError(
                f"{target.url}: corrupt compressed body: {e}", code="bad_encoding"
            ) from e
        self.stats.bytes += len(reader.body)
        return bytes(reader.body)

    def _retry_after(self, response: httpx.Response) -> float | None:
        """Retry-After in seconds (delay-seconds or an HTTP-date), or None."""
        value = response.headers.get("retry-after")
        if not value:
            return None
        m = _RETRY_SECONDS_RE.match(value)
        if m:
            return float(m.group(1))
        when = _http_date(value)
        if when is None:
            return None
        # The server's own Date is the reference: our clock may disagree with the server's.
        now = _http_date(response.headers.get("date", "")) or self._clock()
        return max(0.0, (when - now).total_seconds())

    # ── robots.txt ──

    async def _seed_robots(self) -> None:
        """Start the cache from the copies kept in the store (once, before the first
        robots.txt is needed). A store that cannot be read is only a lost shortcut."""
        async with self._robots_seeding:
            if self._robots_seeded:
                return
            assert self._robots_store is not None
            try:
                copies = await asyncio.to_thread(self._robots_store.robots_copies)
            except StorageError as e:
                log.warning("kept robots.txt copies could not be read: %s", e)
                copies = {}
            now = self._clock()
            for origin, copy in copies.items():
                age = (now - copy.fetched_at).total_seconds()
                self._robots.seed(origin, copy.entry(self.user_agent), age)
            self._robots_seeded = True

    async def save_robots(self) -> None:
        """Keep the robots.txt files fetched since the last save in the store, for the next
        process (``App.poll`` calls this after its polls). An error is logged: the next
        process fetches them again."""
        if self._robots_store is None or not self._robots_fetched:
            return
        copies = list(self._robots_fetched.values())
        self._robots_fetched.clear()
        try:
            await asyncio.to_thread(self._robots_store.save_robots_copies, copies)
        except StorageError as e:
            log.warning("robots.txt copies could not be kept: %s", e)

    async def _fetch_robots(self, origin: str) -> RobotsEntry:
        """Fetch one origin's robots.txt through the same guards, once, without retries."""
        try:
            response = await self._follow(
                "GET", origin + "/robots.txt", {}, {}, None, for_robots=True
            )
        except _StatusError as e:
            if 400 <= e.status < 500 and e.status != 429:
                return self._fetched(origin, RobotsEntry.missing(e.code))
            log.warning("robots.txt of %s unreachable (%s): allowing all", origin, e)
            return RobotsEntry.unreachable(e.code)
        except FetchError as e:
            log.warning("robots.txt of %s unreachable (%s): allowing all", origin, e)
            return RobotsEntry.unreachable(e.code)
        return self._fetched(origin, RobotsEntry.fetched(response.content, self.user_agent))

    def _fetched(self, origin: str, entry: RobotsEntry) -> RobotsEntry:
        if self._robots_store is not None:
            self._robots_fetched[origin] = RobotsCopy.of(origin, entry, self._clock())
        return entry


def _timed_out(target: _Target) -> None:
    """Remember, for the rest of the current scope, that ``target``'s origin timed out."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.timed_out.setdefault(target.origin, target.url)


def _http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _raw_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]] | None:
    """``headers`` as httpx's ``Request`` sends them (names and values encoded as ASCII, in
    order), or None for a name or value that is not ASCII text (httpx's to refuse)."""
    raw = []
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str) or not (k + v).isascii():
            return None  # httpx's Request refuses it, as it did before
        raw.append((k.encode("ascii"), v.encode("ascii")))
    return raw


# What httpx leaves as it is in a URL's path and query, in every version we take: RFC
# 3986's unreserved characters, sub-delimiters, ":", "@", "/" and "?", and percent
# escapes. Anything else (a space, "é", a bare "%", a "." segment) is httpx's to quote.
_PLAIN_TARGET = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")


# Below httpx's limit on a whole URL (64 KiB) with any scheme, address and port before the
# path: a longer one goes to httpx, which refuses it (InvalidURL) as it did.
_PLAIN_TARGET_MAX = 65_000


def _raw_target(target: _Target, ip: IPAddress) -> bytes:
    """The request target (path and query) for ``target``, as httpx would send it."""
    path = target.path
    if (
        len(path) <= _PLAIN_TARGET_MAX
        and _PLAIN_TARGET.fullmatch(path)
        and "/." not in path.partition("?")[0]
    ):
        return path.encode("ascii")
    return httpx.URL(target.pinned_url(ip)).raw_path


def _cache_of(response: httpx.Response) -> CacheState:
    return CacheState(
        etag=response.headers.get("etag"), last_modified=response.headers.get("last-modified")
    )


def _replace_cache(response: HttpResponse, cache: CacheState) -> HttpResponse:
    return HttpResponse(response.url, response.status_code, response.headers, b"", cache)
