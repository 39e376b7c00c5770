"""HTTP/1.1 on the wire for the guarded client (``watcher.http``): one small pool of
keep-alive connections per server, spoken with h11 over asyncio streams.

``HttpClient`` does all the policy (addresses, redirects, retries, deadlines, sizes,
decoding); this module only carries one request and its raw response over a connection to
the address the client pinned. It replaces httpx's own transport (httpcore): a request
there cost about 0.5 ms of CPU beyond h11 itself (anyio cancel scopes and locks around
every read and write, the pool's bookkeeping, a second request and response model), which
at 2,000 sources was most of a poll cycle's event loop. h11 is the parser httpcore uses,
so what is accepted and refused on the wire is the same.

- **Pools.** One per (scheme, pinned address, port, Host header, TLS name): requests name
  the pinned IP, and a shared pool would send a request for ``b.example`` over a TLS
  connection whose certificate was checked for ``a.example`` on the same address. At most
  ``per_host`` connections per pool, the client's per-host limit.
- **Keep-alive.** A response read to its end gives its connection back to its pool; one
  closed early (a redirect's or an error's unread body) closes the connection. An idle
  connection is kept ``KEEPALIVE_EXPIRY`` seconds. A kept connection the server closed
  meanwhile, found on reuse (nothing of the response arrived), is replaced by a new one
  once, as a browser does.
- **Errors** are httpx's, as the client expects: ``ConnectError`` (with the ``ssl.SSLError``
  as its cause for a TLS failure), ``ReadError``/``WriteError``, ``RemoteProtocolError``
  (a malformed or cut-off response), ``LocalProtocolError``.
- **Deadlines** are the client's: it wraps each request, from connect to the last body
  byte, in one ``asyncio.timeout``. Cancellation closes the connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator

import h11
import httpx

__all__ = ["KEEPALIVE_EXPIRY", "PoolPerServer"]

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpcore's default)
_READ_SIZE = 64 * 1024
# The largest status line and headers accepted (httpcore's limit; h11's own is 16 KiB,
# which some sites' cookies and security headers pass).
_MAX_HEAD = 100 * 1024


def _bytes(data: bytes | None) -> bytes:
    """What h11 gives to send for an event (None only for ConnectionClosed, never sent)."""
    assert data is not None
    return data


class _Stale(Exception):
    """A kept connection failed before any of the response arrived."""


class _Connection:
    __slots__ = ("idle_since", "proto", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.proto = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        """Whether a kept connection can carry another request: young enough, and the
        server has not closed it (its end of stream arrived while it was idle)."""
        return (
            now - self.idle_since < KEEPALIVE_EXPIRY
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()

    async def receive(self) -> bytes:
        try:
            return await self.reader.read(_READ_SIZE)
        except OSError as e:
            raise httpx.ReadError(str(e) or type(e).__name__) from e


class _Pool:
    __slots__ = ("idle", "slots")

    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)
        self.idle: list[_Connection] = []

    def kept(self) -> _Connection | None:
        """The most recently used kept connection still usable; the others that are not
        are closed."""
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None


class _Body(httpx.AsyncByteStream):
    """A response's raw body, read from its connection as it is iterated; closing it gives
    the connection back to its pool (read to its end) or closes it (not)."""

    def __init__(self, pool: _Pool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self._complete = False
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        proto = self._conn.proto
        while not self._complete:
            try:
                event = proto.next_event()
            except h11.RemoteProtocolError as e:
                raise httpx.RemoteProtocolError(str(e)) from e
            if event is h11.NEED_DATA:
                proto.receive_data(await self._conn.receive())
            elif type(event) is h11.Data:
                yield bytes(event.data)
            elif type(event) is h11.EndOfMessage:
                self._complete = True
            else:  # ConnectionClosed in the middle of a body h11 could not end
                raise httpx.RemoteProtocolError(
                    "server closed the connection without sending the complete body"
                )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn, proto = self._conn, self._conn.proto
        if self._complete and proto.our_state is h11.DONE and proto.their_state is h11.DONE:
            proto.start_next_cycle()
            conn.idle_since = time.monotonic()
            self._pool.idle.append(conn)
        else:
            conn.close()
        self._pool.slots.release()


class PoolPerServer(httpx.AsyncBaseTransport):
    """The client's transport: see the module docstring."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        # TLS settings are built on the first pool that needs them: loading the CA bundle
        # costs a `watcher poll` tens of milliseconds, for nothing when no source is https.
        self._tls: ssl.SSLContext | None = None
        self._pools: dict[str, _Pool] = {}

    def _ssl_for(self, scheme: str) -> ssl.SSLContext | None:
        """The verifying TLS context for https (built once); None for plain http."""
        if scheme != "https":
            return None
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        sni = request.extensions.get("sni_hostname") or ""
        # Keyed by the name asked for too (Host header, TLS name): two names on one address
        # have separate per-host limits, so they must not wait for each other's connections.
        name = f"{url.scheme}://{url.host}:{url.port}/{request.headers.get('host', '')}/{sni}"
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = _Pool(self._per_host)
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        await pool.slots.acquire()
        try:
            conn = pool.kept()
            if conn is not None:
                try:
                    return await self._exchange(pool, conn, request, body, kept=True)
                except _Stale:
                    pass  # closed by the server while it was idle: a new connection
            conn = await self._connect(url, sni)
            return await self._exchange(pool, conn, request, body, kept=False)
        except BaseException:
            pool.slots.release()
            raise

    async def _connect(self, url: httpx.URL, sni: str) -> _Connection:
        tls = self._ssl_for(url.scheme)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            reader, writer = await asyncio.open_connection(
                url.host,
                port,
                ssl=tls,
                server_hostname=(sni or url.host) if tls is not None else None,
                limit=_MAX_HEAD,
            )
        except (OSError, ssl.SSLError) as e:  # refused, unreachable, handshake failed
            raise httpx.ConnectError(str(e) or type(e).__name__) from e
        return _Connection(reader, writer)

    async def _exchange(
        self, pool: _Pool, conn: _Connection, request: httpx.Request, body: bytes, kept: bool
    ) -> httpx.Response:
        """Send the request and read the response's head; the body is read as the
        response is. A kept connection that fails before any of the answer arrived raises
        ``_Stale``."""
        proto = conn.proto
        answered = False  # any byte of the answer arrived
        try:
            try:
                head = h11.Request(
                    method=request.method, target=request.url.raw_path, headers=request.headers.raw
                )
                data = _bytes(proto.send(head))
                if body:
                    data += _bytes(proto.send(h11.Data(data=body)))
                data += _bytes(proto.send(h11.EndOfMessage()))
            except h11.LocalProtocolError as e:
                raise httpx.LocalProtocolError(str(e)) from e
            try:
                conn.writer.write(data)
                await conn.writer.drain()
            except OSError as e:
                raise httpx.WriteError(str(e) or type(e).__name__) from e
            while True:
                event = proto.next_event()
                if event is h11.NEED_DATA:
                    received = await conn.receive()
                    answered = answered or bool(received)
                    proto.receive_data(received)
                elif type(event) is h11.Response:
                    break
                elif type(event) is h11.ConnectionClosed:
                    raise httpx.RemoteProtocolError("server disconnected without a response")
                # else an informational (1xx) response: the real one follows
        except (httpx.TransportError, h11.RemoteProtocolError) as e:
            conn.close()
            if kept and not answered:
                raise _Stale from e
            if isinstance(e, h11.RemoteProtocolError):
                raise httpx.RemoteProtocolError(str(e)) from e
            raise
        except BaseException:  # cancelled (the client's deadline) or a bug: never reused
            conn.close()
            raise
        return httpx.Response(
            event.status_code,
            headers=event.headers.raw_items(),
            stream=_Body(pool, conn),
            extensions={
                "http_version": b"HTTP/" + event.http_version,
                "reason_phrase": event.reason,
            },
            request=request,
        )

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            for conn in pool.idle:
                conn.close()
            pool.idle.clear()
