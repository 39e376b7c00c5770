"""Issue 14: what a ``watcher`` command loads before its work starts.

A CLI poll of nothing took 0.75 s before its first request: Alembic and every migration
script to check the schema, PostgreSQL's dialect on SQLite, the scheduler's modules, every
subcommand's module. These tests keep them out of a ``watcher poll`` process, and keep the
fast schema check honest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_config
from watcher.storage import Storage, base

# Loaded by nothing a `watcher poll` on SQLite needs.
NOT_FOR_A_POLL = (
    "alembic",
    "sqlalchemy.dialects.postgresql",
    "apscheduler",
    "watcher.cli.rules_cmd",
    "watcher.cli.admin_cmd",
    "watcher.cli.demo_cmd",
    "watcher.cli.digest_cmd",
    "uvicorn",
    "starlette",
    "notifications.ports",
    "notifications.transports",
    "notifications.labels",
    "notifications.email",
    "babel",
    "smtplib",
    "lxml",  # HTML and feeds are parsed by the workers (6 MiB of the main process's peak)
)


def test_the_head_revision_constant_is_alembics_head() -> None:
    """``ensure_schema`` compares with ``HEAD_REVISION`` instead of asking Alembic: a new
    migration must update it (this fails until it does)."""
    assert base.head_revision() == base.HEAD_REVISION


def test_the_revision_is_read_as_alembic_reads_it(tmp_path: Path) -> None:
    from alembic.runtime.migration import MigrationContext

    storage = Storage(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        assert storage.revision() is None  # a new database has no version table
        storage.ensure_schema()
        assert storage.revision() == base.HEAD_REVISION
        with storage.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == storage.revision()
    finally:
        storage.close()


def _modules_after(args: list[str], cwd: Path) -> set[str]:
    """The modules a ``watcher`` process has loaded when its command is done."""
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print('\\nMODULES ' + json.dumps(sorted(sys.modules)),"
        " file=sys.stderr))\n"
        "from watcher.cli import main\n"
        f"main({args!r})\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def test_a_poll_of_an_up_to_date_database_loads_only_what_it_needs(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "config.toml", {"watcher": {"database_url": f"sqlite:///{tmp_path / 'w.db'}"}}
    )
    first = _modules_after(["--config", str(cfg), "poll"], tmp_path)
    assert "alembic" not in first  # a new database is made in one step (storage.fresh)
    loaded = _modules_after(["--config", str(cfg), "poll"], tmp_path)
    unwanted = sorted(
        m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_FOR_A_POLL)
    )
    assert unwanted == []
