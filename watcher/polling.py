"""Polling: the one place the stages run in order for a source.

fetch (adapter, guarded HTTP) → parse, normalise, classify (pure, ``pipeline.work``) →
layout checks (pure, ``pipeline.layout``) → inside the write transaction: what is stored →
decide (pure, ``pipeline.track``) → merge (pure, ``pipeline.merge``) → write (storage).

It sits above storage and the pure pipeline, below the app (``watcher.app`` makes the
``Poller``).

A poll never raises: whatever goes wrong ends as a ``PollResult`` with a ``SourceError``,
recorded on the source's health, and the other sources of the same run go on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from sources import registry
from sources.base import FetchContext
from watcher.exceptions import ParseError, SourceFailure, StorageError
from watcher.http import RateLimited, host_of
from watcher.pipeline.arrivals import arrivals
from watcher.pipeline.layout import check_layout
from watcher.pipeline.track import candidate_keys, decide
from watcher.pipeline.work import (
    Classifier,
    Processed,
    process,
    process_packed,
    unpack,
    warm_up,
)
from watcher.storage.writer import BatchWriter
from watcher.types import (
    CacheState,
    Classification,
    Fetched,
    FetchStatus,
    Incomplete,
    IntentKind,
    PollResult,
    PollStatus,
    SourceError,
    SourceState,
    Status,
    StoredSlice,
)

if TYPE_CHECKING:
    from sources.base import Adapter
    from watcher.config import SourceConfig
    from watcher.http import FetchScope, HttpClient
    from watcher.storage import ApplyOutcome, Storage, Transaction

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_BACKOFF = timedelta(minutes=1)
# How long a poll's lock on its source holds if its process dies without releasing it.
POLL_LOCK_TTL = timedelta(minutes=15)
IN_PROGRESS = SourceError("poll_in_progress", "a poll of this source is already running")
POLLED_IN_SLOT = SourceError("polled_in_slot", "another process polled this source in this slot")


def poll_lock(source_id: str) -> str:
    """The name of the lock a poll of ``source_id`` holds."""
    return f"poll:{source_id}"


# The longest pause a server's Retry-After can impose on a source.
MAX_RETRY_AFTER = timedelta(hours=24)


def backoff_until(failures: int, interval_seconds: float, now: datetime) -> datetime:
    """When to try a failing source again: 1, 2, 4 … minutes, at most its own interval."""
    delay: timedelta = MIN_BACKOFF * (2 ** max(0, failures - 1))
    cap = timedelta(seconds=max(interval_seconds, MIN_BACKOFF.total_seconds()))
    return now + (delay if delay < cap else cap)


def next_attempt(
    failures: int, interval_seconds: float, now: datetime, asked: float | None = None
) -> datetime:
    """When to try a failing source again: its back-off (``backoff_until``), or, when the
    server asked for a longer pause (Retry-After, ``asked`` seconds from ``now``), then,
    but never more than 24 hours ahead."""
    backoff = backoff_until(failures, interval_seconds, now)
    if asked is None:
        return backoff
    wanted = now + timedelta(seconds=min(max(asked, 0.0), MAX_RETRY_AFTER.total_seconds()))
    return max(backoff, wanted)


@dataclass
class Poller:
    """Polls sources with one HTTP client and one storage; ``classifier`` tags items."""

    storage: Storage
    http: HttpClient
    tz: ZoneInfo
    classifier: Classifier | None = None
    flood_threshold: int = 50
    on_changed: Sequence[Callable[[str, Sequence[int]], None]] = ()
    executor: Executor | None = None  # worker processes for parsing and classifying
    writer: BatchWriter | None = None  # the loop's writer; a poller of its own if not given

    def __post_init__(self) -> None:
        self._writer = self.writer or BatchWriter(
            self.storage, global_concurrency=self.http.settings.global_concurrency
        )

    async def poll_many(
        self,
        sources: Sequence[SourceConfig],
        now: Callable[[], datetime],
        progress: Callable[[PollResult], None] | None = None,
        fresh_within: Mapping[str, timedelta] | None = None,
    ) -> list[PollResult]:
        """Poll sources at once, each at most once at a time across processes.
        ``fresh_within``: per source, how recent a poll (by any process) makes this one
        unneeded (shared polling: each source once per slot); checked under the lock."""
        # One poll of a source at a time, across processes: a source another poll (the
        # scheduler's, the admin's "Hämta nu", a CLI poll beside the service) is fetching is
        # skipped, not polled twice.
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        names = {poll_lock(s.id) for s in sources}
        try:
            mine = await asyncio.to_thread(
                self.storage.acquire_locks, names, holder, POLL_LOCK_TTL, now()
            )
        except StorageError:
            log.exception("could not take the sources' poll locks; polling without them")
            mine = names
        # Every source's state in one read (after the locks: a poll that just ended is in
        # it), not one read each before the first request.
        states: Mapping[str, SourceState] | None = None
        if len(sources) > 1 or fresh_within:
            try:
                states = await self._read(self.storage.source_states, with_counts=False)
            except StorageError:
                log.exception("reading the sources' states failed; each poll reads its own")

        if states is not None:
            self._warm_workers(sources, states)

        # A poll starts once its host has room: each host has as many lanes as requests it
        # takes at once ([fetch] per_host_concurrency), and a lane starts its host's next
        # poll when the last one no longer needs the host (its response is in and has its
        # place at the writer, or it ended). All lanes together run as many polls at once
        # as the client makes requests (global_concurrency). Of a cycle's thousands of
        # sources only those under way are polls; the rest are an index in their host's
        # queue.
        per_host = self.http.settings.per_host_concurrency
        room = asyncio.Semaphore(self.http.settings.global_concurrency)
        queues: dict[str, deque[int]] = {}
        for i, src in enumerate(sources):
            queues.setdefault(host_of(src.url), deque()).append(i)
        polls: list[asyncio.Task[PollResult] | None] = [None] * len(sources)
        loop = asyncio.get_running_loop()

        async def one(src: SourceConfig, hold: _Hold) -> PollResult:
            try:
                state = None
                if states is not None:  # never polled: no state stored yet
                    state = states.get(src.id) or SourceState(source_id=src.id)
                window = (fresh_within or {}).get(src.id)
                if poll_lock(src.id) not in mine:
                    result = PollResult(src.id, PollStatus.SKIPPED, error=IN_PROGRESS)
                elif (
                    window is not None
                    and state is not None
                    and state.last_poll_at is not None
                    and now() - state.last_poll_at < window
                ):
                    result = PollResult(src.id, PollStatus.SKIPPED, error=POLLED_IN_SLOT)
                else:
                    result = await self.poll(src, now, state, hold=hold)
            finally:
                hold.give_back()
            if progress:
                progress(result)
            return result

        async def lane(queue: deque[int]) -> None:
            while queue:
                async with room:
                    if not queue:  # the host's other lane took the last one meanwhile
                        return
                    i = queue.popleft()
                    given_back = loop.create_future()
                    polls[i] = loop.create_task(one(sources[i], _Hold(given_back)))
                    await given_back

        lanes = [
            loop.create_task(lane(q)) for q in queues.values() for _ in range(min(per_host, len(q)))
        ]
        try:
            await asyncio.gather(*lanes)
            return list(await asyncio.gather(*(t for t in polls if t is not None)))
        finally:
            for task in (*lanes, *(t for t in polls if t is not None)):
                task.cancel()  # only when cancelled, or a bug: every poll has ended otherwise
            try:
                await asyncio.to_thread(self.storage.release_locks, mine, holder)
            except StorageError:
                log.exception("could not release the sources' poll locks (they expire)")

    def _warm_workers(
        self, sources: Sequence[SourceConfig], states: Mapping[str, SourceState]
    ) -> None:
        """Start the worker processes now, while the first requests are out, when this
        cycle will parse: some source has never been polled, or keeps no validators, so its
        server cannot answer "not modified". A worker process takes a few tenths of a
        second to start and load the parsers and rules, which the first parse otherwise
        waits for; a cycle that will hear only "not modified" starts none. Workers already
        running take it as a no-op (`watcher run` starts its own when the service starts).

        The start runs in a thread, not on the event loop: the rules' version the workers
        are sent is read from the rule files (the built-in rules are parsed, 60 to 70 ms
        in a `watcher poll`), and the process is started, while the loop sends the cycle's
        first requests rather than before them."""
        executor, classifier = self.executor, self.classifier
        if executor is None or classifier is None:
            return
        if all(
            (state := states.get(s.id)) is not None and (state.etag or state.last_modified)
            for s in sources
        ):
            return

        def start() -> None:
            executor.submit(warm_up, classifier.spec()).add_done_callback(_warm_up_failed)

        starting = asyncio.get_running_loop().run_in_executor(None, start)
        starting.add_done_callback(_warm_up_failed)

    async def poll(
        self,
        source: SourceConfig,
        now: Callable[[], datetime],
        state: SourceState | None = None,
        *,
        hold: _Hold | None = None,
    ) -> PollResult:
        """Poll one source; ``state``: its state, when the caller has read it already;
        ``hold``: given back once the poll no longer needs its host (``poll_many``): its
        response is in and has its place at the writer (``BatchWriter.waiting``), or the
        poll ended."""
        hold = hold or _Hold(None)
        started = now()
        try:
            return await self._poll(source, now, started, state, hold)
        except Exception as e:  # one source's bug must never stop the others
            code = (
                e.code
                if isinstance(e, SourceFailure)
                else (e.code if isinstance(e, StorageError) else "internal_error")
            )
            if code == "internal_error":
                log.exception("polling %s failed", source.id)
            error = SourceError(code, _message(e))
            hold.give_back()
            return await self._failed(source, error, started, now())
        finally:
            hold.give_back()

    async def _failed(
        self,
        source: SourceConfig,
        error: SourceError,
        started: datetime,
        at: datetime,
        asked: float | None = None,
    ) -> PollResult:
        """Record a failed poll; ``asked``: the pause in seconds the server asked for."""
        result = PollResult(source.id, PollStatus.ERROR, error=error)
        try:
            state = await asyncio.to_thread(self.storage.source_state, source.id)
            retry = next_attempt(
                state.consecutive_failures + 1, source.parsed_schedule.approx_seconds, at, asked
            )
            await asyncio.to_thread(
                self.storage.record_failure, source.id, error, result, at, retry, started
            )
        except StorageError:
            log.exception("could not record the failure of %s", source.id)
        return result

    async def _poll(
        self,
        source: SourceConfig,
        now: Callable[[], datetime],
        started: datetime,
        state: SourceState | None,
        hold: _Hold,
    ) -> PollResult:
        adapter: Adapter = registry.get(source.kind)(source)
        if state is None:
            state = await self._read(self.storage.source_state, source.id, with_count=False)
        statuses: Mapping[str, str | None] = {}
        previous: Mapping[str, StoredSlice] = {}  # what the adapter compares pages with
        if adapter.needs_known:
            statuses = await self._read(self.storage.known_statuses, source.id)
        if adapter.needs_previous:
            previous = await self._read(self.storage.known_slices, source.id)
        ctx = FetchContext(
            cache=CacheState(state.etag, state.last_modified),
            known={k: (Status(v) if v else None) for k, v in statuses.items()},
            previous={k: s.values for k, s in previous.items()},
        )
        try:
            with self.http.scope() as scope:
                fetched = await adapter.fetch(self.http, ctx)
        except SourceFailure as e:
            hold.give_back()
            error = SourceError(e.code, str(e))
            return await self._failed(source, error, started, now(), _asked_pause(e))
        if fetched.status == FetchStatus.NOT_MODIFIED:
            hold.give_back()
            result = PollResult(source.id, PollStatus.NOT_MODIFIED)
            cache = (fetched.cache.etag, fetched.cache.last_modified)
            at = now()
            await self._writer.run(
                lambda txn: txn.record_not_modified(source.id, result, at, cache, started)
            )
            return result
        async with self._writer.waiting:  # see BatchWriter.waiting
            hold.give_back()
            # The response is ``_settle``'s alone, which lets it go once it is parsed.
            settling = self._settle(source, fetched, now, started, state, adapter, scope)
            del fetched
            return await settling

    async def _settle(
        self,
        source: SourceConfig,
        fetched: Fetched,
        now: Callable[[], datetime],
        started: datetime,
        state: SourceState,
        adapter: Adapter,
        scope: FetchScope,
    ) -> PollResult:
        """Parse, classify, decide and write what a poll fetched."""
        cache = (fetched.cache.etag, fetched.cache.last_modified)
        at = now()
        try:
            packed = await self._process(source, fetched, at)
        except ParseError as e:
            return await self._failed(source, SourceError(e.code, str(e)), started, now())
        # What the fetch itself says; what the items say is read with them, in ``settle``.
        fetch_warnings = [*scope.warnings()]  # the client's repairs (UTF-8)
        robots = self.http.robots_warning(source.url)
        if robots:
            fetch_warnings.append(robots)
        # What the adapter reports about the fetch (results it could not read, say).
        fetch_warnings.extend(str(w) for w in fetched.context.get("warnings", ()))
        skipped = int(fetched.context.get("skipped", 0))
        del fetched  # parsed: only its items wait for the writer, not the response's body
        baseline = not state.baseline_done
        rules_version = self.classifier.version if self.classifier else None

        def settle(txn: Transaction) -> tuple[PollResult, ApplyOutcome]:
            """Decide and write, in the write transaction: duplicates are looked for among
            everything stored before, this poll cycle's other sources included. The items
            are unpacked here, at the poll's turn (see ``work.process_packed``)."""
            processed = unpack(packed)
            items = processed.items
            layout = check_layout(
                state, items, adapter.kind, filtered=adapter.filters_items(), skipped=skipped
            )
            warnings = [*layout.warnings, *fetch_warnings]
            if processed.bad:
                warnings.append(f"{processed.bad} item(s) could not be read and were skipped")
            incomplete = [it.incomplete for it in items if it.incomplete is not None]
            partial = incomplete_error(incomplete)
            if incomplete:
                warnings.append(incomplete_note(incomplete))
            # What this source has stored, as of this transaction (another poll of the same
            # source may have written just before, in the same batch).
            known = txn.known_slices(source.id)
            fresh = [it for it in items if it.key not in known]
            candidates = []
            if fresh:
                identifiers, title_keys = candidate_keys(fresh)
                candidates = txn.duplicate_candidates(source.id, identifiers, title_keys)
            # Each intent carries its entry's tags (the first entry of a repeated key).
            by_key: dict[str, Classification] = {}
            if processed.classifications is not None:
                for it, cls in zip(items, processed.classifications, strict=True):
                    by_key.setdefault(it.key, cls)
            intents = decide(items, known, candidates, by_key)
            arrived = arrivals(
                intents, at, first_poll=baseline, flood_threshold=self.flood_threshold
            )
            intents = arrived.intents
            counts = {k: sum(1 for i in intents if i.kind == k) for k in IntentKind}
            notes = [*warnings, *arrived.notes]
            result = PollResult(
                source.id,
                PollStatus.PARTIAL if partial else PollStatus.OK,
                new=counts[IntentKind.NEW],
                updated=counts[IntentKind.UPDATED],
                unchanged=counts[IntentKind.UNCHANGED],
                parsed=len(items),
                error=partial,
                warnings=tuple(notes),
                announced=arrived.announced,
                baselined=arrived.baselined,
                incomplete=len(incomplete),
            )
            # New and changed items are written with their tags, in one transaction: an
            # item is never stored untagged.
            outcome = txn.apply(
                source.id,
                intents,
                result,
                at,
                cache=cache,
                warning="; ".join(notes) or None,
                field_profile=layout.profile,
                started_at=started,
                rules_version=rules_version,
            )
            if outcome.merged_records and self.classifier is not None:
                # A record several sources made is tagged from what is stored, as a re-tag
                # would, not from this source's entry alone.
                stored = txn.get_items(outcome.merged_records)
                txn.set_tags_many(
                    {s.id: self.classifier(s, source) for s in stored}, at, rules_version
                )
            return result, outcome

        result, outcome = await self._writer.run(settle)
        changed = [*outcome.new_ids, *outcome.updated_ids, *outcome.merged_ids]
        if changed:
            for hook in self.on_changed:
                hook(source.id, changed)
        return result

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A storage read: right here, or in a thread while the loop goes on
        (``Storage.reads_here``)."""
        if self.storage.reads_here:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _process(
        self, source: SourceConfig, fetched: Fetched, at: datetime
    ) -> Processed | bytes:
        """Parse, normalise and classify: CPU work, off the event loop so other sources'
        requests keep flowing; in a worker process when the service has some (its outcome
        then comes packed: ``work.unpack``)."""
        tz_name = str(self.tz.key)
        if self.executor is not None and self.classifier is not None:
            spec = self.classifier.spec()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self.executor, process_packed, source, fetched, tz_name, at, spec
            )
        return await asyncio.to_thread(process, source, fetched, tz_name, at, self.classifier)


def _warm_up_failed(started: asyncio.Future[Any] | Future[Any]) -> None:
    """A worker that fails to start (or rules that cannot be read for it) is logged here;
    the first parse sends it its error."""
    if not started.cancelled() and started.exception() is not None:
        log.warning("starting the worker processes failed: %s", started.exception())


class _Hold:
    """A poll's hold on its host's room (``Poller.poll_many``): ``given_back`` is done once
    the poll gives it back (at most once)."""

    __slots__ = ("given_back",)

    def __init__(self, given_back: asyncio.Future[None] | None) -> None:
        self.given_back = given_back

    def give_back(self) -> None:
        if self.given_back is not None and not self.given_back.done():
            self.given_back.set_result(None)


def incomplete_error(incomplete: Sequence[Incomplete]) -> SourceError | None:
    """A poll some of whose parts failed is partial: its error is the first failure's code,
    with how many failed."""
    failed = [i for i in incomplete if i.error]
    if not failed:
        return None
    codes = sorted({i.error for i in failed if i.error})
    return SourceError(
        failed[0].error or "partial",
        f"{len(failed)} item(s) incomplete ({', '.join(codes)}): {failed[0].reason}",
    )


def incomplete_note(incomplete: Sequence[Incomplete]) -> str:
    """What source health says of incomplete items."""
    missing = sorted({f for i in incomplete for f in i.missing})
    lacks = f" without {', '.join(missing)}" if missing else ""
    return (
        f"{len(incomplete)} item(s) stored{lacks}: {incomplete[0].reason}; "
        "read again on the next poll"
    )


def _asked_pause(e: BaseException) -> float | None:
    """The pause (Retry-After seconds) a server asked for behind a failure, if any; an
    adapter may have wrapped the client's ``RateLimited`` in an error of its own."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, RateLimited):
            return cur.retry_after
        seen.add(id(cur))
        cur = cur.__cause__
    return None


def _message(e: BaseException) -> str:
    text = str(e) or e.__class__.__name__
    return text if len(text) <= 500 else text[:497] + "…"
