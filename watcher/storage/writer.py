"""One writer for the polls of an event loop: their database writes, batched.

Polls hand their writes (``Storage.run_batch`` jobs) to the writer and await the outcome.
One thread runs them in order; what queues up while a transaction runs goes into the next
one together. Two things follow:

- A poll decides what is new, what changed and which stored call an item duplicates inside
  its write transaction, after every write queued before it. Two sources naming the same
  new call in one poll cycle are merged, whichever of them answers first.
- A busy poll cycle pays for one commit per batch instead of one per source, and its
  writes never wait in SQLite's busy handler for each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from watcher.storage import Storage
    from watcher.storage.store import Transaction

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_BATCH = 50  # writes per transaction at most: a batch holds the write lock this long
MAX_WAITING = 100  # polls between their response and their write, at least (``waiting``)


def waiting_bound(global_concurrency: int) -> int:
    """How many polls may hold a response waiting to be parsed and written at once: every
    response that can be in flight at once (``global_concurrency``) may land together and
    take a place, and no fewer than ``MAX_WAITING``. More would only let more parsed
    items wait in memory (``docs/design.md``, polling)."""
    return max(MAX_WAITING, global_concurrency)


class BatchWriter:
    """Runs write jobs for the polls of one event loop, in order, batched."""

    def __init__(
        self, storage: Storage, max_batch: int = MAX_BATCH, global_concurrency: int = 0
    ) -> None:
        self.storage = storage
        self.max_batch = max_batch
        # Polls between their response and their write, at most, whoever started them (a
        # cycle's many sources, the scheduler's one-source polls, "Hämta nu"): when writing
        # is the slower part, parsed items would otherwise pile up in memory, every
        # source's at once. A poll takes its place once its response is in, so a poll
        # waiting for a busy host never holds one. ``global_concurrency``: the requests in
        # flight at once ([fetch]), whose responses may all land together.
        self.waiting = asyncio.Semaphore(waiting_bound(global_concurrency))
        self._pending: list[tuple[Callable[[Transaction], Any], asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # transactions run (for tests and benchmarks)

    async def run(self, job: Callable[[Transaction], T]) -> T:
        """Run ``job`` in a write transaction (shared with other queued jobs); its result,
        or its error raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((job, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            await self._drain_pending()
        finally:
            # No reference to the loop is kept once idle (the app keys writers by loop).
            self._task = None

    async def _drain_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: len(batch)]
            # A job whose poll was cancelled before its turn is not run.
            batch = [(job, f) for job, f in batch if not f.done()]
            if not batch:
                continue
            try:
                outcomes = await asyncio.to_thread(
                    self.storage.run_batch, [job for job, _ in batch]
                )
            except BaseException as e:
                # Cancelled (shutdown) or a bug in the writer itself: nobody is left waiting.
                for _, future in batch + self._pending:
                    if future.done():
                        continue
                    if isinstance(e, Exception):
                        future.set_exception(e)
                    else:
                        future.cancel()
                self._pending.clear()
                raise
            self.batches += 1
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its poll was cancelled while the write ran
                    if isinstance(outcome, Exception):
                        log.error("a write whose poll was cancelled failed: %s", outcome)
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
