"""The scheduler's digest jobs: one per network, on the network's schedule.

``digest_jobs`` is a job provider for ``watcher.scheduler.Scheduler.job_providers``: it
adds ``digest:<network>`` (a ``notifications.slots.DigestTrigger`` in the config's time
zone, Europe/Stockholm: one run per scheduled local date, across daylight saving time),
removes the jobs of networks that are gone or disabled, and adds a one-off
``digest-resume`` shortly after start that sends what a crash left open. After each run
a ``digest-retry:<network>`` job is set for the earliest delivery still open (4xx back-off,
unreachable server), never sooner than ``email.retry_delay`` from now.

Each network's next run is kept in the database (``digest_schedule``), and moved on after
every run. When a job is added (the service starts, another process takes the lead, a
schedule changes) the stored run decides (``slots.plan_start``): a slot that passed while
no process ran is sent once at once when it is at most ``[email] missed_digest_grace``
hours old (6); older slots are recorded as missed for the admin's networks page, and the
job waits for the next slot. Nothing is lost either way: the next digest carries whatever
no digest has sent.

The scheduler is above notifications in the layers, so these jobs take it as a
``notifications.ports.JobHost`` (its APScheduler, whether it leads, ``running()`` and its
app); ``watcher.scheduler.Scheduler`` is one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime, timedelta

from apscheduler.triggers.date import DateTrigger

from notifications.alerts import record_digest_missed, send_alerts
from notifications.delivery import resume_digests, run_digests, run_personal_digests
from notifications.ports import JobHost
from notifications.slots import DigestTrigger, Slots, plan_start
from watcher.config import Config, NetworkConfig
from watcher.exceptions import StorageError
from watcher.storage.deliveries import DeliveryStore, DigestPlan

log = logging.getLogger(__name__)

RESUME_DELAY = timedelta(seconds=30)
PREFIXES = ("digest:", "digest-retry:")


def network_trigger(schedule: str, config: Config) -> DigestTrigger:
    """The trigger of a network's digest: one slot per scheduled local date, across
    daylight saving time (``notifications.slots``)."""
    return DigestTrigger(schedule, config.tz)


def missed_grace(config: Config) -> timedelta:
    """How old a missed slot may be and still be sent at start."""
    return timedelta(hours=config.email.missed_digest_grace)


def digest_jobs(scheduler: JobHost, config: Config) -> None:
    """Make the digest jobs match the networks in ``config`` (only on the leader); a job
    added now starts from the network's stored next run (see the module docstring)."""
    if not scheduler.leader:
        return
    # Every enabled network: one with no configured member may have self-service
    # subscribers (they join when a run resolves its recipients; a run with nobody to mail
    # records nothing).
    wanted = {n.id: n for n in config.networks if n.enabled}
    for job in scheduler.aps.get_jobs():
        for prefix in PREFIXES:
            if job.id.startswith(prefix) and job.id.removeprefix(prefix) not in wanted:
                job.remove()
    store = DeliveryStore(scheduler.app.storage)
    now = scheduler.app.now()
    grace = missed_grace(config)
    plans: dict[str, DigestPlan] | None = None
    joined: dict[str, tuple[str, ...]] | None = None

    def has_recipients(net: NetworkConfig) -> bool:
        nonlocal joined
        if net.members:
            return True
        if joined is None:
            try:
                joined = scheduler.app.storage.network_subscribers()
            except StorageError:
                joined = {}
        return bool(joined.get(net.id))

    for net in wanted.values():
        job_id = f"digest:{net.id}"
        trigger = network_trigger(net.schedule, config)
        existing = scheduler.aps.get_job(job_id)
        if existing is not None and str(existing.trigger) == str(trigger):
            continue
        if plans is None:
            plans = _stored_plans(store)
        stored = plans.get(net.id)
        stored_next = stored.next_run_at if stored and stored.schedule == net.schedule else None
        plan = plan_start(trigger.slots, stored_next, now, grace)
        if plan.missed is not None and not has_recipients(net):
            plan = replace(plan, missed=None)  # nobody would have been mailed: nothing missed
        if plan.missed is not None:
            first, last, count = plan.missed
            log.warning(
                "digest %s: %d scheduled digest(s) from %s to %s were missed while no process "
                "ran (more than %s ago): not sent; the next digest carries what they would have",
                net.id,
                count,
                first.astimezone(config.tz).strftime("%Y-%m-%d %H:%M"),
                last.astimezone(config.tz).strftime("%Y-%m-%d %H:%M"),
                grace,
            )
            record_digest_missed(
                scheduler.app, network_id=net.id, first=first, last=last, count=count
            )
        if plan.run_now:
            log.info("digest %s: the slot of %s was missed; it runs now", net.id, plan.next_run_at)
        try:
            store.save_digest_plan(
                net.id, net.schedule, plan.next_run_at, missed=plan.missed, noted_at=now
            )
        except StorageError:
            log.exception("could not keep the next digest run of %s", net.id)
        scheduler.aps.add_job(
            run_network,
            trigger,
            args=[scheduler, net.id],
            id=job_id,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(grace.total_seconds())),
            next_run_time=now if plan.run_now else plan.next_run_at,
        )
    if plans is not None:
        try:
            store.forget_digest_plans(wanted)
        except StorageError:
            log.exception("could not forget the digest runs of removed networks")
    if scheduler.aps.get_job("digest-resume") is None:
        scheduler.aps.add_job(
            resume_network,
            DateTrigger(run_date=scheduler.app.now() + RESUME_DELAY),
            args=[scheduler, None],
            id="digest-resume",
            replace_existing=True,
            max_instances=1,
        )


