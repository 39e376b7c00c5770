"""Digest jobs in the scheduler, and ``watcher digest`` / ``watcher deliveries`` by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner

from notifications.schedule import digest_jobs, run_network
from tests.digest_builders import ItemBuilder, SmtpSink, start_smtp
from watcher.cli import main
from watcher.scheduler import Scheduler
from watcher.storage.deliveries import DeliveryStore


def networks(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"id": "weekly", "name": "V", "members": ["a@x.se"], "schedule": "mon,thu 08:00"},
        {"id": "daily", "name": "D", "members": ["b@x.se"], "schedule": "daily 07:30"},
        {"id": "empty", "name": "E", "members": []},
        {"id": "off", "name": "O", "members": ["c@x.se"], "enabled": False},
        *extra,
    ]


def test_one_job_per_network_on_its_schedule_only_on_the_leader(make_app):
    app = make_app({"networks": networks()})
    sched = Scheduler(app)
    digest_jobs(sched, app.config)
    assert sched.aps.get_jobs() == []  # not the leader: no jobs
    sched.leader = True
    digest_jobs(sched, app.config)
    jobs = {j.id: j for j in sched.aps.get_jobs()}
    # "empty" has no configured member, but self-service subscribers may join it at any time.
    assert set(jobs) == {"digest:weekly", "digest:daily", "digest:empty", "digest-resume"}
    weekly = jobs["digest:weekly"].trigger.slots
    assert (weekly.schedule.days, weekly.schedule.hour, weekly.schedule.minute) == ((0, 3), 8, 0)
    assert str(jobs["digest:daily"].trigger.slots.tz) == "Europe/Stockholm"
    assert jobs["digest:daily"].max_instances == 1 and jobs["digest:daily"].coalesce
    # A network removed from the config loses its job.
    from watcher.config import validate_data

    smaller = validate_data({"networks": networks()[1:]})
    digest_jobs(sched, smaller)
    assert {j.id for j in sched.aps.get_jobs()} == {"digest:daily", "digest:empty", "digest-resume"}


async def test_scheduled_run_sends_and_plans_a_retry_for_a_4xx(make_app, clock):
    sink = SmtpSink(rcpt={"b@x.se": "450 4.2.1 busy"})
    gen = start_smtp(sink)
    server = next(gen)
    try:
        app = make_app(
            {
                "email": {"backend": "smtp", "smtp": server.settings(), "retry_delay": 120},
                "networks": [
                    {"id": "n", "name": "N", "members": ["a@x.se", "b@x.se"]},
                ],
            }
        )
        ItemBuilder(app.storage, clock).add(
            "a", deadlines=[clock() + timedelta(days=9)], baseline=True
        )
        sched = Scheduler(app)
        sched.leader = True
        await run_network(sched, "n")
        assert sink.count() == {"a@x.se": 1}
        retry = sched.aps.get_job("digest-retry:n")
        assert retry is not None
        assert retry.trigger.run_date == clock() + timedelta(seconds=120)
    finally:
        gen.close()


def test_cli_digest_json_dry_run_and_send(make_app, clock, tmp_path, monkeypatch):
    app = make_app({"networks": networks()})
    # The CLI reads the wall clock: a deadline five days from the real now.
    soon = datetime.now(UTC) + timedelta(days=5)
    ItemBuilder(app.storage, clock).add("a", deadlines=[soon], baseline=True)
    cfg = str(tmp_path / "config.toml")
    runner = CliRunner()
    dry = runner.invoke(main, ["--config", cfg, "digest", "weekly", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    [obj] = [json.loads(line) for line in dry.output.splitlines()]
    assert obj == {
        "network": "weekly",
        "new": 1,
        "updated": 0,
        "closing_soon": 1,
        "recipients": 1,
        "sent": 0,
        "skipped_reason": "dry run",
    }
    assert not (tmp_path / "outbox").exists()
    sent = runner.invoke(main, ["--config", cfg, "digest", "--json"])
    assert sent.exit_code == 0, sent.output
    by = {o["network"]: o for o in map(json.loads, sent.output.splitlines())}
    assert by["weekly"]["sent"] == 1 and by["daily"]["sent"] == 1
    assert by["empty"]["skipped_reason"] == "no members"
    assert by["off"]["skipped_reason"] == "disabled"
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    again = runner.invoke(main, ["--config", cfg, "digest"])
    assert again.exit_code == 0 and "nothing new" in again.output
    unknown = runner.invoke(main, ["--config", cfg, "digest", "nope"])
    assert unknown.exit_code == 2 and "unknown network" in unknown.output


def test_cli_delivery_log_optouts_and_retry(make_app, clock, tmp_path):
    app = make_app({"networks": networks()})
    # The CLI reads the wall clock: a deadline five days from the real now.
    soon = datetime.now(UTC) + timedelta(days=5)
    ItemBuilder(app.storage, clock).add("a", deadlines=[soon], baseline=True)
    store = DeliveryStore(app.storage)
    store.add_optout("daily", "b@x.se", clock())
    cfg = str(tmp_path / "config.toml")
    runner = CliRunner()
    assert runner.invoke(main, ["--config", cfg, "digest"]).exit_code == 0
    log = runner.invoke(main, ["--config", cfg, "deliveries", "log", "--json"])
    rows = {r["address"]: r for r in map(json.loads, log.output.splitlines())}
    assert rows["a@x.se"]["status"] == "sent" and rows["b@x.se"]["status"] == "opted_out"
    outs = runner.invoke(main, ["--config", cfg, "deliveries", "optouts", "--json"])
    assert json.loads(outs.output)["address"] == "b@x.se"
    retry = runner.invoke(main, ["--config", cfg, "deliveries", "retry"])
    assert retry.exit_code == 0 and "No failed deliveries" in retry.output


# -- missed digests (issue 12, point 2) -----------------------------------------------------

SLOT_NOV_3 = datetime(2026, 11, 3, 6, 30, tzinfo=UTC)  # daily 07:30 in Stockholm (CET)
SLOT_NOV_4 = datetime(2026, 11, 4, 6, 30, tzinfo=UTC)


def start_service(app) -> Scheduler:
    """What a start does for the digest jobs: the leader's scheduler gets its jobs."""
    sched = Scheduler(app)
    sched.leader = True
    digest_jobs(sched, app.config)
    return sched


