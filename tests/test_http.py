"""The guarded HTTP client, against a real loopback server (and MockTransport where the
socket does not matter). No test waits for a backoff: ``sleep`` is recorded instead."""

from __future__ import annotations

import asyncio
import functools
import gzip
import ipaddress
import re
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.loopback import LoopbackServer, RecordedRequest, Reply
from tests.loopback import loopback as loopback  # the shared fixture, used below
from watcher import http as http_module
from watcher.config import FetchSection
from watcher.exceptions import FetchError
from watcher.http import (
    ERROR_CODES,
    HttpClient,
    HttpResponse,
    RateLimited,
    host_of,
    repair_utf8,
)
from watcher.robots import RobotsStatus
from watcher.types import CacheState

UA = "EU-bevakning/0.1 (+https://goteborgsregionen.se; contact: eu-bevakning@example.org)"
PUBLIC_IP = "93.184.216.34"  # never contacted: these tests answer through MockTransport


class Sleeps:
    """A ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_settings(*allow: str, **overrides: Any) -> FetchSection:
    values: dict[str, Any] = {
        "timeout": 5.0,
        "retries": 2,
        "backoff": 1.0,
        "respect_robots_txt": False,
        "allow_private_networks": allow,
    }
    values.update(overrides)
    return FetchSection(**values)


def client(
    *allow: str,
    sleep: Sleeps | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    resolver: Callable[[str, int], Awaitable[list[str]]] | None = None,
    **overrides: Any,
) -> HttpClient:
    return HttpClient(
        make_settings(*allow, **overrides),
        UA,
        transport=transport,
        sleep=sleep or Sleeps(),
        resolver=resolver,
    )


def resolving(table: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver from a table; unknown names fail like DNS does."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


def unreachable(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the client must not send {request.url}")


async def fetch_error(coro: Awaitable[HttpResponse]) -> FetchError:
    with pytest.raises(FetchError) as info:
        await coro
    return info.value


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as s:
        yield s


@pytest.fixture
async def http(server: LoopbackServer) -> AsyncIterator[HttpClient]:
    """A client that may reach ``server`` (and nothing else private)."""
    async with client(server.allow_entry) as c:
        yield c


# ── schemes and addresses ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://ftp.example.org/calls.txt", "gopher://example.org/1"]
)
async def test_only_http_and_https(url: str) -> None:
    async with client(transport=httpx.MockTransport(unreachable)) as http:
        error = await fetch_error(http.get(url))
    assert error.code == "blocked_scheme"
    assert url in str(error)


async def test_unparseable_urls_are_invalid_url() -> None:
    async with client(transport=httpx.MockTransport(unreachable)) as http:
        for url in ("http://[::1/", "http://example.org:99999/", "/relative/path", "http:///x"):
            assert (await fetch_error(http.get(url))).code == "invalid_url", url


@pytest.mark.parametrize(
    "spelling",
    [
        "127.0.0.1",
        "2130706433",  # decimal
        "0x7f000001",  # hex
        "0177.0.0.1",  # octal
        "0x7f.0.0.1",
        "127.1",  # short form
        "127.0.0.1.",  # trailing dot
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "[::ffff:7f00:1]",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "１２７．０．０．１",  # full-width digits and dots fold to 127.0.0.1 (UTS 46)
    ],
)
async def test_loopback_is_refused_however_spelled(server: LoopbackServer, spelling: str) -> None:
    server.add("/", "secret")
    url = f"http://{spelling}:{server.port}/"
    async with client() as http:  # the real resolver; no allow-list entry
        error = await fetch_error(http.get(url))
    assert error.code == "blocked_address"
    assert spelling.strip("[]") in str(error)
    assert "127.0.0.1" in str(error) or "::1" in str(error)
    assert server.requests == []


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",  # link-local (cloud metadata)
        "100.64.0.1",  # CGNAT
        "224.0.0.251",  # multicast
        "240.0.0.1",  # reserved
        "0.0.0.0",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::5",
        "ff02::1",
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "::10.0.0.1",  # IPv4-compatible
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    ],
)
async def test_names_resolving_to_private_addresses_are_refused(address: str) -> None:
    resolver = resolving({"intranet.example.org": [address]})
    async with client(transport=httpx.MockTransport(unreachable), resolver=resolver) as http:
        error = await fetch_error(http.get("https://intranet.example.org/calls"))
    assert error.code == "blocked_address"
    assert "intranet.example.org" in str(error)
    assert str(ipaddress.ip_address(address)) in str(error)


async def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    resolver = resolving({"mixed.example.org": [PUBLIC_IP, "10.0.0.7"]})
    async with client(transport=httpx.MockTransport(unreachable), resolver=resolver) as http:
        error = await fetch_error(http.get("http://mixed.example.org/"))
    assert error.code == "blocked_address"
    assert "10.0.0.7" in str(error)


async def test_localhost_by_name_with_trailing_dot_is_refused(server: LoopbackServer) -> None:
    async with client() as http:
        for host in ("localhost", "localhost.", "LOCALHOST"):
            error = await fetch_error(http.get(f"http://{host}:{server.port}/"))
            assert error.code == "blocked_address", host
    assert server.requests == []


async def test_public_names_are_pinned_to_the_checked_address() -> None:
    """The request goes to the IP that was checked; Host and TLS SNI keep the name, so a
    second, different DNS answer (rebinding) is never used for this request."""
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])
    seen: list[httpx.Request] = []

    async def resolver(host: str, port: int) -> list[str]:
        return next(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    async with client(transport=httpx.MockTransport(handler), resolver=resolver) as http:
        response = await http.get("https://calls.example.org/open?q=1")
        rebound = await fetch_error(http.get("https://calls.example.org/open?q=2"))
    (request,) = seen
    assert str(request.url) == f"https://{PUBLIC_IP}/open?q=1"
    assert request.headers["host"] == "calls.example.org"
    assert request.extensions["sni_hostname"] == "calls.example.org"
    assert response.url == "https://calls.example.org/open?q=1"
    assert rebound.code == "blocked_address"


async def test_international_names_are_sent_as_idna() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    resolver = resolving({"xn--rksmrgs-5wao1o.se": [PUBLIC_IP]})
    async with client(transport=httpx.MockTransport(handler), resolver=resolver) as http:
        response = await http.get("https://RÄKSMÖRGÅS.se/om")
    assert seen[0].headers["host"] == "xn--rksmrgs-5wao1o.se"
    assert response.url == "https://xn--rksmrgs-5wao1o.se/om"


async def test_next_checked_address_is_tried_when_one_refuses(server: LoopbackServer) -> None:
    server.add("/", "second address")
    resolver = resolving({"multi.test": ["127.0.0.2", "127.0.0.1"]})  # nobody on 127.0.0.2
    sleeps = Sleeps()
    async with client(
        server.allow_entry, f"127.0.0.2:{server.port}", sleep=sleeps, resolver=resolver
    ) as http:
        response = await http.get(f"http://multi.test:{server.port}/")
    assert response.content == b"second address"
    assert server.requests[0].header("host") == f"multi.test:{server.port}"
    assert sleeps.delays == []


async def test_tls_failures_are_tls_error_and_not_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed: Hostname mismatch")
        except ssl.SSLError as e:
            raise httpx.ConnectError(str(e), request=request) from e

    sleeps = Sleeps()
    resolver = resolving({"tls.example.org": [PUBLIC_IP, "2606:4700::1111"]})
    async with client(
        sleep=sleeps, transport=httpx.MockTransport(handler), resolver=resolver
    ) as http:
        error = await fetch_error(http.get("https://tls.example.org/"))
    assert error.code == "tls_error"
    assert "Hostname mismatch" in str(error)
    assert sleeps.delays == []
    assert http.stats.requests == 1  # a certificate problem is not retried on the next address


async def test_a_tls_error_after_the_handshake_is_a_broken_connection_and_retried() -> None:
    """A corrupt record in the middle of a body is no certificate problem: the connection
    broke, and the request is tried again."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            try:
                raise ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]")
            except ssl.SSLError as e:
                raise httpx.ReadError(str(e), request=request) from e
        return httpx.Response(200, content=b"ok")

    sleeps = Sleeps()
    resolver = resolving({"tls.example.org": [PUBLIC_IP]})
    async with client(
        sleep=sleeps, transport=httpx.MockTransport(handler), resolver=resolver
    ) as http:
        response = await http.get("https://tls.example.org/")
    assert response.content == b"ok"
    assert len(sleeps.delays) == 1  # retried once, after its backoff


