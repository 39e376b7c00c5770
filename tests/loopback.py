"""A real HTTP/1.1 server on a loopback address, in a thread, for tests and benchmarks.

    with LoopbackServer() as server:
        server.add("/feed.xml", xml, content_type="application/rss+xml", etag='"v1"')
        server.add_handler("/flaky", lambda req: Reply(500) if server.hits("/flaky") < 3
                           else Reply(200, body=b"ok"))
        settings = FetchSection(allow_private_networks=(server.allow_entry,))
        ... http.get(server.url("/feed.xml")) ...
        assert server.hits("/feed.xml") == 1

Real sockets, so the client's address checks, timeouts and streaming are exercised as in
production. Paths not added answer 404. ``Reply.body`` may be an iterable of chunks, sent
with chunked transfer encoding and ``delay_per_chunk`` between them (a slow or dripping
server); ``Reply.never()`` reads the request and never answers (a hanging server). ``latency`` delays every response (benchmarks); bind hosts such as ``127.0.0.5``
work on Linux without setup. Waits in the server end at once on ``stop()``.

Test modules get a started server from the ``loopback`` fixture
(``from tests.loopback import loopback  # noqa: F401`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import email.utils
import selectors
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import pytest

__all__ = ["LoopbackServer", "RecordedRequest", "Reply", "loopback", "self_signed"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str  # with the query string
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    @property
    def route(self) -> str:
        """The path without the query string."""
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Reply:
    """What a handler answers: bytes, or an iterable of chunks sent one by one."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    delay_per_chunk: float = 0.0
    hang: bool = False  # send nothing at all until the server stops

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        return cls(status, {"Location": location})

    @classmethod
    def never(cls) -> Reply:
        """Accept and record the request, then never answer (until the server stops)."""
        return cls(hang=True)


Handler = Callable[[RecordedRequest], Reply]


@dataclass(frozen=True)
class _Resource:
    body: bytes
    status: int
    headers: Mapping[str, str]
    etag: str | None
    last_modified: str | None

    def reply(self, request: RecordedRequest) -> Reply:
        validators = {
            k: v
            for k, v in (("ETag", self.etag), ("Last-Modified", self.last_modified))
            if v is not None
        }
        if self._not_modified(request):
            return Reply(304, validators)
        return Reply(self.status, {**self.headers, **validators}, self.body)

    def _not_modified(self, request: RecordedRequest) -> bool:
        # If-None-Match takes precedence over If-Modified-Since (RFC 9110 13.2.2).
        inm = request.header("if-none-match")
        if self.etag is not None and inm is not None:
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            return "*" in tags or self.etag.removeprefix("W/") in tags
        ims = request.header("if-modified-since")
        if self.last_modified is not None and ims is not None:
            try:
                return email.utils.parsedate_to_datetime(ims) >= email.utils.parsedate_to_datetime(
                    self.last_modified
                )
            except (TypeError, ValueError):
                return False
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a benchmark opens many connections at once

    def __init__(self, owner: LoopbackServer, address: tuple[str, int]) -> None:
        self.owner = owner
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a timeout test, an unread error body) is not a failure.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked replies for streamed bodies
    # Headers and body go out in separate writes; with Nagle's algorithm the second waits
    # for the client's delayed ACK (40 ms a request on Linux).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest output is for failures."""

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _serve(self) -> None:
        owner = self.server.owner
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        owner._record(request)
        reply = owner._reply_for(request)
        if reply.hang:
            owner._stopping.wait()
            self.close_connection = True
            return
        if owner.latency and owner._stopping.wait(owner.latency):
            self.close_connection = True
            return
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test, usually)

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        owner = self.server.owner
        self.send_response(reply.status)
        names = {k.lower() for k in reply.headers}
        for name, value in reply.headers.items():
            self.send_header(name, value)
        no_body = self.command == "HEAD" or reply.status in (204, 304) or reply.status < 200
        if isinstance(reply.body, bytes | bytearray):
            if "content-length" not in names and reply.status not in (204, 304):
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if not no_body:
                self.wfile.write(reply.body)
            return
        chunked = "content-length" not in names
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        for chunk in reply.body:
            if reply.delay_per_chunk and owner._stopping.wait(reply.delay_per_chunk):
                self.close_connection = True
                return
            if not chunk:
                continue
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


class LoopbackServer:
    """A ThreadingHTTPServer on ``host`` (default 127.0.0.1) and a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(self, (host, port))
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def allow_entry(self) -> str:
        """The ``[fetch] allow_private_networks`` entry that admits exactly this server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def add(
        self,
        path: str,
        body: bytes | str = b"",
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str = "text/html; charset=utf-8",
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> None:
        """Serve a fixed body at ``path`` (exact path, or path and query). With ``etag`` or
        ``last_modified``, a matching conditional request gets 304."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        all_headers = {"Content-Type": content_type, **(headers or {})}
        resource = _Resource(data, status, all_headers, etag, last_modified)
        self.add_handler(path, resource.reply)

    def add_handler(self, path: str, fn: Handler) -> None:
        """Answer ``path`` with ``fn(request)`` (runs in the server's handler thread)."""
        with self._lock:
            self._routes[path] = fn

    def hits(self, path: str) -> int:
        """Requests received for ``path`` (any query, unless ``path`` has one)."""
        with self._lock:
            if "?" in path:
                return sum(1 for r in self.requests if r.path == path)
            return sum(1 for r in self.requests if r.route == path)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _reply_for(self, request: RecordedRequest) -> Reply:
        with self._lock:
            fn = self._routes.get(request.path) or self._routes.get(request.route)
        if fn is None:
            return Reply(404, {"Content-Type": "text/plain"}, b"not found")
        return fn(request)

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"loopback-{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        # Our own accept loop: serve_forever() polls for shutdown, which would make every
        # stop() wait up to its poll interval.
        with selectors.DefaultSelector() as selector:
            selector.register(self._server.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    self._server.handle_request()

    def stop(self) -> None:
        self._stopping.set()
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._server.close_connections()
        self._server.server_close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    """A started ``LoopbackServer`` on 127.0.0.1, stopped after the test."""
    with LoopbackServer() as server:
        yield server


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate and its key in ``folder`` (made with the openssl command)
    for ``name``, a subjectAltName entry: ``"IP:127.0.0.1"``, ``"DNS:feeds.test"``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    key, crt = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(crt), "-subj", f"/CN={name.split(':', 1)[1]}",
            "-addext", f"subjectAltName={name}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return crt, key
