"""The scheduler's digest jobs: one per network, on the network's schedule.

``digest_jobs`` is a job provider for ``watcher.scheduler.Scheduler.job_providers``: it
adds ``digest:<network>`` (a ``notifications.slots.DigestTrigger`` in the config's time
zone, Europe/Stockholm: one run per scheduled local date, across daylight saving time;
missed runs within ``MISFIRE_GRACE`` run once when the service is back), removes the jobs
of networks that are gone, disabled or without members, and adds a one-off
``digest-resume`` shortly after start that sends what a crash left open. After each run
a ``digest-retry:<network>`` job is set for the earliest delivery still open (4xx back-off,
unreachable server), never sooner than ``email.retry_delay`` from now.

The scheduler is above notifications in the layers, so these jobs take it as a
``notifications.ports.JobHost`` (its APScheduler, whether it leads, ``running()`` and its
app); ``watcher.scheduler.Scheduler`` is one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from apscheduler.triggers.date import DateTrigger

from notifications.delivery import resume_digests, run_digests
from notifications.ports import JobHost
from notifications.slots import DigestTrigger
from watcher.config import Config
from watcher.storage.deliveries import DeliveryStore

log = logging.getLogger(__name__)

MISFIRE_GRACE = timedelta(hours=6)
RESUME_DELAY = timedelta(seconds=30)
PREFIXES = ("digest:", "digest-retry:")


def network_trigger(schedule: str, config: Config) -> DigestTrigger:
    """The trigger of a network's digest: one slot per scheduled local date, across
    daylight saving time (``notifications.slots``)."""
    return DigestTrigger(schedule, config.tz)


def digest_jobs(scheduler: JobHost, config: Config) -> None:
    """Make the digest jobs match the networks in ``config`` (only on the leader)."""
    if not scheduler.leader:
        return
    wanted = {n.id: n for n in config.networks if n.enabled and n.members}
    for job in scheduler.aps.get_jobs():
        for prefix in PREFIXES:
            if job.id.startswith(prefix) and job.id.removeprefix(prefix) not in wanted:
                job.remove()
    for net in wanted.values():
        job_id = f"digest:{net.id}"
        trigger = network_trigger(net.schedule, config)
        existing = scheduler.aps.get_job(job_id)
        if existing is not None and str(existing.trigger) == str(trigger):
            continue
        scheduler.aps.add_job(
            run_network,
            trigger,
            args=[scheduler, net.id],
            id=job_id,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(MISFIRE_GRACE.total_seconds()),
        )
    if scheduler.aps.get_job("digest-resume") is None:
        scheduler.aps.add_job(
            resume_network,
            DateTrigger(run_date=scheduler.app.now() + RESUME_DELAY),
            args=[scheduler, None],
            id="digest-resume",
            replace_existing=True,
            max_instances=1,
        )


async def run_network(scheduler: JobHost, network_id: str) -> None:
    """The scheduled digest of one network (in a thread: SMTP and the database block)."""
    app = scheduler.app
    try:
        with scheduler.running():
            outcomes = await asyncio.to_thread(run_digests, app, [network_id])
        for o in outcomes:
            log.info(
                "digest %s: %d new, %d updated, %d sent, %d failed, %d left for later%s",
                o.network,
                o.new,
                o.updated,
                o.sent,
                o.failed,
                o.deferred,
                f" ({o.skipped_reason})" if o.skipped_reason else "",
            )
    except Exception:
        log.exception("the digest job of %s failed", network_id)
    await schedule_retry(scheduler, network_id)


async def resume_network(scheduler: JobHost, network_id: str | None) -> None:
    """Send what is open (of one network, or all), then plan the next retry."""
    app = scheduler.app
    try:
        with scheduler.running():
            await asyncio.to_thread(resume_digests, app, [network_id] if network_id else None)
    except Exception:
        log.exception("resuming digests failed")
    if network_id is not None:
        await schedule_retry(scheduler, network_id)
    else:
        for net in app.config.networks:
            await schedule_retry(scheduler, net.id)


async def schedule_retry(scheduler: JobHost, network_id: str) -> None:
    """A one-off job for the network's earliest open delivery, if any."""
    app = scheduler.app
    try:
        due = await asyncio.to_thread(DeliveryStore(app.storage).next_due, app.now(), network_id)
    except Exception:
        log.exception("could not read the open deliveries of %s", network_id)
        return
    if due is None or not scheduler.leader:
        return
    at = max(due, app.now() + timedelta(seconds=app.config.email.retry_delay))
    scheduler.aps.add_job(
        resume_network,
        DateTrigger(run_date=at),
        args=[scheduler, network_id],
        id=f"digest-retry:{network_id}",
        replace_existing=True,
        max_instances=1,
    )