async def test_tls_settings_are_built_for_the_first_https_request(server: LoopbackServer) -> None:
    """Issue 14: loading the CA bundle cost every `watcher poll` at start, https or not."""
    from watcher.wire import PoolPerServer

    server.add("/", "ok")
    async with client(server.allow_entry, retries=0) as http:
        pools = http._transport
        assert isinstance(pools, PoolPerServer)
        assert pools._tls is None
        assert (await http.get(server.url("/"))).content == b"ok"
        assert pools._tls is None  # plain http loads no CA bundle
        # The loopback server speaks plain HTTP: the handshake fails, after the context
        # was built, verifying as before.
        await fetch_error(http.get(server.url("/").replace("http://", "https://")))
        tls = pools._tls
        assert tls is not None and tls.verify_mode is ssl.CERT_REQUIRED and tls.check_hostname
        assert pools._ssl_for("https") is tls


async def test_dns_failure_is_dns_error_and_not_retried() -> None:
    sleeps = Sleeps()
    async with client(sleep=sleeps, resolver=resolving({})) as http:
        error = await fetch_error(http.get("https://no-such-host.example.org/"))
    assert error.code == "dns_error"
    assert "no-such-host.example.org" in str(error)
    assert isinstance(error.__cause__, socket.gaierror)
    assert sleeps.delays == []


