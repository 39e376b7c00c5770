"""HTTP/1.1 on the wire for the guarded client (``watcher.http``): one small pool of
keep-alive connections per server, spoken with h11 over asyncio streams.

``HttpClient`` does all the policy (addresses, redirects, retries, deadlines, sizes,
decoding); this module only carries one request and its raw response over a connection to
the address the client pinned. It replaces httpx's own transport (httpcore), whose anyio
cancel scopes and locks around every read and write, pool bookkeeping and second request
and response model more than doubled the CPU of a request: 0.38 ms against 0.17 ms for a
keep-alive 304 (``bench/connections.py``), which at 2,000 sources was most of a poll
cycle's event loop. h11 is the parser httpcore uses, so what is accepted and refused on
the wire is the same.

- **Pools.** One per (scheme, pinned address, port, Host header, TLS name): requests name
  the pinned IP, and a shared pool would send a request for ``b.example`` over a TLS
  connection whose certificate was checked for ``a.example`` on the same address. At most
  ``per_host`` connections per pool, the client's per-host limit.
- **Keep-alive.** A response read to its end gives its connection back to its pool; one
  closed early (a redirect's or an error's unread body) closes the connection. An idle
  connection is kept ``KEEPALIVE_EXPIRY`` seconds, then closed (a timer sweeps the pools,
  and drops a pool nobody uses, so a service that runs for months holds no sockets the
  servers have given up on). A kept connection is not reused once the server has closed
  it or sent anything on it (a "408 Request Timeout" before closing, say). For GET and
  HEAD, a kept connection that fails before any of the answer arrived, or answers 408, is
  replaced by a new one once, as a browser does; other methods get the error (the
  client's retries decide).
- **Errors** are httpx's, as the client expects: ``ConnectError`` (with the ``ssl.SSLError``
  as its cause for a TLS failure), ``ReadError``/``WriteError``, ``RemoteProtocolError``
  (a malformed or cut-off response, or a switch to another protocol, which a poll never
  asks for), ``LocalProtocolError``.
- **Deadlines** are the client's: it wraps each request, from connect to the last body
  byte, in one ``asyncio.timeout``. Cancellation closes the connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import NamedTuple

import h11
import httpx

__all__ = ["KEEPALIVE_EXPIRY", "Outgoing", "PoolPerServer"]

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpcore's default)
_READ_SIZE = 64 * 1024
# The largest status line and headers accepted (httpcore's limit; h11's own is 16 KiB,
# which some sites' cookies and security headers pass).
_MAX_HEAD = 100 * 1024


def _bytes(data: bytes | None) -> bytes:
    """What h11 gives to send for an event (None only for ConnectionClosed, never sent)."""
    assert data is not None
    return data


class Outgoing(NamedTuple):
    """A request as it goes on the wire. The client sends its GET and HEAD requests as
    these (``PoolPerServer.send``): building httpx's ``Request`` (its URL parsed again,
    its headers normalised) took a sixth of the event loop's CPU of an unchanged poll
    round; ``handle_async_request`` makes one of an httpx ``Request`` (a body to encode,
    or a caller of the transport interface)."""

    method: str
    scheme: str
    host: str  # the address connected to: the pinned IP, or a name
    port: int
    target: bytes  # path and query, as sent
    headers: list[tuple[bytes, bytes]]  # as sent, in order, the Host header among them
    host_header: str  # the Host header's value (with the TLS name, part of the pool's key)
    body: bytes = b""
    sni: str = ""  # the TLS name, when it is not ``host``


class _Stale(Exception):
    """A kept connection failed before any of the response arrived, or answered 408."""


_SAFE_METHODS = frozenset({"GET", "HEAD"})  # what a replaced kept connection sends again


class _Connection:
    __slots__ = ("idle_since", "proto", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.proto = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        """Whether a kept connection can carry another request: young enough, and the
        server has neither closed it nor sent anything on it while it was idle (a server
        may send "408 Request Timeout" before it closes an idle connection; that is no
        answer to the next request)."""
        return (
            now - self.idle_since < KEEPALIVE_EXPIRY
            and not self.reader.at_eof()
            and not self.writer.is_closing()
            and not self.proto.trailing_data[0]
            # What arrived since, in the stream's buffer (asyncio has no public way to ask).
            and not getattr(self.reader, "_buffer", b"")
        )

    def close(self) -> None:
        self.writer.close()

    async def receive(self) -> bytes:
        try:
            return await self.reader.read(_READ_SIZE)
        except OSError as e:
            raise httpx.ReadError(str(e) or type(e).__name__) from e


class _Pool:
    __slots__ = ("busy", "closed", "idle", "slots")

    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)
        self.busy = 0  # requests holding a slot or waiting for one
        self.idle: list[_Connection] = []
        self.closed = False  # the transport was closed: connections are not kept

    def release(self) -> None:
        self.busy -= 1
        self.slots.release()

    def prune(self, now: float) -> None:
        """Close the kept connections that are too old or that the server closed or spoke
        on."""
        keep = []
        for conn in self.idle:
            if conn.usable(now):
                keep.append(conn)
            else:
                conn.close()
        self.idle = keep

    def kept(self) -> _Connection | None:
        """The most recently used kept connection still usable (``prune``)."""
        self.prune(time.monotonic())
        return self.idle.pop() if self.idle else None


class _Body(httpx.AsyncByteStream):
    """A response's raw body, read from its connection as it is iterated; closing it gives
    the connection back to its pool (read to its end) or closes it (not)."""

    def __init__(self, owner: PoolPerServer, pool: _Pool, conn: _Connection) -> None:
        self._owner = owner
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
            else:  # ConnectionClosed in the middle of a body h11 could not end, or PAUSED
                raise httpx.RemoteProtocolError(
                    "server closed the connection without sending the complete body"
                )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn, proto, pool = self._conn, self._conn.proto, self._pool
        if (
            self._complete
            and not pool.closed
            and proto.our_state is h11.DONE
            and proto.their_state is h11.DONE
        ):
            proto.start_next_cycle()
            conn.idle_since = time.monotonic()
            pool.idle.append(conn)
            self._owner._sweep_later()
        else:
            conn.close()
        pool.release()


class PoolPerServer(httpx.AsyncBaseTransport):
    """The client's transport: see the module docstring."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        # TLS settings are built on the first pool that needs them: loading the CA bundle
        # costs a `watcher poll` tens of milliseconds, for nothing when no source is https.
        self._tls: ssl.SSLContext | None = None
        self._pools: dict[str, _Pool] = {}
        self._sweep: asyncio.TimerHandle | None = None

    def _ssl_for(self, scheme: str) -> ssl.SSLContext | None:
        """The verifying TLS context for https (built once); None for plain http."""
        if scheme != "https":
            return None
        if self._tls is None:
            tls = httpx.create_ssl_context()
            tls.set_alpn_protocols(["http/1.1"])  # as httpcore asked, without HTTP/2
            self._tls = tls
        return self._tls

    def sweep(self, now: float) -> None:
        """Close the kept connections that are too old or that the server closed or spoke
        on, and drop the pools nobody uses."""
        for name, pool in list(self._pools.items()):
            pool.prune(now)
            if not pool.idle and not pool.busy:
                del self._pools[name]

    def _sweep_later(self) -> None:
        """A sweep ``KEEPALIVE_EXPIRY`` seconds on, while any connection is kept."""
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(KEEPALIVE_EXPIRY, self._swept)

    def _swept(self) -> None:
        self._sweep = None
        self.sweep(time.monotonic())
        if any(pool.idle for pool in self._pools.values()):
            self._sweep_later()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        url = request.url
        out = Outgoing(
            request.method,
            url.scheme,
            url.host,
            url.port or (443 if url.scheme == "https" else 80),
            url.raw_path,
            request.headers.raw,
            request.headers.get("host", ""),
            body,
            request.extensions.get("sni_hostname") or "",
        )
        return await self.send(out, request)

    async def send(self, out: Outgoing, request: httpx.Request | None = None) -> httpx.Response:
        """Send ``out`` (``request``, when it came as httpx's, is the response's) and return
        the response with its head read; its body is read as it is iterated."""
        # Keyed by the name asked for too (Host header, TLS name): two names on one address
        # have separate per-host limits, so they must not wait for each other's connections.
        name = f"{out.scheme}://{out.host}:{out.port}/{out.host_header}/{out.sni}"
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = _Pool(self._per_host)
        pool.busy += 1  # from now on: a sweep never drops a pool a request waits for
        try:
            await pool.slots.acquire()
        except BaseException:
            pool.busy -= 1
            raise
        try:
            conn = pool.kept()
            if conn is not None:
                try:
                    return await self._exchange(pool, conn, out, request, kept=True)
                except _Stale:
                    pass  # the server gave up on the kept connection: a new one
            conn = await self._connect(out)
            return await self._exchange(pool, conn, out, request, kept=False)
        except BaseException:
            pool.release()
            raise

    async def _connect(self, out: Outgoing) -> _Connection:
        tls = self._ssl_for(out.scheme)
        try:
            reader, writer = await asyncio.open_connection(
                out.host,
                out.port,
                ssl=tls,
                server_hostname=(out.sni or out.host) if tls is not None else None,
                limit=_MAX_HEAD,
            )
        except (OSError, ssl.SSLError) as e:  # refused, unreachable, handshake failed
            raise httpx.ConnectError(str(e) or type(e).__name__) from e
        return _Connection(reader, writer)

    async def _exchange(
        self,
        pool: _Pool,
        conn: _Connection,
        out: Outgoing,
        request: httpx.Request | None,
        kept: bool,
    ) -> httpx.Response:
        """Send the request and read the response's head; the body is read as the
        response is. A kept connection that fails before any of the answer arrived raises
        ``_Stale``."""
        proto = conn.proto
        try:
            head = h11.Request(method=out.method, target=out.target, headers=out.headers)
            data = _bytes(proto.send(head))
            if out.body:
                data += _bytes(proto.send(h11.Data(data=out.body)))
            data += _bytes(proto.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as e:  # a bad header value, say: the same on any
            conn.close()  # connection, and h11 will not send on this one again
            raise httpx.LocalProtocolError(str(e)) from e
        # A kept connection the server gave up on may be replaced once, before any of the
        # answer arrived: only for a request that is safe to send twice.
        replaceable = kept and out.method in _SAFE_METHODS
        answered = False  # any byte of the answer arrived
        try:
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
                    if replaceable and event.status_code == 408:
                        raise _Stale  # "408 Request Timeout": it had closed it for itself
                    break
                elif type(event) is h11.ConnectionClosed:
                    raise httpx.RemoteProtocolError("server disconnected without a response")
                elif type(event) is h11.InformationalResponse and event.status_code != 101:
                    continue  # 100 Continue, 103 Early Hints: the real answer follows
                else:  # 101 Switching Protocols (h11 then pauses): not HTTP any more
                    raise httpx.RemoteProtocolError("server switched to another protocol")
        except (httpx.TransportError, h11.RemoteProtocolError) as e:
            conn.close()
            if replaceable and not answered:
                raise _Stale from e
            if isinstance(e, h11.RemoteProtocolError):
                raise httpx.RemoteProtocolError(str(e)) from e
            raise
        except BaseException:  # cancelled (the client's deadline), _Stale, or a bug
            conn.close()
            raise
        return httpx.Response(
            event.status_code,
            headers=event.headers.raw_items(),
            stream=_Body(self, pool, conn),
            extensions={
                "http_version": b"HTTP/" + event.http_version,
                "reason_phrase": event.reason,
            },
            request=request,
        )

    async def aclose(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.closed = True  # a response still being read closes its connection
            for conn in pool.idle:
                conn.close()
            pool.idle.clear()
