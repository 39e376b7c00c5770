"""Feed benchmark: requests per second on a cached area feed (target ≥ 500 req/s).

The service's web app (``create_app``, as ``watcher run`` serves it) runs under uvicorn in
a child process on loopback over a store of 2,000 items (the digest benchmark's). A load
client in this process keeps ``--connections`` HTTP/1.1 keep-alive connections busy on
``/feeds/area/fonder-program.xml`` for ``--requests`` requests, then the same with
``If-None-Match`` (304s), and prints requests per second for each.

    python bench/feeds.py [--requests 5000] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import digest as digest_bench  # the digest benchmark's store builder

from watcher.app import App
from watcher.config import validate_data

ROOT = Path(__file__).resolve().parents[1]

SERVER = """
import sys, uvicorn
from watcher.app import App
from watcher.web.app import create_app
app = App.from_path(sys.argv[1])
uvicorn.run(create_app(app), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False)
"""
PATH = "/feeds/area/fonder-program.xml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(
    port: int, total: int, connections: int, extra: str = ""
) -> tuple[float, dict[int, int]]:
    """Send ``total`` GETs over keep-alive connections; (seconds, count by status)."""
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept-Encoding: identity\r\n{extra}\r\n"
    ).encode()
    statuses: dict[int, int] = {}
    per = total // connections

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(per):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - t0, statuses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--items", type=int, default=2000)
    args = ap.parse_args()
    import random

    import tomlkit

    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "watcher": {"database_url": f"sqlite:///{tmp}/bench.db"},
            "email": {"outbox": f"{tmp}/outbox"},
        }
        cfg_path = Path(tmp) / "config.toml"
        cfg_path.write_text(tomlkit.dumps(data), encoding="utf-8")
        app = App(validate_data(data, str(cfg_path)))
        app.storage.ensure_schema()
        digest_bench.seed(app, args.items, random.Random(5))
        app.close()
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(cfg_path), str(port)], cwd=tmp, env=env
        )
        try:
            body = b""
            for _ in range(200):  # wait for the server to listen
                try:
                    with urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=5) as resp:
                        body = resp.read()
                        etag = resp.headers["ETag"]
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the server did not start")
            full, full_status = asyncio.run(load(port, args.requests, args.connections))
            cond, cond_status = asyncio.run(
                load(port, args.requests, args.connections, f"If-None-Match: {etag}\r\n")
            )
        finally:
            proc.terminate()
            proc.wait(30)
    n = args.requests // args.connections * args.connections
    print(
        f"cached area feed ({len(body) / 1024:.0f} KB RSS, 100 entries), {args.connections} "
        f"keep-alive connections, {n} requests each run"
    )
    print(f"full responses:  {n / full:7.0f} req/s  {full_status}  (target ≥ 500 req/s)")
    print(f"304 (ETag):      {n / cond:7.0f} req/s  {cond_status}")


if __name__ == "__main__":
    main()