async def test_allow_list_admits_exactly_its_ip_and_port(server: LoopbackServer) -> None:
    server.add("/", "admitted")
    with LoopbackServer() as other_port, LoopbackServer("127.0.0.2", server.port) as other_ip:
        other_port.add("/", "other port")
        other_ip.add("/", "other ip")
        async with client(server.allow_entry) as http:
            assert (await http.get(server.url("/"))).content == b"admitted"
            error = await fetch_error(http.get(other_port.url("/")))
            assert error.code == "blocked_address"
            assert (await fetch_error(http.get(other_ip.url("/")))).code == "blocked_address"
        assert other_port.requests == [] and other_ip.requests == []
        async with client("127.0.0.0/8") as http:  # a network admits any port on it
            assert (await http.get(other_port.url("/"))).content == b"other port"
            assert (await http.get(other_ip.url("/"))).content == b"other ip"


# ── redirects ────────────────────────────────────────────────────────────────────────────


async def test_redirects_are_followed_and_report_the_final_url(
    server: LoopbackServer, http: HttpClient
) -> None:
    server.add_handler("/old", lambda r: Reply.redirect("/moved", 301))
    server.add_handler("/moved", lambda r: Reply.redirect(server.url("/new?x=1"), 307))
    server.add("/new", "here")
    response = await http.get(server.url("/old"))
    assert (response.url, response.content) == (server.url("/new?x=1"), b"here")


async def test_credentials_do_not_follow_a_redirect_to_another_origin() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers["host"] == "a.example.org":
            return httpx.Response(302, headers={"Location": "https://b.example.org/x"})
        return httpx.Response(200, text="b")

    resolver = resolving({"a.example.org": [PUBLIC_IP], "b.example.org": [PUBLIC_IP]})
    async with client(transport=httpx.MockTransport(handler), resolver=resolver) as http:
        await http.get(
            "https://a.example.org/", headers={"Authorization": "Bearer t", "X-Keep": "1"}
        )
    first, second = seen
    assert first.headers["authorization"] == "Bearer t"
    assert "authorization" not in second.headers
    assert second.headers["x-keep"] == "1"
    assert second.extensions["sni_hostname"] == "b.example.org"


async def test_redirect_to_a_refused_address_is_blocked(server: LoopbackServer) -> None:
    with LoopbackServer("127.0.0.3") as internal:
        internal.add("/admin", "secret")
        server.add_handler("/go", lambda r: Reply.redirect(internal.url("/admin")))
        async with client(server.allow_entry) as http:
            error = await fetch_error(http.get(server.url("/go")))
        assert error.code == "blocked_address"
        assert "127.0.0.3" in str(error)
        assert internal.requests == []


async def test_redirect_to_another_scheme_is_blocked(
    server: LoopbackServer, http: HttpClient
) -> None:
    server.add_handler("/go", lambda r: Reply.redirect("file:///etc/passwd"))
    assert (await fetch_error(http.get(server.url("/go")))).code == "blocked_scheme"


async def test_redirect_loop(server: LoopbackServer, http: HttpClient) -> None:
    server.add_handler("/a", lambda r: Reply.redirect("/b"))
    server.add_handler("/b", lambda r: Reply.redirect("/a"))
    error = await fetch_error(http.get(server.url("/a")))
    assert error.code == "too_many_redirects"
    assert (server.hits("/a"), server.hits("/b")) == (1, 1)


async def test_redirect_chain_longer_than_max_redirects(server: LoopbackServer) -> None:
    def hop(request: RecordedRequest) -> Reply:
        n = int(request.route.rsplit("/", 1)[1])
        return Reply.redirect(f"/r/{n + 1}") if n < 10 else Reply(200, body=b"end")

    for n in range(11):
        server.add_handler(f"/r/{n}", hop)
    async with client(server.allow_entry, max_redirects=3) as http:
        assert (await http.get(server.url("/r/7"))).content == b"end"  # exactly 3 hops
        error = await fetch_error(http.get(server.url("/r/0")))
    assert error.code == "too_many_redirects"
    assert server.hits("/r/3") == 1 and server.hits("/r/4") == 0


# ── deadlines and retries ────────────────────────────────────────────────────────────────


async def test_total_deadline_stops_a_dripping_server(server: LoopbackServer) -> None:
    # One byte per 0.2 s would take 20 s; each chunk alone is well within any read timeout.
    server.add_handler(
        "/drip", lambda r: Reply(200, body=(b"x" for _ in range(100)), delay_per_chunk=0.2)
    )
    async with client(server.allow_entry, timeout=0.5, retries=0) as http:
        error = await fetch_error(http.get(server.url("/drip")))
    assert error.code == "timeout"
    assert server.url("/drip") in str(error)


