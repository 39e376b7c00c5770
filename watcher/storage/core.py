"""The ground every room of ``Storage`` stands on: the engine, one write transaction at a
time per process (``begin``), the schema, and the in-memory duplicate index."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from watcher.storage import base
from watcher.storage.candidates import CandidateCache


class StorageCore:
    """The engine, write transactions, the schema and the duplicate index: what every
    room of ``Storage`` stands on."""

    def __init__(
        self,
        url: str,
        base_dir: Path | None = None,
        *,
        candidate_refresh: float = 5.0,
        busy_timeout: float = base.BUSY_TIMEOUT,
    ) -> None:
        """``candidate_refresh``: how often (seconds) the duplicate index reads what other
        processes stored; this process's own writes are in it at once. ``busy_timeout``:
        how long a SQLite write waits for another process's lock before ``db_busy``."""
        self.url = url
        self.engine: Engine = base.make_engine(url, base_dir, busy_timeout)
        # PostgreSQL hands out ids before commit: the index looks back two minutes (far
        # longer than any write transaction here) for rows that committed late.
        late_window = 0.0 if self.engine.dialect.name == "sqlite" else 120.0
        self.candidates = CandidateCache(candidate_refresh, late_window)
        # One write transaction at a time in this process. SQLite has one writer anyway,
        # and threads queue here rather than in its busy handler, which sleeps in steps of
        # up to 100 ms. On any database, the duplicate index holds a transaction's items
        # before it commits (the next write of a batch must see them): no other write of
        # this process may see them meanwhile.
        self._write_lock = threading.RLock()
        self._noted = threading.local()  # .flag: this thread's transaction fed the index
        self._reads_here: bool | None = None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction (committed on leaving, rolled back on an error)."""
        with self._write_lock:
            outer = getattr(self._noted, "flag", None) is None
            if outer:
                self._noted.flag = False
            try:
                with self.engine.begin() as conn:
                    if outer and conn.dialect.name == "sqlite":
                        # The write lock from the start: the driver would begin only at
                        # the first write, and what a write transaction reads before it
                        # (what a poll already stores, the duplicates of its items) must
                        # not change under it in another process meanwhile.
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                    yield conn
            except BaseException:
                if self._noted.flag:
                    # Rolled back after feeding the duplicate index: it is read again.
                    self.candidates.invalidate()
                raise
            finally:
                if outer:
                    self._noted.flag = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def reads_here(self) -> bool:
        """Whether an event loop should run short reads in its own thread rather than hand
        them to another: on SQLite in WAL mode, yes. Its reads are CPU work in this process
        that never wait for a writer, and a thread would only add hand-offs of the GIL (the
        item page at 100,000 items, four clients at once: p95 19–29 ms from the thread
        pool, 8–13 ms here). A SQLite file that could not be put in WAL mode (a file system
        without shared memory, say) makes a reader wait for a writer, up to the busy
        timeout, which must not stop a loop; PostgreSQL's reads wait for the network. Those
        go to a thread, and the loop goes on meanwhile. So do long reads anywhere (a search,
        a filter that scans: ``ItemFilter.reads_few_rows``), most of which is the database's
        own work, which lets go of the GIL. Writes always go to a thread: they may wait for
        another process's lock. Asked of the database once, by ``ensure_schema`` as a
        process starts (or else on first use)."""
        if self._reads_here is None:
            self._reads_here = self._in_wal_mode()
        return self._reads_here

    @base.translate_errors
    def _in_wal_mode(self) -> bool:
        if self.dialect != "sqlite":
            return False
        with self.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        return str(mode).lower() == "wal"

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------------

    def upgrade(self) -> None:
        base.upgrade(self.engine)

    @base.translate_errors
    def revision(self) -> str | None:
        return base.current_revision(self.engine)

    def ensure_schema(self) -> None:
        """Migrate when behind (the embedded default upgrades itself on start). Up to date
        is told by plain SQL against ``base.HEAD_REVISION``; Alembic is loaded only to
        upgrade (or to refuse a revision it does not know)."""
        if self.revision() != base.HEAD_REVISION:
            self.upgrade()
        self._reads_here = self._in_wal_mode()  # before an event loop asks (``reads_here``)

    @base.translate_errors
    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(select(1))
        return True
