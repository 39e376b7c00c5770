"""`watcher run` as a real process: serves /healthz, polls on schedule, stops cleanly on
SIGTERM even with a poll in flight, and only one of two processes runs the scheduler."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fetch_settings, pg_schema_url, write_config
from tests.loopback import LoopbackServer, Reply
from tests.process_builders import WAIT, WatcherProcess, free_port
from watcher.storage import Storage

FEED = """<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>x</title>
<item><guid>1</guid><title>Utlysning ett</title><link>https://x.example/1</link></item>
<item><guid>2</guid><title>Utlysning två</title><link>https://x.example/2</link></item>
</channel></rss>"""


class Service(WatcherProcess):
    """A `watcher run` subprocess serving on ``port``."""

    def __init__(self, config: Path, port: int) -> None:
        super().__init__(["--config", str(config), "run", "--port", str(port)])
        self.port = port

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=WAIT) as r:
            return json.loads(r.read())


@pytest.fixture
def service_config(tmp_path: Path, loopback: LoopbackServer) -> Iterator[Path]:
    cfg = write_config(
        tmp_path / "config.toml",
        {
            "watcher": {"database_url": f"sqlite:///{tmp_path / 'w.db'}", "start_jitter": 0},
            "fetch": fetch_settings(loopback),
            "email": {"outbox": str(tmp_path / "outbox")},
            "sources": [
                {
                    "id": "feed",
                    "name": "Feed",
                    "kind": "rss",
                    "url": loopback.url("/f.xml"),
                    "schedule": "1h",
                }
            ],
        },
    )
    yield cfg


def test_run_serves_healthz_polls_and_stops_cleanly_mid_poll(
    service_config: Path, loopback: LoopbackServer, tmp_path: Path
):
    arrived, release = threading.Event(), threading.Event()

    def slow_feed(_req: Any) -> Reply:
        arrived.set()
        release.wait(WAIT)  # hold the response until the test has sent SIGTERM
        return Reply(200, {"Content-Type": "application/rss+xml"}, FEED.encode())

    loopback.add_handler("/f.xml", slow_feed)
    svc = Service(service_config, free_port())
    try:
        svc.wait_for("Uvicorn running")
        health = svc.get("/healthz")
        assert health["status"] == "ok" and health["database"] == "ok"
        assert arrived.wait(WAIT), "the scheduler never polled the source"
        assert svc.get("/healthz")["scheduler"] == "leader"
        svc.proc.send_signal(signal.SIGTERM)
        # Issue 12.12: the scheduler's stop cancelled the poll in flight. The response is
        # held until the service is well into its shutdown, then the poll must finish.
        svc.wait_for("Waiting for application shutdown")
        release.set()
        assert svc.stop() == 0
    finally:
        release.set()
        if svc.proc.poll() is None:
            svc.proc.kill()
    storage = Storage(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        assert storage.count_items() == 2  # the whole poll was stored, nothing half-written
        [entry] = storage.poll_history("feed")
        assert entry["status"] == "ok" and entry["new"] == 2
        assert storage.lock_holder("scheduler", storage_now()) is None  # released on exit
    finally:
        storage.close()


def storage_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_two_processes_share_one_scheduler(service_config: Path, loopback: LoopbackServer):
    loopback.add("/f.xml", FEED, content_type="application/rss+xml")
    first = Service(service_config, free_port())
    second = None
    try:
        first.wait_for("this process runs the scheduler")
        second = Service(service_config, free_port())
        second.wait_for("stands by")
        assert first.get("/healthz")["scheduler"] == "leader"
        assert second.get("/healthz")["scheduler"] == "standby"
        assert first.stop() == 0
        assert second.stop() == 0
    finally:
        for svc in (first, second):
            if svc is not None and svc.proc.poll() is None:
                svc.proc.kill()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of its own (a schema) that several processes can share."""
    yield from pg_schema_url()


@pytest.mark.postgres
def test_three_processes_share_the_polling_once_per_source(
    tmp_path: Path, loopback: LoopbackServer, pg_url: str
) -> None:
    """Issue 14.4: with ``shared_polling`` every `watcher run` on one PostgreSQL polls, and
    each source is polled once per slot, by whichever process comes first."""
    n = 12
    for i in range(n):
        loopback.add(
            f"/s{i}.xml", FEED.replace(">1<", f">s{i}-1<"), content_type="application/rss+xml"
        )
    Storage(pg_url).upgrade()
    config = write_config(
        tmp_path / "config.toml",
        {
            "watcher": {
                "database_url": pg_url,
                "start_jitter": 2,
                "shared_polling": True,
            },
            "fetch": fetch_settings(loopback),
            "email": {"outbox": str(tmp_path / "outbox")},
            "sources": [
                {
                    "id": f"s{i}",
                    "name": f"S{i}",
                    "kind": "rss",
                    "url": loopback.url(f"/s{i}.xml"),
                    "schedule": "6h",
                }
                for i in range(n)
            ],
        },
    )
    services = [Service(config, free_port()) for _ in range(3)]
    try:
        decided: list[dict[str, str]] = []
        for svc in services:
            seen: dict[str, str] = {}
            while len(seen) < n:  # every process decides about every source once
                line = svc.wait_for(" s")
                for i in range(n):
                    if f"polled s{i}:" in line:
                        seen[f"s{i}"] = "polled"
                    elif f"source s{i}:" in line and "skipped" in line:
                        seen[f"s{i}"] = "skipped"
            decided.append(seen)
        for i in range(n):
            assert loopback.hits(f"/s{i}.xml") == 1, (
                f"s{i} was fetched {loopback.hits(f'/s{i}.xml')} times"
            )
            assert sum(1 for d in decided if d[f"s{i}"] == "polled") == 1
        polled_by = [sum(1 for v in d.values() if v == "polled") for d in decided]
        assert sum(polled_by) == n
        assert sum(1 for p in polled_by if p) >= 2  # the work is shared, not one process's
        storage = Storage(pg_url)
        try:
            assert storage.count_items() == 2 * n
            assert all(len(storage.poll_history(f"s{i}")) == 1 for i in range(n))
        finally:
            storage.close()
        for svc in services:  # stopped together: each waits for its own jobs
            svc.proc.send_signal(signal.SIGTERM)
        codes = [svc.proc.wait(timeout=WAIT) for svc in services]  # one SIGTERM each
        for svc in services:
            while not svc.lines.empty():
                svc.log.append(svc.lines.get())
        assert codes == [0, 0, 0], "\n\n".join("".join(svc.log[-12:]) for svc in services)
    finally:
        for svc in services:
            if svc.proc.poll() is None:
                svc.proc.kill()