async def test_connection_errors_are_retried_with_backoff() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls["n"] == 2:
            raise httpx.RemoteProtocolError("closed without a response", request=request)
        return httpx.Response(200, text="third time")

    sleeps = Sleeps()
    resolver = resolving({"flaky.example.org": [PUBLIC_IP]})
    async with client(
        sleep=sleeps, transport=httpx.MockTransport(handler), resolver=resolver, backoff=0.5
    ) as http:
        response = await http.get("http://flaky.example.org/")
    assert response.content == b"third time"
    assert sleeps.delays == [0.5, 1.0]
    assert http.stats.retries == 2


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply.never(), id="never-answers"),
        pytest.param(Reply(200, body=(b"x" for _ in range(1000)), delay_per_chunk=0.1), id="drips"),
    ],
)
async def test_a_timeout_is_not_retried_inside_the_request(
    server: LoopbackServer, reply: Reply
) -> None:
    # The server had the whole timeout: asking again would hold the poll for another one.
    server.add_handler("/slow", lambda r: reply)
    sleeps = Sleeps()
    async with client(server.allow_entry, sleep=sleeps, timeout=0.5, retries=2) as http:
        error = await fetch_error(http.get(server.url("/slow")))
    assert error.code == "timeout"
    assert server.hits("/slow") == 1
    assert sleeps.delays == []
    assert http.stats.retries == 0


async def test_an_origin_that_timed_out_is_not_asked_again_in_the_same_scope(
    server: LoopbackServer,
) -> None:
    # With robots.txt respected, a hanging site would otherwise cost one timeout for its
    # robots.txt and another for the page.
    server.add_handler("/robots.txt", lambda r: Reply.never())
    server.add("/page", "never asked for")
    async with client(server.allow_entry, timeout=0.5, respect_robots_txt=True) as http:
        with http.scope() as scope:
            error = await fetch_error(http.get(server.url("/page")))
            again = await fetch_error(http.get(server.url("/other")))
        assert [r.path for r in server.requests] == ["/robots.txt"]
        assert (error.code, again.code) == ("timeout", "timeout")
        assert "earlier in this poll" in str(error) and "/robots.txt" in str(error)
        assert scope.timed_out == {server.base_url: server.url("/robots.txt")}
        # Outside the scope (the next poll) the origin is asked again; robots.txt is
        # remembered as unreachable for an hour, so only the page is requested.
        assert (await http.get(server.url("/page"))).content == b"never asked for"
    assert [r.path for r in server.requests] == ["/robots.txt", "/page"]


async def test_connection_refused_is_connection_error_after_retries() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    async with client(f"127.0.0.1:{port}", sleep=sleeps, retries=1) as http:
        error = await fetch_error(http.get(f"http://127.0.0.1:{port}/"))
    assert error.code == "connection_error"
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert sleeps.delays == [1.0]


async def test_500_then_success_is_retried(server: LoopbackServer) -> None:
    server.add_handler(
        "/flaky",
        lambda r: Reply(500) if server.hits("/flaky") == 1 else Reply(200, body=b"ok"),
    )
    sleeps = Sleeps()
    async with client(server.allow_entry, sleep=sleeps, backoff=2.0) as http:
        response = await http.get(server.url("/flaky"))
    assert response.content == b"ok"
    assert server.hits("/flaky") == 2
    assert sleeps.delays == [2.0]
    assert http.stats.retries == 1


async def test_500_always_gives_http_500_after_all_retries(server: LoopbackServer) -> None:
    server.add("/broken", "oops", status=500)
    sleeps = Sleeps()
    async with client(server.allow_entry, sleep=sleeps, retries=3, backoff=0.5) as http:
        error = await fetch_error(http.get(server.url("/broken")))
    assert error.code == "http_500"
    assert server.url("/broken") in str(error)
    assert server.hits("/broken") == 4
    assert sleeps.delays == [0.5, 1.0, 2.0]
    assert http.stats.errors["http_500"] == 1


async def test_404_is_final_at_once(server: LoopbackServer) -> None:
    sleeps = Sleeps()
    async with client(server.allow_entry, sleep=sleeps) as http:
        error = await fetch_error(http.get(server.url("/missing")))
    assert error.code == "http_404"
    assert server.hits("/missing") == 1
    assert sleeps.delays == []


async def test_429_retry_after_seconds_is_honoured(server: LoopbackServer) -> None:
    server.add_handler(
        "/busy",
        lambda r: (
            Reply(429, {"Retry-After": "3"})
            if server.hits("/busy") == 1
            else Reply(200, body=b"done")
        ),
    )
    sleeps = Sleeps()
    async with client(server.allow_entry, sleep=sleeps) as http:
        response = await http.get(server.url("/busy"))
    assert response.content == b"done"
    assert sleeps.delays == [3.0]


async def test_503_retry_after_http_date_counts_from_the_servers_date() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(
                503,
                headers={
                    "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
                    "Retry-After": "Wed, 21 Oct 2026 07:28:04 GMT",
                },
            )
        return httpx.Response(200, text="back")

    sleeps = Sleeps()
    resolver = resolving({"api.example.org": [PUBLIC_IP]})
    async with client(
        sleep=sleeps, transport=httpx.MockTransport(handler), resolver=resolver
    ) as http:
        assert (await http.get("https://api.example.org/")).content == b"back"
    assert sleeps.delays == [4.0]


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_longer_than_allowed_is_rate_limited(
    server: LoopbackServer, status: int
) -> None:
    server.add("/later", "", status=status, headers={"Retry-After": "3600"})
    sleeps = Sleeps()
    async with client(server.allow_entry, sleep=sleeps, max_retry_after=30) as http:
        error = await fetch_error(http.get(server.url("/later")))
    assert error.code == "rate_limited"
    assert isinstance(error, RateLimited) and error.retry_after == 3600
    assert "3600" in str(error)
    assert server.hits("/later") == 1
    assert sleeps.delays == []


