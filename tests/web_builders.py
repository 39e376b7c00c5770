"""Support for the web tests (no tests here): seeding stored items, the web application
served by uvicorn in a thread on a free loopback port, HTTP clients, logging in.

Its fixtures (``web_app``, ``server``, ``client``, ``admin``) are in ``conftest.py``."""

from __future__ import annotations

import errno
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from sources.registry import get as adapter_class  # noqa: F401  (loads the registry)
from watcher import config_edit
from watcher.app import App
from watcher.config import SourceConfig
from watcher.pipeline.normalise import normalise
from watcher.types import Item, Kind, NewItem, PollResult, PollStatus, RawItem
from watcher.web.app import create_app

PASSWORD = "rätt-häst-batteri-häftklammer"

BASE_CONFIG: dict[str, Any] = {
    "sources": [
        {
            "id": "esf",
            "name": "ESF-rådet",
            "kind": "rss",
            "url": "https://esf.example/feed.xml",
            "schedule": "3h",
            "areas": ["fonder-program"],
        },
        {
            "id": "nyheter",
            "name": "Nyheter",
            "kind": "html",
            "url": "https://news.example/",
            "options": {"item": "li.news"},
        },
    ],
    "networks": [
        {
            "id": "gr-eu",
            "name": "GR:s EU-nätverk",
            "members": ["anna@example.se"],
            "schedule": "mon 08:00",
        }
    ],
}


def seed(
    app: App, source_id: str, raws: Sequence[RawItem], now: datetime | None = None
) -> list[int]:
    """Store items as a poll would (normalise, apply, classify); returns their ids."""
    now = now or app.now()
    src = app.config.source(source_id)
    items = [normalise(r, src, now, app.config.tz) for r in raws]
    outcome = app.storage.apply(
        source_id,
        [NewItem(it) for it in items],
        PollResult(source_id, PollStatus.OK, new=len(items), parsed=len(items)),
        now,
    )
    classifier = app.classifier
    assert classifier is not None
    results = {}
    for item in app.storage.get_items(list(outcome.new_ids)):
        results[item.id] = classifier(item, src)
    app.storage.set_tags_many(results, now, classifier.version)
    return list(outcome.new_ids)


def store(
    app: App, source_id: str, items: Sequence[Item], now: datetime | None = None
) -> list[int]:
    """Store ``Item`` values exactly as given (no normalising: what a hostile or broken
    adapter could hand over), untagged; returns their ids."""
    now = now or app.now()
    outcome = app.storage.apply(
        source_id,
        [NewItem(it) for it in items],
        PollResult(source_id, PollStatus.OK, new=len(items), parsed=len(items)),
        now,
    )
    return list(outcome.new_ids)


def item(key: str, title: str, source_id: str = "esf", **kw: Any) -> Item:
    """An ``Item`` with plain defaults."""
    values: dict[str, Any] = {
        "link": f"https://esf.example/{key}",
        "summary": "",
        "language": "sv",
        "kind": Kind.CALL,
        "status": None,
        "programme": None,
        "identifier": None,
        "published": None,
        "opening": None,
        "deadlines": (),
        "budget": None,
        "budget_amount": None,
        "currency": None,
        "regions": (),
        "topics": (),
        "content_hash": f"hash-{key}",
    }
    values.update(kw)
    return Item(source_id=source_id, key=key, title=title, **values)


def raw(key: str, title: str, **kw: Any) -> RawItem:
    kw.setdefault("link", f"https://esf.example/{key}")
    return RawItem(key=key, title=title, **kw)


class _Server(uvicorn.Server):
    """uvicorn that tells when it is listening (no polling with sleeps)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    def install_signal_handlers(self) -> None:  # not the main thread
        pass


class LiveServer:
    """The service's web application on 127.0.0.1:<free port>, in a thread."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.web = create_app(app)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        config = uvicorn.Config(self.web, log_level="warning", lifespan="on")
        self.server = _Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        if not self.server.ready.wait(20):
            raise RuntimeError("the web server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self._sock.close()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def version_of(html: str) -> str:
    m = re.search(r'name="version" value="([^"]*)"', html)
    assert m, "no version token on the page"
    return m.group(1)


def login(client: httpx.Client, password: str = PASSWORD, user: str = "admin") -> httpx.Response:
    page = client.get("/admin/login")
    return client.post(
        "/admin/login",
        data={"username": user, "password": password, "csrf_token": csrf_of(page.text)},
    )


def post_form(
    client: httpx.Client, page_url: str, action_url: str, data: Mapping[str, Any]
) -> httpx.Response:
    """Open a form page, then post ``data`` with its CSRF (and version) token."""
    page = client.get(page_url)
    assert page.status_code == 200, page.text[:500]
    fields: dict[str, Any] = {"csrf_token": csrf_of(page.text)}
    if 'name="version"' in page.text:
        fields["version"] = version_of(page.text)
    fields.update(data)
    return client.post(action_url, data=fields)


def config_text(app: App) -> str:
    assert app.config.path
    return Path(app.config.path).read_text(encoding="utf-8")


def full_disk_for(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Atomic writes of ``target`` fail at the rename as on a full disk (the temp file is
    written, then removed); every other rename works. (Making the folder read-only does not
    do here: the tests run as root, who writes anyway.)"""
    real = config_edit.os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).resolve() == target.resolve():
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(config_edit.os, "replace", replace)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def source_cfg(app: App, source_id: str) -> SourceConfig:
    return app.config.source(source_id)