def _stored_plans(store: DeliveryStore) -> dict[str, DigestPlan]:
    try:
        return store.digest_plans()
    except StorageError:
        log.exception("could not read the digests' next runs; each starts from its next slot")
        return {}


def advance_plan(store: DeliveryStore, config: Config, network_id: str, now: datetime) -> None:
    """After a run: the stored next run is the first slot after the one served (or after
    ``now`` when the run was late), so a restart finds nothing missed."""
    net = next((n for n in config.networks if n.id == network_id), None)
    if net is None:
        return
    slots = Slots.parse(net.schedule, config.tz)
    stored = store.digest_plan(network_id)
    served = stored.next_run_at if stored and stored.schedule == net.schedule else now
    store.save_digest_plan(
        network_id, net.schedule, slots.first_after(max(served, now)), ran_at=now
    )


async def run_network(scheduler: JobHost, network_id: str) -> None:
    """The scheduled digest of one network (in a thread: SMTP and the database block),
    then its next run kept in the database."""
    app = scheduler.app
    try:
        with scheduler.running():
            try:
                outcomes = await asyncio.to_thread(run_digests, app, [network_id])
            finally:
                await asyncio.to_thread(
                    advance_plan, DeliveryStore(app.storage), app.config, network_id, app.now()
                )
            # A delivery that failed for good is told to the admin now, not in a minute.
            await asyncio.to_thread(send_alerts, app)
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


# -- people's own digests (self-service subscriptions) ---------------------------------------


def personal_digest_jobs(scheduler: JobHost, config: Config) -> None:
    """Two jobs, ``personal:daily`` and ``personal:weekly``, on ``[subscriptions]
    daily_schedule`` / ``weekly_schedule``: each sends the own digests of the people who
    chose that frequency (``notifications.subscriptions``). A slot missed while no process
    ran is not caught up: the next digest carries what no digest has sent."""
    if not scheduler.leader:
        return
    sub = config.subscriptions
    for frequency, schedule in (("daily", sub.daily_schedule), ("weekly", sub.weekly_schedule)):
        job_id = f"personal:{frequency}"
        trigger = network_trigger(schedule, config)
        existing = scheduler.aps.get_job(job_id)
        if existing is not None and str(existing.trigger) == str(trigger):
            continue
        scheduler.aps.add_job(
            run_personal,
            trigger,
            args=[scheduler, frequency],
            id=job_id,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(missed_grace(config).total_seconds())),
        )


async def run_personal(scheduler: JobHost, frequency: str) -> None:
    """People's own digests of one frequency (in a thread: SMTP and the database block)."""
    try:
        with scheduler.running():
            outcomes = await asyncio.to_thread(run_personal_digests, scheduler.app, frequency)
        sent = sum(o.sent for o in outcomes)
        log.info("personal %s digests: %d people, %d sent", frequency, len(outcomes), sent)
    except Exception:
        log.exception("the personal %s digests failed", frequency)
