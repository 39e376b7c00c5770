"""CPU per HTTP request on the client side: the project's connections (``watcher/wire.py``)
beside httpx's own transport (httpcore), on loopback.

A server in another process answers every request at once over keep-alive: a 304 (what
most of an unchanged poll round is) or a 200 with a 20 kB body. The client sends the
requests two at a time (the per-host limit) and reads each answer to its end; the figure
is the client process's CPU time per request, best of ``--runs``, interleaved. The last
row is the whole client, ``HttpClient.get``, with the checks, slots and decoding of a
poll's request (robots.txt off), over the project's connections.

    python bench/connections.py [--requests 3000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from watcher.config import FetchSection
from watcher.http import HttpClient
from watcher.wire import PoolPerServer

BODY = b"<rss>" + b"x" * 20_000 + b"</rss>"
ANSWERS = {
    "304": b'HTTP/1.1 304 Not Modified\r\nDate: Sun, 06 Dec 2026 02:00:00 GMT\r\nETag: "v1"\r\n\r\n',
    "200, 20 kB": b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
    + BODY,
}
HEADERS = {
    "User-Agent": "bench",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
    "Host": "feeds.test",
    "If-None-Match": '"v1"',
}


def serve(ports: multiprocessing.SimpleQueue) -> None:  # type: ignore[type-arg]
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(ANSWERS["200, 20 kB"] if b"/full" in head else ANSWERS["304"])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def requests(transport: httpx.AsyncBaseTransport, port: int, path: str, n: int) -> None:
    async def one(i: int) -> None:
        request = httpx.Request("GET", f"http://127.0.0.1:{port}/{path}/{i}", headers=HEADERS)
        response = await transport.handle_async_request(request)
        try:
            async for _ in response.aiter_raw():
                pass
        finally:
            await response.aclose()

    slots = asyncio.Semaphore(2)

    async def limited(i: int) -> None:
        async with slots:
            await one(i)

    await asyncio.gather(*(limited(i) for i in range(n)))


def httpcore_transport() -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    return httpx.AsyncHTTPTransport(retries=0, trust_env=False, limits=limits)


def wire_transport() -> httpx.AsyncBaseTransport:
    return PoolPerServer(per_host=2)


class ClientGets:
    """The whole client (``HttpClient.get`` with every check it makes) over its
    connections: a poll's request, robots.txt aside."""

    def __init__(self) -> None:
        settings = FetchSection(
            allow_private_networks=["127.0.0.0/8"],
            respect_robots_txt=False,
            per_host_concurrency=2,
            retries=0,
        )
        self.client = HttpClient(settings, HEADERS["User-Agent"])

    async def run(self, port: int, path: str, n: int) -> None:
        headers = {"If-None-Match": HEADERS["If-None-Match"]}
        # The client keeps to its per-host limit (2) by itself.
        await asyncio.gather(
            *(
                self.client.get(f"http://127.0.0.1:{port}/{path}/{i}", headers=headers)
                for i in range(n)
            )
        )

    async def aclose(self) -> None:
        await self.client.aclose()


async def cpu_per_request(
    make: Callable[[], httpx.AsyncBaseTransport | ClientGets], port: int, path: str, n: int
) -> float:
    made = make()

    async def send(count: int) -> None:
        if isinstance(made, ClientGets):
            await made.run(port, path, count)
        else:
            await requests(made, port, path, count)

    await send(200)  # connections open, code warm
    start = time.process_time()
    await send(n)
    spent = time.process_time() - start
    await made.aclose()
    return spent / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    ports: multiprocessing.SimpleQueue = multiprocessing.SimpleQueue()  # type: ignore[type-arg]
    server = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    server.start()
    port = ports.get()
    kinds: dict[str, Callable[[], httpx.AsyncBaseTransport | ClientGets]] = {
        "httpx's transport (httpcore)": httpcore_transport,
        "watcher.wire": wire_transport,
        "watcher.http.HttpClient.get": ClientGets,
    }
    paths = {"304": "nm", "200, 20 kB": "full"}
    best: dict[tuple[str, str], float] = {}
    try:
        for _ in range(args.runs):
            for kind, make in kinds.items():
                for answer, path in paths.items():
                    spent = asyncio.run(cpu_per_request(make, port, path, args.requests))
                    key = (kind, answer)
                    best[key] = min(best.get(key, spent), spent)
    finally:
        server.terminate()
    print(f"| client CPU per request, best of {args.runs} | " + " | ".join(paths) + " |")
    print("| --- |" + " --- |" * len(paths))
    for kind in kinds:
        cells = " | ".join(f"{best[(kind, a)] * 1e3:.2f} ms" for a in paths)
        print(f"| {kind} | {cells} |")
    print(f"\n{args.requests} requests per run, 2 at a time, keep-alive, loopback")


if __name__ == "__main__":
    main()
