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
    assert set(jobs) == {"digest:weekly", "digest:daily", "digest-resume"}
    weekly = jobs["digest:weekly"].trigger.slots
    assert (weekly.schedule.days, weekly.schedule.hour, weekly.schedule.minute) == ((0, 3), 8, 0)
    assert str(jobs["digest:daily"].trigger.slots.tz) == "Europe/Stockholm"
    assert jobs["digest:daily"].max_instances == 1 and jobs["digest:daily"].coalesce
    # A network removed from the config loses its job.
    from watcher.config import validate_data

    smaller = validate_data({"networks": networks()[1:]})
    digest_jobs(sched, smaller)
    assert {j.id for j in sched.aps.get_jobs()} == {"digest:daily", "digest-resume"}


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
