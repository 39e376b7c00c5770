"""The scheduler: jobs follow the config, failing sources back off and are retried, and
only the holder of the database lock runs jobs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent

from tests.builders import feed, rss_item
from tests.conftest import T0, fetch_settings
from watcher.config import validate_data
from watcher.polling import backoff_until, poll_lock
from watcher.scheduler import Scheduler


def sources(loopback, *ids: str, schedule: str = "1h") -> list[dict]:
    return [
        {"id": i, "name": i, "kind": "rss", "url": loopback.url(f"/{i}.xml"), "schedule": schedule}
        for i in ids
    ]


def test_backoff_doubles_and_is_capped_by_the_interval():
    delays = [(backoff_until(n, 3600, T0) - T0).total_seconds() for n in range(1, 10)]
    assert delays[:4] == [60, 120, 240, 480]
    assert max(delays) == 3600 and delays[-1] == 3600


async def test_jobs_follow_the_config(make_app, loopback):
    app = make_app({"fetch": fetch_settings(loopback), "sources": sources(loopback, "a", "b")})
    sched = Scheduler(app, start_jitter=0)
    sched.start(paused=True)
    try:
        await sched._leadership()
        assert sched.leader
        jobs = {j.id: j for j in sched.aps.get_jobs()}
        assert {"source:a", "source:b"} <= set(jobs)
        assert jobs["source:a"].max_instances == 1 and jobs["source:a"].coalesce
        data = {
            "fetch": fetch_settings(loopback),
            "sources": [*sources(loopback, "a", schedule="0 7 * * 1-5"), *sources(loopback, "c")],
        }
        app.set_config(validate_data(data, app.config.path))
        jobs = {j.id: j for j in sched.aps.get_jobs()}
        assert "source:b" not in jobs and "source:c" in jobs
        assert "cron" in str(jobs["source:a"].trigger)
    finally:
        await sched.stop()


async def test_a_failing_source_is_retried_with_backoff(make_app, loopback):
    loopback.add("/bad.xml", "nope", status=500)
    app = make_app({"fetch": fetch_settings(loopback), "sources": sources(loopback, "bad")})
    sched = Scheduler(app, start_jitter=0)
    sched.start(paused=True)
    try:
        await sched._leadership()
        await sched._run_source("bad")
        retry = sched.aps.get_job("retry:bad")
        assert retry is not None
        state = app.storage.source_state("bad")
        assert state.consecutive_failures == 1
        assert state.next_attempt_at == T0 + timedelta(minutes=1)
        await sched._run_source("bad")
        assert app.storage.source_state("bad").next_attempt_at == T0 + timedelta(minutes=2)
    finally:
        await sched.stop()


async def test_a_rate_limited_source_is_polled_again_when_the_server_said(
    make_app, loopback, clock
):
    # Retry-After is an hour; the source's interval is an hour too, but the regular run
    # may fire early (jitter) and a restart loses the retry job: neither polls before then.
    loopback.add("/busy.xml", "", status=429, headers={"Retry-After": "5400"})
    app = make_app({"fetch": fetch_settings(loopback), "sources": sources(loopback, "busy")})
    sched = Scheduler(app, start_jitter=0)
    sched.start(paused=True)
    try:
        await sched._leadership()
        await sched._run_source("busy")
        assert loopback.hits("/busy.xml") == 1
        state = app.storage.source_state("busy")
        assert state.last_error_code == "rate_limited"
        assert state.next_attempt_at == T0 + timedelta(seconds=5400)
        retry = sched.aps.get_job("retry:busy")
        assert retry is not None and retry.trigger.run_date == T0 + timedelta(seconds=5400)

        clock.advance(hours=1)
        sched.aps.remove_job("retry:busy")  # as after a restart
        await sched._run_source("busy")  # the regular run
        assert loopback.hits("/busy.xml") == 1
        assert sched.aps.get_job("retry:busy").trigger.run_date == state.next_attempt_at

        clock.advance(minutes=30)  # the time the server said
        loopback.add("/busy.xml", feed(rss_item("1", "Utlysning", "https://x.example/1")))
        await sched._run_source("busy")
        assert loopback.hits("/busy.xml") == 2
        state = app.storage.source_state("busy")
        assert (state.consecutive_failures, state.next_attempt_at) == (0, None)
        assert state.last_success_at == clock()
    finally:
        await sched.stop()


async def test_only_the_lock_holder_runs_jobs(make_app, loopback, clock):
    app = make_app({"fetch": fetch_settings(loopback), "sources": sources(loopback, "a")})
    first, second = Scheduler(app, start_jitter=0), Scheduler(app, start_jitter=0)
    first.start(paused=True)
    second.start(paused=True)
    try:
        await first._leadership()
        await second._leadership()
        assert first.leader and not second.leader
        assert second.aps.get_job("source:a") is None
        await first.stop()  # releases the lock
        await second._leadership()
        assert second.leader and second.aps.get_job("source:a") is not None
        # A holder that stops renewing loses the lock once it expires.
        clock.advance(seconds=200)
        third = Scheduler(app, start_jitter=0)
        third.start(paused=True)
        await third._leadership()
        assert third.leader
        await second._leadership()
        assert not second.leader and second.aps.get_job("source:a") is None
        await third.stop()
    finally:
        await second.stop()


async def test_the_leader_keeps_statuses_in_step_with_the_calendar(make_app, loopback, clock):
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:u1\r\nSUMMARY:Call\r\n"
        "DTSTART:20261103T080000Z\r\nDTEND:20261110T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    loopback.add("/c.xml", ics, content_type="text/calendar")
    data = [
        {"id": "c", "name": "c", "kind": "ical", "url": loopback.url("/c.xml"), "schedule": "1h"}
    ]
    app = make_app({"fetch": fetch_settings(loopback), "sources": data})
    await app.poll()
    sched = Scheduler(app, start_jitter=0)
    sched.start(paused=True)
    try:
        assert sched.aps.get_job("statuses") is not None
        clock.advance(days=2)
        await sched._refresh_statuses()  # not the leader: does nothing
        assert app.storage.list_items()[0].status == "forthcoming"
        await sched._leadership()
        await sched._refresh_statuses()
        assert app.storage.list_items()[0].status == "open"
    finally:
        await sched.stop()


async def test_an_overrun_shows_on_the_sources_health(make_app, loopback):
    """Issue 12.5: a scheduled poll skipped because the previous one still ran was only
    logged. Both ways it happens show on the source's health: APScheduler skipping a run of
    a job still running, and a poll refused because another process polls the source."""
    loopback.add("/a.xml", feed(rss_item("1", "Nyhet", "https://x/1")))
    app = make_app({"fetch": fetch_settings(loopback), "sources": sources(loopback, "a")})
    sched = Scheduler(app, start_jitter=0)
    sched.start(paused=True)
    try:
        await sched._leadership()
        # Another process holds the source's poll lock.
        app.storage.acquire_locks({poll_lock("a")}, "elsewhere", timedelta(minutes=5), T0)
        await sched._run_source("a")
        warning = app.storage.source_state("a").warning or ""
        assert "was skipped: the previous poll of this source was still running" in warning
        assert app.storage.source_state("a").consecutive_failures == 0
        # APScheduler's own skip of an overlapping run.
        event = JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, "source:a", "default", [T0])
        sched._on_overrun(event)
        await asyncio.gather(*sched._inflight)
        assert (app.storage.source_state("a").warning or "").count("was skipped") == 1
    finally:
        await sched.stop()


async def run_held_job(sched: Scheduler) -> tuple[asyncio.Event, list[str], list[asyncio.Task]]:
    """Start a job through APScheduler (as a poll runs) that holds until ``gate`` is set."""
    started, gate = asyncio.Event(), asyncio.Event()
    log: list[str] = []
    tasks: list[asyncio.Task] = []

    async def job() -> None:
        with sched.running():
            tasks.append(asyncio.current_task())
            started.set()
            try:
                await gate.wait()
            except asyncio.CancelledError:
                log.append("cancelled")
                raise
            log.append("finished")

    # APScheduler decides by its own (real) clock: due now, it runs at once.
    sched.aps.add_job(job, next_run_time=datetime.now(UTC))
    await asyncio.wait_for(started.wait(), 30)
    return gate, log, tasks


async def test_stop_lets_a_job_in_flight_finish(make_app):
    """Issue 12.12: stopping shut APScheduler down first, which cancels the task of every
    job still running: a SIGTERM abandoned the poll in flight."""
    app = make_app({})
    sched = Scheduler(app, start_jitter=0)
    sched.start()
    gate, log, _tasks = await run_held_job(sched)
    stopping = asyncio.create_task(sched.stop())
    await asyncio.sleep(0)  # stop() runs up to its wait for the job
    assert not stopping.done()
    gate.set()
    await asyncio.wait_for(stopping, 30)
    assert log == ["finished"]


async def test_stop_cancels_a_job_that_outlasts_the_grace(make_app):
    app = make_app({"watcher": {"shutdown_grace": 0}})
    sched = Scheduler(app, start_jitter=0)
    sched.start()
    _gate, log, [task] = await run_held_job(sched)
    await asyncio.wait_for(sched.stop(), 30)
    assert log == ["cancelled"] and task.done()
