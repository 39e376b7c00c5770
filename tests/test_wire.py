"""The client's connections (``watcher.wire``), against a scripted server on loopback: each
connection the server accepts answers the requests on it as its script says, so keep-alive,
a connection the server dropped, and cut-off answers are exercised on real sockets."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import h11
import httpx
import pytest

from tests.loopback import self_signed
from watcher.config import FetchSection
from watcher.exceptions import FetchError
from watcher.http import ACCEPT_ENCODING, HttpClient
from watcher.wire import KEEPALIVE_EXPIRY, PoolPerServer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
# What each accepted connection does with the requests on it, in order: bytes to answer,
# or None to close the connection without answering. After the last, the connection waits
# for the client to close it, or with ``then_close`` is closed by the server.
Script = Sequence[bytes | None]


class ScriptedServer:
    def __init__(self, scripts: Callable[[int], Script], then_close: bool = False) -> None:
        self._scripts = scripts
        self._then_close = then_close
        self.connections = 0
        self.requests: list[int] = []  # the connection number of each request

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        try:
            for answer in self._scripts(number):
                await reader.readuntil(b"\r\n\r\n")
                self.requests.append(number)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
            else:
                if not self._then_close:
                    await reader.read()  # wait for the client to close
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self, tls: ssl.SSLContext | None = None) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(scripts: Callable[[int], Script], then_close: bool = False) -> ScriptedServer:
        server = ScriptedServer(scripts, then_close)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


async def send(
    pools: PoolPerServer, port: int, path: str = "/", method: str = "GET", content: bytes = b""
) -> tuple[int, bytes]:
    """A request over ``pools``: its answer's status and body, read to its end."""
    request = httpx.Request(
        method, f"http://127.0.0.1:{port}{path}", headers={"Host": "a.test"}, content=content
    )
    response = await pools.handle_async_request(request)
    try:
        body = b"".join([part async for part in response.aiter_raw()])
    finally:
        await response.aclose()
    return response.status_code, body


async def test_a_response_read_to_its_end_leaves_its_connection_for_the_next(scripted) -> None:
    server = scripted(lambda n: [OK, OK, OK])
    port = await server.start()
    pools = PoolPerServer(per_host=2)
    for _ in range(3):
        assert await send(pools, port) == (200, b"ok")
    await pools.aclose()
    assert server.connections == 1
    assert server.requests == [0, 0, 0]


async def test_a_kept_connection_the_server_dropped_is_replaced_once(scripted) -> None:
    # The first connection answers once, then closes on the next request without a word
    # (as a server does with a connection it has timed out); the second answers.
    server = scripted(lambda n: [OK, None] if n == 0 else [OK])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    assert await send(pools, port) == (200, b"ok")
    assert await send(pools, port) == (200, b"ok")
    await pools.aclose()
    assert server.requests == [0, 0, 1]


async def test_a_new_connection_that_closes_without_answering_is_an_error(scripted) -> None:
    server = scripted(lambda n: [None])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await send(pools, port)
    await pools.aclose()
    assert server.requests == [0]  # not sent again: only a kept connection is replaced


async def test_a_connection_whose_answer_was_not_read_is_not_reused(scripted) -> None:
    moved = b"HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 5\r\n\r\nmoved"
    server = scripted(lambda n: [moved, OK] if n == 0 else [OK])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    request = httpx.Request("GET", f"http://127.0.0.1:{port}/a", headers={"Host": "a.test"})
    response = await pools.handle_async_request(request)
    assert response.status_code == 302
    await response.aclose()  # the body left unread, as the client does with a redirect
    assert await send(pools, port, "/b") == (200, b"ok")  # the one slot was given back
    await pools.aclose()
    assert server.requests == [0, 1]


async def test_connection_close_and_chunked_bodies(scripted) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    server = scripted(lambda n: [chunked, closing] if n == 0 else [OK])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    assert await send(pools, port) == (200, b"abcde")
    assert await send(pools, port) == (200, b"ok")
    assert await send(pools, port) == (200, b"ok")  # a new connection after the close
    await pools.aclose()
    assert server.requests == [0, 0, 1]


async def test_a_cut_off_body_is_a_connection_error(scripted) -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    server = scripted(lambda n: [cut], then_close=True)
    port = await server.start()
    settings = FetchSection(
        timeout=5.0,
        retries=0,
        respect_robots_txt=False,
        allow_private_networks=(f"127.0.0.1:{port}",),
    )
    async with HttpClient(settings, "test") as http:
        with pytest.raises(FetchError) as caught:
            await http.get(f"http://127.0.0.1:{port}/feed")
    assert caught.value.code == "connection_error"