async def test_a_retry_after_of_minutes_is_not_waited_out_inline(server: LoopbackServer) -> None:
    # The default waits a few seconds at most: a poll never sleeps for minutes. The delay
    # goes to the caller, which records when the source may be tried again.
    assert FetchSection().max_retry_after <= 5
    server.add("/busy", "", status=429, headers={"Retry-After": "120"})
    sleeps = Sleeps()
    settings = FetchSection(allow_private_networks=(server.allow_entry,), respect_robots_txt=False)
    async with HttpClient(settings, UA, sleep=sleeps) as http:
        error = await fetch_error(http.get(server.url("/busy")))
    assert isinstance(error, RateLimited)
    assert (error.code, error.retry_after) == ("rate_limited", 120)
    assert server.hits("/busy") == 1
    assert sleeps.delays == []


async def test_a_retry_after_date_is_handed_on_in_seconds() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503,
            headers={
                "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
                "Retry-After": "Wed, 21 Oct 2026 09:28:00 GMT",
            },
        )

    sleeps = Sleeps()
    resolver = resolving({"api.example.org": [PUBLIC_IP]})
    async with client(
        sleep=sleeps, transport=httpx.MockTransport(handler), resolver=resolver
    ) as http:
        error = await fetch_error(http.get("https://api.example.org/"))
    assert isinstance(error, RateLimited) and error.retry_after == 7200
    assert sleeps.delays == []


async def test_persistent_429_ends_rate_limited(server: LoopbackServer) -> None:
    server.add("/busy", "", status=429)
    sleeps = Sleeps()
    async with client(server.allow_entry, sleep=sleeps, retries=2) as http:
        error = await fetch_error(http.get(server.url("/busy")))
    assert error.code == "rate_limited"
    assert isinstance(error, RateLimited) and error.retry_after is None  # not said: back-off
    assert server.hits("/busy") == 3
    assert sleeps.delays == [1.0, 2.0]


# ── bodies ───────────────────────────────────────────────────────────────────────────────


async def test_body_over_max_bytes(server: LoopbackServer) -> None:
    server.add("/big", b"x" * 5000)
    server.add_handler("/streamed", lambda r: Reply(200, body=(b"y" * 1000 for _ in range(5))))
    server.add("/fits", b"z" * 4000)
    async with client(server.allow_entry, max_bytes=4000) as http:
        for path in ("/big", "/streamed"):
            error = await fetch_error(http.get(server.url(path)))
            assert error.code == "too_large", path
            assert "4000" in str(error)
        assert len((await http.get(server.url("/fits"))).content) == 4000


@functools.cache
def gzip_bomb() -> bytes:
    """About 20 KB of gzip that inflates to 20 MB."""
    return gzip.compress(b"\0" * 20_000_000, compresslevel=9)