def due(sched: Scheduler, clock) -> datetime:
    """When the network's digest job runs next (as APScheduler sets it when it starts)."""
    job = sched.aps.get_job("digest:n")
    at = getattr(job, "next_run_time", None)
    return at if at is not None else job.trigger.get_next_fire_time(None, clock())


def daily(make_app, clock, **email: Any):
    app = make_app(
        {
            "email": email,
            "networks": [
                {"id": "n", "name": "N", "members": ["a@x.se"], "schedule": "daily 07:30"}
            ],
        }
    )
    ItemBuilder(app.storage, clock).add(
        "a", deadlines=[clock() + timedelta(days=20)], baseline=True
    )
    return app


async def test_a_slot_missed_while_stopped_is_sent_once_after_a_restart(make_app, clock, tmp_path):
    """Issue 12.2: a daily slot that passed while the service was stopped was not sent after
    the restart (the job started afresh from the next slot)."""
    app = daily(make_app, clock)
    assert due(start_service(app), clock) == SLOT_NOV_3
    # Stopped before the slot, started again two hours after it (within the 6 h grace).
    clock.current = SLOT_NOV_3 + timedelta(hours=2)
    sched = start_service(app)
    assert due(sched, clock) == clock()  # the missed slot runs once, now
    await run_network(sched, "n")  # what the job does
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    plan = DeliveryStore(app.storage).digest_plan("n")
    assert (plan.next_run_at, plan.last_run_at, plan.missed_count) == (SLOT_NOV_4, clock(), 0)
    # Started again at once: nothing is missed, nothing runs twice.
    clock.advance(minutes=5)
    assert due(start_service(app), clock) == SLOT_NOV_4


async def test_a_slot_missed_beyond_the_grace_is_recorded_not_sent(make_app, clock, tmp_path):
    app = daily(make_app, clock, missed_digest_grace=1)  # hours
    start_service(app)
    clock.current = SLOT_NOV_3 + timedelta(hours=2)
    sched = start_service(app)
    assert due(sched, clock) == SLOT_NOV_4
    assert not (tmp_path / "outbox").exists()
    plan = DeliveryStore(app.storage).digest_plan("n")
    assert (plan.missed_from, plan.missed_until, plan.missed_count) == (SLOT_NOV_3, SLOT_NOV_3, 1)
    assert plan.missed_noted_at == clock()
    # Down for three more days: the latest slot is within the grace and runs once; the two
    # before it are recorded as missed.
    clock.current = SLOT_NOV_4 + timedelta(days=2, minutes=30)
    sched = start_service(app)
    assert due(sched, clock) == clock()
    plan = DeliveryStore(app.storage).digest_plan("n")
    assert (plan.missed_from, plan.missed_until, plan.missed_count) == (
        SLOT_NOV_4,
        SLOT_NOV_4 + timedelta(days=1),
        2,
    )


def test_a_new_or_rescheduled_network_starts_from_its_next_slot(make_app, clock):
    app = daily(make_app, clock)
    start_service(app)
    clock.current = SLOT_NOV_3 + timedelta(hours=2)
    from watcher.config import validate_data

    data = {
        "networks": [{"id": "n", "name": "N", "members": ["a@x.se"], "schedule": "daily 12:00"}]
    }
    app.set_config(validate_data(data, app.config.path))
    assert due(start_service(app), clock) == datetime(2026, 11, 3, 11, 0, tzinfo=UTC)
    plan = DeliveryStore(app.storage).digest_plan("n")
    assert plan.schedule == "daily 12:00" and plan.missed_count == 0


def test_the_admin_sees_a_missed_digest(web_app, admin, clock):
    store = DeliveryStore(web_app.storage)
    slot = clock() - timedelta(days=1)
    store.save_digest_plan("gr-eu", "mon 08:00", clock() + timedelta(days=6))
    page = admin.get("/admin/networks").text
    assert "Missat utskick" not in page
    store.save_digest_plan(
        "gr-eu", "mon 08:00", clock() + timedelta(days=6), missed=(slot, slot, 1), noted_at=clock()
    )
    page = admin.get("/admin/networks").text
    assert "Missat utskick" in page and "2026-11-01 09:00" in page