async def test_a_timed_out_request_gives_its_slot_back(scripted) -> None:
    # The first connection answers the head and then nothing: the client's deadline
    # cancels the read, and the pool's one slot must be free for the next request.
    stuck = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart"
    server = scripted(lambda n: [stuck] if n == 0 else [OK])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    request = httpx.Request("GET", f"http://127.0.0.1:{port}/", headers={"Host": "a.test"})
    response = await pools.handle_async_request(request)
    stream = response.aiter_raw()
    assert await anext(stream) == b"part"
    reading = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # lets the read start and wait for bytes that never come
    reading.cancel()  # as the client's deadline does
    with pytest.raises(asyncio.CancelledError):
        await reading
    await response.aclose()
    assert await send(pools, port) == (200, b"ok")
    await pools.aclose()
    assert server.requests == [0, 1]


async def test_a_body_read_to_the_close_and_an_informational_answer_first(scripted) -> None:
    # HTTP/1.0 without a length: the body ends when the server closes the connection.
    old = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end"
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK
    server = scripted(lambda n: [old] if n == 0 else [early], then_close=True)
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    assert await send(pools, port) == (200, b"to the end")
    assert await send(pools, port) == (200, b"ok")
    await pools.aclose()
    assert server.requests == [0, 1]


@pytest.fixture(scope="module")
def feeds_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"), "DNS:feeds.test")


async def test_https_names_the_host_to_the_server_and_checks_its_certificate(
    scripted, feeds_cert: tuple[Path, Path]
) -> None:
    """The request goes to the pinned address; the TLS name (SNI, and the name the
    certificate must carry) is the host's, and a certificate for another name fails."""
    names: list[str | None] = []
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(str(feeds_cert[0]), str(feeds_cert[1]))
    server_tls.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    server = scripted(lambda n: [OK, OK])
    port = await server.start(server_tls)
    pools = PoolPerServer(per_host=1)
    pools._tls = ssl.create_default_context(cafile=str(feeds_cert[0]))  # trusts the test CA

    async def fetch(name: str) -> bytes:
        request = httpx.Request(
            "GET",
            f"https://127.0.0.1:{port}/",
            headers={"Host": name},
            extensions={"sni_hostname": name},
        )
        response = await pools.handle_async_request(request)
        try:
            return b"".join([part async for part in response.aiter_raw()])
        finally:
            await response.aclose()

    assert await fetch("feeds.test") == b"ok"
    assert await fetch("feeds.test") == b"ok"  # the same connection, kept
    with pytest.raises(httpx.ConnectError) as caught:
        await fetch("other.test")
    await pools.aclose()
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert names == ["feeds.test", "other.test"]
    assert server.requests == [0, 0]


TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


async def test_what_a_server_sent_on_an_idle_connection_is_no_answer(scripted) -> None:
    # A server about to close an idle connection may first send "408 Request Timeout"
    # unasked: the next request must not take it for its answer.
    # (A POST, which is never sent twice: the kept connection must not even be tried.)
    server = scripted(lambda n: [OK + TIMEOUT_408] if n == 0 else [OK])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    assert await send(pools, port) == (200, b"ok")
    assert await send(pools, port, "/s", "POST", b"q=1") == (200, b"ok")
    await pools.aclose()
    assert server.requests == [0, 1]


async def test_a_408_on_a_kept_connection_sends_a_get_again_and_a_post_not(scripted) -> None:
    server = scripted(lambda n: [OK, TIMEOUT_408] if n in (0, 2) else [OK])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    assert await send(pools, port) == (200, b"ok")
    assert await send(pools, port) == (200, b"ok")  # on a new connection
    assert server.requests == [0, 0, 1]
    await pools.aclose()

    pools = PoolPerServer(per_host=1)
    assert await send(pools, port) == (200, b"ok")
    # Not sent twice: the client's retries decide.
    assert await send(pools, port, "/s", "POST", b"q=1") == (408, b"")
    await pools.aclose()
    assert server.requests == [0, 0, 1, 2, 2]


async def test_a_switch_to_another_protocol_is_an_error_not_a_hang(scripted) -> None:
    switched = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    server = scripted(lambda n: [switched])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    request = httpx.Request(
        "GET",
        f"http://127.0.0.1:{port}/",
        headers={"Host": "a.test", "Connection": "Upgrade", "Upgrade": "websocket"},
    )
    with pytest.raises(httpx.RemoteProtocolError, match="another protocol"):
        await pools.handle_async_request(request)
    await pools.aclose()


async def test_kept_connections_are_closed_when_old_and_unused_pools_dropped(scripted) -> None:
    server = scripted(lambda n: [OK])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    assert await send(pools, port) == (200, b"ok")
    [pool] = pools._pools.values()
    [conn] = pool.idle
    assert pools._sweep is not None  # a sweep is due while a connection is kept
    pools.sweep(time.monotonic())
    assert pool.idle == [conn]  # young: kept
    pools.sweep(time.monotonic() + KEEPALIVE_EXPIRY)
    assert pools._pools == {}
    assert conn.writer.is_closing()
    await pools.aclose()
    assert pools._sweep is None