async def test_gzip_bomb_is_refused(server: LoopbackServer) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 50_000
    server.add("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    async with client(server.allow_entry, max_bytes=100_000) as http:
        error = await fetch_error(http.get(server.url("/bomb")))
    assert error.code == "too_large"


class CountingStream(httpx.AsyncByteStream):
    """A response body in 8 KB pieces (each inflates to 8 MB) that counts how many the
    client pulled."""

    def __init__(self, data: bytes) -> None:
        self.pieces = [data[i : i + 8192] for i in range(0, len(data), 8192)]
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.pulled += 1
            yield piece


async def test_gzip_bomb_stops_early_without_inflating_it_all() -> None:
    stream = CountingStream(gzip_bomb())
    resolver = resolving({"bomb.example.org": [PUBLIC_IP]})

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=stream)

    async with client(
        transport=httpx.MockTransport(handler), resolver=resolver, max_bytes=100_000
    ) as http:
        tracemalloc.start()
        try:
            error = await fetch_error(http.get("https://bomb.example.org/"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert error.code == "too_large"
    assert stream.pulled == 1 < len(stream.pieces)
    assert peak < 4_000_000  # inflating even one piece whole would take 8 MB


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
        ("gzip", lambda b: gzip.compress(b[:10]) + gzip.compress(b[10:])),  # two members
        ("identity", lambda b: b),
    ],
)
async def test_compressed_bodies_are_decoded(
    server: LoopbackServer, http: HttpClient, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    text = "Utlysning: Kompetensförsörjning i Västsverige ".encode() * 50
    server.add("/c", encode(text), headers={"Content-Encoding": encoding})
    response = await http.get(server.url("/c"))
    assert response.content == text


async def test_unrequested_or_corrupt_encoding_is_bad_encoding(
    server: LoopbackServer, http: HttpClient
) -> None:
    server.add("/br", b"\x1b\x00\x00", headers={"Content-Encoding": "br"})
    server.add("/corrupt", b"not gzip at all", headers={"Content-Encoding": "gzip"})
    for path in ("/br", "/corrupt"):
        assert (await fetch_error(http.get(server.url(path)))).code == "bad_encoding", path


async def test_page_carries_media_type_and_charset(
    server: LoopbackServer, http: HttpClient
) -> None:
    server.add("/feed", "<rss/>", content_type="application/rss+xml; charset=ISO-8859-1")
    page = (await http.get(server.url("/feed"))).page
    assert (page.url, page.content, page.status_code) == (server.url("/feed"), b"<rss/>", 200)
    assert (page.content_type, page.encoding) == ("application/rss+xml", "ISO-8859-1")
    assert page.headers["CONTENT-TYPE"].startswith("application/rss+xml")


SV = "Små och medelstora företag: ansökan öppnar".encode()  # valid UTF-8: 5 non-ASCII
XML_UTF8 = b'<?xml version="1.0" encoding="UTF-8"?>'

# id: (Content-Type, body, the body after repair, invalid sequences replaced)
UTF8_CASES: dict[str, tuple[str, bytes, bytes, int]] = {
    "header-says-utf8-stray-byte": (
        "text/html; charset=utf-8",
        SV + b" \xe4r",
        SV + " \ufffdr".encode(),
        1,
    ),
    "truncated-sequence": ("text/plain; charset=UTF8", SV + b"\xc3x", SV + "\ufffdx".encode(), 1),
    "xml-declaration-says-utf8": (
        "text/xml",
        XML_UTF8 + SV + b"\xf6",
        XML_UTF8 + SV + "\ufffd".encode(),
        1,
    ),
    "xml-without-encoding-is-utf8": (
        "application/rss+xml",
        b"<?xml version='1.0'?>" + SV + b"\x96",
        None,
        1,
    ),
    "json-is-utf8": ("application/json", b'{"t": "' + SV + b'\xe5"}', None, 1),
    "bom": ("text/plain", b"\xef\xbb\xbf" + SV + b"\xe5", None, 1),
    "a-genuine-replacement-character-is-not-counted": (
        "text/plain; charset=utf-8",
        SV + "\ufffd".encode() + b"\xe5",
        None,
        1,
    ),
    # Not repaired: left to the adapter's decoding (which falls back to Windows-1252).
    "mostly-windows-1252": (
        "text/html; charset=utf-8",
        "Ansökan för små företag".encode("cp1252") + "å".encode(),
        b"",
        0,
    ),
    "ascii-and-one-windows-1252-byte": ("text/html; charset=utf-8", b"Ans\xf6kan", b"", 0),
    "declared-latin-1": ("text/html; charset=iso-8859-1", SV + b"\xe4", b"", 0),
    "header-and-document-disagree": (
        "application/xml; charset=utf-8",
        b'<?xml version="1.0" encoding="iso-8859-1"?>' + SV + b"\xe4",
        b"",
        0,
    ),
    "html-declaring-nothing": ("text/html", SV + b"\xe4", b"", 0),
    "valid": ("text/html; charset=utf-8", SV, b"", 0),
}


@pytest.mark.parametrize(
    ("content_type", "body", "expected", "count"), UTF8_CASES.values(), ids=UTF8_CASES.keys()
)
def test_invalid_utf8_in_a_body_declared_utf8_is_replaced(
    content_type: str, body: bytes, expected: bytes | None, count: int
) -> None:
    repaired, replaced = repair_utf8(body, content_type)
    assert replaced == count
    if count:
        assert repaired == (expected or body.decode("utf-8", "replace").encode("utf-8"))
        assert "Små och medelstora företag: ansökan öppnar" in repaired.decode("utf-8")
    else:
        assert repaired is body


async def test_the_client_repairs_the_body_and_notes_it_on_the_scope(
    server: LoopbackServer, http: HttpClient
) -> None:
    server.add("/feed", XML_UTF8 + SV + b" \xe4r \xe5", content_type="application/rss+xml")
    server.add("/clean", XML_UTF8 + SV, content_type="application/rss+xml")
    with http.scope() as scope:
        response = await http.get(server.url("/feed"))
        clean = await http.get(server.url("/clean"))
    assert response.content == XML_UTF8 + SV + " \ufffdr \ufffd".encode()
    assert (response.invalid_utf8, clean.invalid_utf8) == (2, 0)
    [warning] = scope.warnings()
    assert "2 invalid byte sequence(s)" in warning and server.url("/feed") in warning


# ── conditional GET ──────────────────────────────────────────────────────────────────────


async def test_conditional_get_with_etag(server: LoopbackServer, http: HttpClient) -> None:
    server.add("/feed", "<rss/>", etag='"v1"')
    first = await http.get(server.url("/feed"))
    assert (first.status_code, first.cache.etag) == (200, '"v1"')
    second = await http.get(server.url("/feed"), cache=first.cache)
    assert second.not_modified
    assert second.cache == first.cache
    assert server.requests[-1].header("if-none-match") == '"v1"'
    assert http.stats.responses_304 == 1


async def test_conditional_get_with_last_modified(server: LoopbackServer, http: HttpClient) -> None:
    stamp = "Mon, 02 Mar 2026 08:00:00 GMT"
    server.add("/page", "<html/>", last_modified=stamp)
    first = await http.get(server.url("/page"))
    assert first.cache == CacheState(etag=None, last_modified=stamp)
    second = await http.get(server.url("/page"), cache=first.cache)
    assert second.not_modified and second.content == b""
    assert server.requests[-1].header("if-modified-since") == stamp
    older = CacheState(last_modified="Sun, 01 Mar 2026 08:00:00 GMT")
    assert not (await http.get(server.url("/page"), cache=older)).not_modified


# ── concurrency ──────────────────────────────────────────────────────────────────────────


async def test_per_host_concurrency_is_limited(server: LoopbackServer) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    two_in, release = threading.Event(), threading.Event()

    def slow(request: RecordedRequest) -> Reply:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            if state["now"] == 2:
                two_in.set()
            if state["now"] > 2:
                release.set()  # the limit is broken: let everyone finish so the test fails fast
        release.wait(10)
        with lock:
            state["now"] -= 1
        return Reply(200, body=b"ok")

    server.add_handler("/slow", slow)
    server.add("/probe", "probe")
    # The probe reaches the same server under another host name, so another host slot.
    resolver = resolving({"probe.test": ["127.0.0.1"]})
    async with client(
        server.allow_entry, resolver=resolver, per_host_concurrency=2, global_concurrency=10
    ) as http:
        tasks = [asyncio.create_task(http.get(server.url(f"/slow?i={i}"))) for i in range(6)]
        assert await asyncio.to_thread(two_in.wait, 10)
        # While two are held, the other four had every chance to reach the server: a
        # whole request to another host completes in the meantime.
        assert (await http.get(f"http://probe.test:{server.port}/probe")).content == b"probe"
        release.set()
        responses = await asyncio.gather(*tasks)
    assert [r.content for r in responses] == [b"ok"] * 6
    assert state["max"] == 2
    assert server.hits("/slow") == 6


async def test_global_concurrency_is_limited_across_hosts() -> None:
    state = {"now": 0, "max": 0}
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await gate.wait()
        state["now"] -= 1
        return httpx.Response(200)

    hosts = {f"h{i}.example.org": [PUBLIC_IP] for i in range(6)}
    async with client(
        transport=httpx.MockTransport(handler),
        resolver=resolving(hosts),
        per_host_concurrency=5,
        global_concurrency=3,
    ) as http:
        tasks = [asyncio.create_task(http.get(f"https://{h}/")) for h in hosts]
        for _ in range(50):  # in-process transport: every runnable task gets to run
            await asyncio.sleep(0)
        assert state["now"] == 3
        gate.set()
        await asyncio.gather(*tasks)
    assert state["max"] == 3


# ── headers, robots.txt, POST ────────────────────────────────────────────────────────────


async def test_user_agent_and_accept_encoding_on_every_request(
    loopback: LoopbackServer,
) -> None:
    loopback.add("/robots.txt", "User-agent: *\nAllow: /\n", content_type="text/plain")
    loopback.add("/", "home")
    async with client(loopback.allow_entry, respect_robots_txt=True) as http:
        await http.get(loopback.url("/"), headers={"user-agent": "curl/8", "X-Trace": "1"})
    assert [r.path for r in loopback.requests] == ["/robots.txt", "/"]
    for request in loopback.requests:
        assert request.header("user-agent") == UA
        assert request.header("accept-encoding") == "gzip, deflate"
        assert request.header("host") == f"127.0.0.1:{loopback.port}"
        assert request.header("accept") == "*/*"  # some firewalls refuse a request without
    assert loopback.requests[1].header("x-trace") == "1"


async def test_an_accept_header_the_adapter_gives_is_kept(http: HttpClient, server) -> None:
    server.add("/api", "{}", content_type="application/json")
    await http.get(server.url("/api"), headers={"Accept": "application/json"})
    assert [r.header("accept") for r in server.requests] == ["application/json"]


async def test_robots_disallow(server: LoopbackServer) -> None:
    server.add(
        "/robots.txt",
        "User-agent: *\nDisallow: /\n\nUser-agent: EU-bevakning\nDisallow: /intern/\n",
        content_type="text/plain",
    )
    server.add("/intern/x", "no")
    server.add("/calls", "yes")
    async with client(server.allow_entry, respect_robots_txt=True) as http:
        error = await fetch_error(http.get(server.url("/intern/x")))
        assert (await http.get(server.url("/calls"))).content == b"yes"
        entry = http.robots[server.base_url]
    assert error.code == "robots_disallowed"
    assert server.url("/intern/x") in str(error)
    assert server.hits("/intern/x") == 0
    assert server.hits("/robots.txt") == 1
    assert entry.status is RobotsStatus.FETCHED


async def test_robots_applies_to_redirect_targets(server: LoopbackServer) -> None:
    server.add("/robots.txt", "User-agent: *\nDisallow: /hidden\n", content_type="text/plain")
    server.add_handler("/go", lambda r: Reply.redirect("/hidden/page"))
    async with client(server.allow_entry, respect_robots_txt=True) as http:
        assert (await fetch_error(http.get(server.url("/go")))).code == "robots_disallowed"
    assert server.hits("/hidden/page") == 0


async def test_robots_404_allows_everything(server: LoopbackServer) -> None:
    server.add("/page", "content")
    async with client(server.allow_entry, respect_robots_txt=True) as http:
        assert (await http.get(server.url("/page"))).content == b"content"
        assert (await http.get(server.url("/page?again=1"))).content == b"content"
        entry = http.robots[server.base_url]
    assert server.hits("/robots.txt") == 1
    assert (entry.status, entry.reason) == (RobotsStatus.MISSING, "http_404")


async def test_robots_5xx_allows_but_is_remembered(server: LoopbackServer) -> None:
    server.add("/robots.txt", "down", status=503)
    server.add("/page", "content")
    sleeps = Sleeps()
    async with client(server.allow_entry, sleep=sleeps, respect_robots_txt=True) as http:
        assert (await http.get(server.url("/page"))).content == b"content"
        assert (await http.get(server.url("/page"))).content == b"content"
        entry = http.robots[server.base_url]
    assert (entry.status, entry.reason) == (RobotsStatus.UNREACHABLE, "http_503")
    assert server.hits("/robots.txt") == 1
    assert sleeps.delays == []  # robots.txt is not retried


async def test_robots_not_fetched_when_disabled(server: LoopbackServer, http: HttpClient) -> None:
    server.add("/robots.txt", "User-agent: *\nDisallow: /\n", content_type="text/plain")
    server.add("/page", "content")
    assert (await http.get(server.url("/page"))).content == b"content"
    assert server.hits("/robots.txt") == 0


async def test_post_multipart_params_and_303(server: LoopbackServer, http: HttpClient) -> None:
    server.add_handler("/search", lambda r: Reply.redirect("/results", 303))
    server.add("/results", '{"results": []}', content_type="application/json")
    response = await http.post(
        server.url("/search"),
        params={"apiKey": "SEDIA", "text": "***"},
        files={"query": ("blob", b'{"bool": {}}', "application/json")},
    )
    assert response.content == b'{"results": []}'
    search, results = server.requests
    assert (search.method, results.method) == ("POST", "GET")
    assert search.query == {"apiKey": ["SEDIA"], "text": ["***"]}
    assert (search.header("content-type") or "").startswith("multipart/form-data")
    assert b'{"bool": {}}' in search.body
    assert results.body == b""


async def test_stats_count_requests_statuses_and_bytes(
    server: LoopbackServer, http: HttpClient
) -> None:
    server.add("/a", b"12345")
    server.add_handler("/r", lambda r: Reply.redirect("/a"))
    await http.get(server.url("/r"))
    await fetch_error(http.get(server.url("/nope")))
    assert http.stats.requests == 3
    assert http.stats.by_status == {302: 1, 200: 1, 404: 1}
    assert http.stats.bytes == 5
    assert http.stats.errors == {"http_404": 1}


def test_a_url_s_host_is_named_as_the_client_limits_it() -> None:
    """Polling groups a cycle's sources by ``host_of``: the host the client's per-host
    limit counts, however the URL spells it."""
    assert host_of("HTTP://Example.ORG./a") == host_of("http://example.org:8080/b")
    assert host_of("https://example.org/feed") == "example.org"
    assert host_of("http://0x7f.1/") == "127.0.0.1"
    assert host_of("ftp://example.org/") == host_of("not a url") == ""


def test_every_error_code_is_listed_and_documented() -> None:
    source = Path(http_module.__file__).read_text(encoding="utf-8")
    raised = set(re.findall(r'code="([a-z_]+)"', source)) | {"http_<status>"}
    assert raised == set(ERROR_CODES)
    doc = http_module.__doc__ or ""
    for code in ERROR_CODES:
        assert f"| `{code}`" in doc, code


async def test_an_old_copy_of_robots_txt_in_force_is_reported(server: LoopbackServer) -> None:
    server.add("/robots.txt", "User-agent: *\nDisallow: /private\n", content_type="text/plain")
    server.add("/page", "content")
    async with client(server.allow_entry, respect_robots_txt=True) as http:
        await http.get(server.url("/page"))
        assert http.robots_warning(server.url("/page")) is None
        server.add("/robots.txt", "down", status=503)
        later = time.monotonic() + 25 * 3600
        http._robots._clock = lambda: later  # a day on
        await http.get(server.url("/page"))
        warning = http.robots_warning(server.url("/page"))
        assert (await fetch_error(http.get(server.url("/private")))).code == "robots_disallowed"
    assert server.hits("/robots.txt") == 2
    assert warning is not None and "could not be read again (http_503)" in warning


async def test_cookies_a_server_sets_are_never_sent_back(
    http: HttpClient, server: LoopbackServer
) -> None:
    """A poll needs no cookies, and one host's would reach another on the same address:
    the client keeps none (requests go straight to the transport, no jar in between)."""
    server.add("/a", "a", headers={"Set-Cookie": "session=abc; Path=/"})
    server.add("/b", "b")
    await http.get(server.url("/a"))
    await http.get(server.url("/b"))
    assert [r.route for r in server.requests] == ["/a", "/b"]
    assert all("cookie" not in r.headers for r in server.requests)
