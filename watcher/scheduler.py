"""The scheduler: one APScheduler job per source (and per network's digest).

- no overlapping runs of one source (``max_instances=1``), missed runs coalesced;
- start-up jitter, so a restart does not hit every site at once;
- a failing source backs off (1, 2, 4 … minutes, at most its own interval) and keeps
  being retried: it never stops silently, its health shows every failure;
- a source whose server asked for a pause (``rate_limited``: 429/503 with Retry-After) is
  polled again when the server said (at most a day later, ``polling.next_attempt``), and
  its regular runs before then are skipped, after a restart too;
- with several processes on one database only the holder of the ``scheduler`` lock runs
  jobs; the others keep trying to take it over when it expires;
- ``stop`` lets the jobs in flight (polls, digests) finish, for up to ``[watcher]
  shutdown_grace`` seconds (20), before it stops APScheduler, whose shutdown cancels what
  still runs: a SIGTERM stores the poll it interrupts instead of abandoning it (and a poll
  cut off at the grace is written in one transaction or not at all).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from notifications.alerts import send_alerts
from watcher.config import Config, SourceConfig
from watcher.types import PollStatus

if TYPE_CHECKING:
    from watcher.app import App

log = logging.getLogger(__name__)

LOCK_NAME = "scheduler"
LOCK_TTL = timedelta(seconds=90)
LOCK_RENEW_SECONDS = 30


def source_trigger(src: SourceConfig, tz: Any) -> IntervalTrigger | CronTrigger:
    sched = src.parsed_schedule
    if sched.interval is not None:
        # jitter spreads sources that share an interval
        return IntervalTrigger(seconds=int(sched.interval.total_seconds()), jitter=30, timezone=tz)
    assert sched.cron is not None
    return CronTrigger.from_crontab(sched.cron, timezone=tz)


class Scheduler:
    """Runs the service's jobs while this process holds the scheduler lock."""

    def __init__(self, app: App, *, start_jitter: float | None = None) -> None:
        self.app = app
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.start_jitter = (
            app.config.watcher.start_jitter if start_jitter is None else start_jitter
        )
        self.aps = AsyncIOScheduler(timezone=app.config.tz)
        self.leader = False
        self._announced_standby = False
        self._inflight: set[asyncio.Task[Any]] = set()
        # Other features add their own jobs here (digests): called with (scheduler, config).
        self.job_providers: list[Callable[[Scheduler, Config], None]] = []
        app.hooks.config_changed.append(lambda _old, _new: self.sync_jobs())

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def polls(self) -> bool:
        """Whether this process polls sources: the leader always; every process when
        ``[watcher] shared_polling`` is on (then each source is polled once per slot, by
        the process whose run comes first; see ``_already_polled``)."""
        return self.leader or self.app.config.watcher.shared_polling

    def start(self, *, paused: bool = False) -> None:
        """Start scheduling (``paused``: jobs are kept but not run, for tests)."""
        self.aps.add_listener(self._on_overrun, EVENT_JOB_MAX_INSTANCES)
        self.aps.start(paused=paused)
        if self.app.config.watcher.shared_polling:
            self.sync_jobs(initial=True)
        self.aps.add_job(
            self._leadership,
            IntervalTrigger(seconds=LOCK_RENEW_SECONDS),
            id="leadership",
            next_run_time=self.app.now(),
            max_instances=1,
            coalesce=True,
        )
        self.aps.add_job(
            self._refresh_statuses,
            IntervalTrigger(minutes=10),
            id="statuses",
            max_instances=1,
            coalesce=True,
        )
        self.aps.add_job(
            self._send_alerts,
            IntervalTrigger(minutes=1),
            kwargs={"periodic": True},
            id="alerts",
            max_instances=1,
            coalesce=True,
        )
        self.aps.add_job(
            self._watch_files,
            IntervalTrigger(seconds=10),
            id="watch-files",
            max_instances=1,
            coalesce=True,
        )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop scheduling; let the jobs in flight finish (up to ``timeout`` seconds, by
        default ``[watcher] shutdown_grace``); free the lock.

        APScheduler's shutdown cancels the tasks of running jobs, so it comes last: first
        no new run starts (pause), then the runs in flight are waited for, and only what
        outlasts the grace is cancelled."""
        grace = self.app.config.watcher.shutdown_grace if timeout is None else timeout
        if self.aps.running:
            self.aps.pause()
        if self._inflight:
            log.info(
                "stopping: waiting up to %g s for %d job(s) in flight", grace, len(self._inflight)
            )
            _done, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "stopping: %d job(s) still running after %g s were cancelled",
                    len(pending),
                    grace,
                )
                await asyncio.wait(pending, timeout=1.0)  # let them unwind
        if self.aps.running:
            self.aps.shutdown(wait=False)
        if self.leader:
            try:
                await asyncio.to_thread(self.app.storage.release_lock, LOCK_NAME, self.holder)
            except Exception:
                log.exception("could not release the scheduler lock")
            self.leader = False

    async def _leadership(self) -> None:
        try:
            got = await asyncio.to_thread(
                self.app.storage.acquire_lock, LOCK_NAME, self.holder, LOCK_TTL, self.app.now()
            )
        except Exception:
            log.exception("scheduler lock check failed")
            got = False
        if got and not self.leader:
            log.info("this process runs the scheduler (%s)", self.holder)
            self.leader = True
            self.sync_jobs(initial=True)
        elif not got and self.leader:
            log.warning("lost the scheduler lock; another process runs the jobs now")
            self.leader = False
            self._remove_work_jobs(keep_sources=self.polls)
        elif not got and not self._announced_standby:
            log.info("another process runs the scheduler; this one serves the web and stands by")
            self._announced_standby = True

    async def _refresh_statuses(self) -> None:
        if self.leader:
            try:
                await asyncio.to_thread(self.app.refresh_statuses)
            except Exception:
                log.exception("refreshing statuses failed")

    async def _watch_files(self) -> None:
        """Pick up edits of config.toml and the rule files made outside the admin."""
        self.app.reload_config_if_changed()
        if self.leader:
            await asyncio.to_thread(self.app.reload_rules_if_changed)

    # -- jobs ------------------------------------------------------------------------------

    def _remove_work_jobs(self, *, keep_sources: bool = False) -> None:
        for job in self.aps.get_jobs():
            if job.id in ("leadership", "watch-files", "statuses", "alerts"):
                continue
            if keep_sources and job.id.startswith(("source:", "retry:")):
                continue
            job.remove()

    def sync_jobs(self, initial: bool = False) -> None:
        """Make the jobs match the config: add, replace or remove source jobs (when this
        process polls), and the leader's other jobs (digests)."""
        if not self.polls:
            return
        cfg = self.app.config
        wanted = {f"source:{s.id}": s for s in cfg.sources if s.enabled}
        enabled = {s.id for s in wanted.values()}
        for job in self.aps.get_jobs():
            if (
                job.id.startswith(("source:", "retry:"))
                and job.id.removeprefix("retry:").removeprefix("source:") not in enabled
            ):
                job.remove()
        now = self.app.now()
        for job_id, src in wanted.items():
            existing = self.aps.get_job(job_id)
            trigger = source_trigger(src, cfg.tz)
            if existing is not None and str(existing.trigger) == str(trigger):
                continue
            first = (
                now + timedelta(seconds=random.uniform(0, self.start_jitter)) if initial else None
            )
            self.aps.add_job(
                self._run_source,
                trigger,
                args=[src.id],
                id=job_id,
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=3600,
                **({"next_run_time": first} if first else {}),
            )
        if not self.leader:
            return
        for provider in self.job_providers:
            provider(self, cfg)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Mark the current job's task as in flight: ``stop`` waits for it."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._inflight.discard(task)

    def _on_overrun(self, event: JobSubmissionEvent) -> None:
        """APScheduler skipped a source's run because its previous run still goes on."""
        if event.job_id.startswith(("source:", "retry:")):
            source_id = event.job_id.split(":", 1)[1]
            when = event.scheduled_run_times[0] if event.scheduled_run_times else self.app.now()
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not dispatched on the loop: the log has it
                log.warning("source %s: a scheduled poll was skipped (still running)", source_id)
                return
            task = loop.create_task(self._note_overrun(source_id, when))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _note_overrun(self, source_id: str, when: datetime) -> None:
        """An overrun shows on the source's health, not only in the log."""
        local = when.astimezone(self.app.config.tz)
        note = (
            f"a scheduled poll at {local:%Y-%m-%d %H:%M} was skipped: the previous poll of "
            "this source was still running"
        )
        log.warning("source %s: %s", source_id, note)
        try:
            state = await asyncio.to_thread(
                self.app.storage.source_state, source_id, with_count=False
            )
            kept = [w for w in (state.warning or "").split("; ") if w and "was skipped" not in w]
            await asyncio.to_thread(
                self.app.storage.set_source_warning, source_id, "; ".join([*kept, note])
            )
        except Exception:
            log.exception("could not note the overrun of %s", source_id)

    async def _run_source(self, source_id: str, retry: bool = False) -> None:
        with self.running():
            await self._poll_source(source_id, retry)
            await self._send_alerts()

    async def _send_alerts(self, *, periodic: bool = False) -> None:
        """Send the admin alerts that are due (recorded by this poll, a CLI poll, a digest
        run; or retries). Any process may: each alert is claimed by one sender. The
        minute's job runs on the leader only."""
        if periodic and not self.leader:
            return
        try:
            await asyncio.to_thread(send_alerts, self.app)
        except Exception:
            log.exception("sending admin alerts failed")

    def _slot(self, source_id: str, retry: bool) -> dict[str, timedelta] | None:
        """Shared polling: a regular run is not needed when any process polled the source
        closer than nine tenths of its interval ago (checked under the source's lock)."""
        if retry or not self.app.config.watcher.shared_polling:
            return None
        src = self.app.config.sources_by_id.get(source_id)
        if src is None:
            return None
        return {source_id: timedelta(seconds=0.9 * src.parsed_schedule.approx_seconds)}

    def _retry_at(self, source_id: str, when: datetime) -> None:
        self.aps.add_job(
            self._run_source,
            DateTrigger(run_date=when),
            args=[source_id, True],
            id=f"retry:{source_id}",
            replace_existing=True,
            max_instances=1,
        )

    async def _poll_source(self, source_id: str, retry: bool = False) -> None:
        try:
            src = self.app.config.sources_by_id.get(source_id)
            if src is None or not src.enabled:
                return
            before = await asyncio.to_thread(self.app.storage.source_state, source_id)
            paused_until = before.next_attempt_at
            if (
                before.last_error_code == "rate_limited"
                and before.consecutive_failures
                and paused_until is not None
                and self.app.now() < paused_until
            ):
                # The server asked for a pause: a regular run before then (or the first
                # run after a restart, which lost the retry job) only keeps the date.
                self._retry_at(source_id, paused_until)
                log.info(
                    "source %s asked for a pause until %s; not polled", source_id, paused_until
                )
                return
            results = await self.app.poll([source_id], fresh_within=self._slot(source_id, retry))
            result = results[0]
            if result.status == PollStatus.SKIPPED:
                if result.error is not None and result.error.code == "polled_in_slot":
                    log.info(
                        "source %s: polled by another process in this slot; skipped", source_id
                    )
                elif self.app.config.watcher.shared_polling:
                    # Another process of the service took this slot's poll: as it should.
                    log.info("source %s: another process polls it now; skipped", source_id)
                else:
                    # Another process (a CLI poll, the admin's "Hämta nu" in another
                    # service) still polls it.
                    await self._note_overrun(source_id, self.app.now())
                return
            log.info(
                "polled %s: %s, %d new, %d updated, %d unchanged",
                source_id,
                result.status.value,
                result.new,
                result.updated,
                result.unchanged,
            )
            if result.status == PollStatus.ERROR:
                state = await asyncio.to_thread(self.app.storage.source_state, source_id)
                if state.next_attempt_at is not None:
                    self._retry_at(source_id, state.next_attempt_at)
                log.warning(
                    "source %s failed (%s, %d in a row); retrying at %s",
                    source_id,
                    result.error.code if result.error else "?",
                    state.consecutive_failures,
                    state.next_attempt_at,
                )
        except Exception:
            log.exception("the poll job of %s failed", source_id)