async def test_a_response_read_after_the_transport_closed_closes_its_connection(
    scripted,
) -> None:
    server = scripted(lambda n: [OK])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    request = httpx.Request("GET", f"http://127.0.0.1:{port}/", headers={"Host": "a.test"})
    response = await pools.handle_async_request(request)
    await pools.aclose()
    assert b"".join([part async for part in response.aiter_raw()]) == b"ok"
    await response.aclose()
    assert pools._pools == {}
    body = response.stream
    assert isinstance(body, httpx.AsyncByteStream)
    assert body._conn.writer.is_closing()  # type: ignore[attr-defined]


async def test_a_header_that_cannot_be_sent_spends_no_new_connection(scripted) -> None:
    server = scripted(lambda n: [OK, OK])
    port = await server.start()
    pools = PoolPerServer(per_host=1)
    assert await send(pools, port) == (200, b"ok")
    bad = httpx.Request(
        "GET", f"http://127.0.0.1:{port}/", headers={"Host": "a.test", "X-Bad": "a\x00b"}
    )
    with pytest.raises(httpx.LocalProtocolError):
        await pools.handle_async_request(bad)
    assert await send(pools, port) == (200, b"ok")
    await pools.aclose()
    assert server.connections == 2  # the bad request opened none; it spoilt the kept one


class _Heads:
    """A server on loopback that keeps the head of every request it gets (its bytes, as
    sent) and answers each with "ok"."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])


class _OwnRequestsOnly(PoolPerServer):
    """Connections that refuse httpx's requests: the client must send its own."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"sent as httpx's Request: {request.method} {request.url}")


# Paths and queries as written in config.toml or found in a page: httpx quotes some of
# them and drops "." segments; what the client sends must be byte for byte what httpx's
# Request made of them.
TARGETS = [
    "/",
    "/feed.xml",
    "/rss?lang=sv&page=2",
    "/a b/å?q=ö ä",
    "/a/./b/../c",
    "/.well-known/feed",
    "/x?q=a/b?c",
    "/%41%zz%",
    "/~u/(1)*!$'",
    "/p;x=1,2:3@4",
    '/q?"<>`{}|^',
]


async def test_the_client_sends_its_requests_as_httpx_would() -> None:
    server = _Heads()
    port = await server.start()
    settings = FetchSection(allow_private_networks=["127.0.0.0/8"], respect_robots_txt=False)
    expected: list[bytes] = []
    async with HttpClient(settings, "test/1.0", transport=_OwnRequestsOnly(1)) as http:
        for path in TARGETS:
            url = f"http://127.0.0.1:{port}{path}"
            await http.get(url, headers={"If-None-Match": '"v1"', "X-Tag": "a b"})
            sent = {
                "If-None-Match": '"v1"',
                "X-Tag": "a b",
                "User-Agent": "test/1.0",
                "Accept-Encoding": ACCEPT_ENCODING,
                "Host": f"127.0.0.1:{port}",
                "Accept": "*/*",
            }
            # What the connections sent of httpx's Request before (h11 writes it).
            made = httpx.Request("GET", url, headers=sent)
            head = h11.Request(method="GET", target=made.url.raw_path, headers=made.headers.raw)
            expected.append(h11.Connection(h11.CLIENT).send(head) or b"")
    server._server.close()
    assert server.heads == expected


async def test_a_header_httpx_refuses_is_refused_as_before() -> None:
    """A header value that is not ASCII text goes to httpx's Request, which refuses it
    before anything is sent, as it did when every request was httpx's."""
    server = _Heads()
    port = await server.start()
    settings = FetchSection(allow_private_networks=["127.0.0.0/8"], respect_robots_txt=False)
    async with HttpClient(settings, "test/1.0") as http:
        with pytest.raises(UnicodeEncodeError):
            await http.get(f"http://127.0.0.1:{port}/", headers={"X-Name": "Ö"})
        await http.get(f"http://127.0.0.1:{port}/", headers={"X-Name": "O"})
    server._server.close()
    assert len(server.heads) == 1


async def test_a_url_httpx_finds_too_long_is_refused_as_before() -> None:
    server = _Heads()
    port = await server.start()
    settings = FetchSection(allow_private_networks=["127.0.0.0/8"], respect_robots_txt=False)
    async with HttpClient(settings, "test/1.0") as http:
        with pytest.raises(FetchError) as caught:
            await http.get(f"http://127.0.0.1:{port}/" + "a" * 70_000)
    server._server.close()
    assert caught.value.code == "invalid_url"
    assert server.heads == []
