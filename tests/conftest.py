"""Shared fixtures: a fixed clock, storage on SQLite (always) and PostgreSQL (when
WATCHER_TEST_DATABASE_URL is set), an App built from a config written to a temp folder,
and the loopback HTTP server."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomlkit

from tests.loopback import LoopbackServer, loopback  # noqa: F401
from tests.web_builders import BASE_CONFIG, PASSWORD, LiveServer, login
from watcher.app import App
from watcher.config import validate_data
from watcher.storage import Storage

REPO = Path(__file__).resolve().parents[1]
# What the tests need from ../shared/ is copied here: no test reads outside the repository.
DATA = REPO / "tests" / "data"
PG_ENV = "WATCHER_TEST_DATABASE_URL"


@pytest.fixture(autouse=True)
def _collector_as_python_leaves_it() -> Iterator[None]:
    """`watcher poll` and `watcher run` tune the process's garbage collector
    (``settle_heap``); a CLI test runs them inside pytest, so each test starts and ends with
    Python's settings."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@dataclass
class Clock:
    """A clock tests move by hand; nothing ever sleeps."""

    current: datetime = T0

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> datetime:
        self.current += timedelta(**kwargs)
        return self.current


@pytest.fixture
def clock() -> Clock:
    return Clock()


def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL database of its own (a schema, dropped afterwards) as a URL that
    several storages or processes can share; skipped with a reason without a server."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL not tested: {PG_ENV} is not set (.ci/run sets it)")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as e:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_ENV}: {str(e).splitlines()[0]}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _storage_on(kind: str, tmp_path: Path, prepare: Callable[[Storage], None]) -> Iterator[Storage]:
    """A storage on a new database of ``kind`` ("sqlite" or "postgresql"), its schema made
    by ``prepare``, closed (and the PostgreSQL schema dropped) afterwards."""
    urls = iter([f"sqlite:///{tmp_path / 'watcher.db'}"]) if kind == "sqlite" else pg_schema_url()
    for url in urls:
        storage = Storage(url)
        try:
            prepare(storage)
            yield storage
        finally:
            storage.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Storage on each database: the same test runs on SQLite and on PostgreSQL."""
    yield from _storage_on(request.param, tmp_path, Storage.upgrade)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def migrated_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Storage on each database whose schema the migrations made, one after the other
    (``any_storage``'s new database is made in one step, ``storage.fresh``)."""
    from watcher.storage import base

    yield from _storage_on(request.param, tmp_path, lambda s: base.migrate(s.engine))


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    """SQLite storage in a temp folder (most tests)."""
    s = Storage(f"sqlite:///{tmp_path / 'watcher.db'}")
    s.upgrade()
    yield s
    s.close()


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(tomlkit.dumps(dict(data)), encoding="utf-8")
    return path


@pytest.fixture
def make_app(tmp_path: Path, clock: Clock) -> Iterator[Any]:
    """Build an App from a config dict (written to tmp_path/config.toml)."""
    apps: list[App] = []

    def build(data: Mapping[str, Any], storage: Storage | None = None, **kwargs: Any) -> App:
        base = {
            "watcher": {"database_url": f"sqlite:///{tmp_path / 'watcher.db'}"},
            "email": {"outbox": str(tmp_path / "outbox")},
        }
        merged = {**base, **data}
        for key in ("watcher", "email"):
            if key in data:
                merged[key] = {**base[key], **data[key]}
        path = write_config(tmp_path / "config.toml", merged)
        cfg = validate_data(merged, str(path))
        app = App(cfg, storage=storage, clock=clock, **kwargs)
        app.storage.ensure_schema()
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


def fetch_settings(server: LoopbackServer, **overrides: Any) -> dict[str, Any]:
    """A [fetch] table admitting the loopback server, fast for tests."""
    return {
        "allow_private_networks": [server.allow_entry],
        "respect_robots_txt": False,
        "retries": 0,
        "timeout": 5,
        **overrides,
    }


# -- the web application, served on loopback ------------------------------------------------


@pytest.fixture
def web_app(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> App:
    """An App with two sources and a network; admin password from the environment."""
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("WATCHER_SECRET_KEY", raising=False)
    return make_app(BASE_CONFIG)  # type: ignore[no-any-return]


@pytest.fixture
def server(web_app: App) -> Iterator[LiveServer]:
    with LiveServer(web_app) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=20) as c:
        yield c


@pytest.fixture
def admin(client: httpx.Client) -> httpx.Client:
    """A client logged in as the admin."""
    r = login(client)
    assert r.status_code == 303, r.text[:500]
    return client
