"""``watcher digest [NETWORK…]`` and ``watcher deliveries …``: digests by hand, the
delivery log and opt-outs.

``watcher digest`` exits 0, or 1 when a member's delivery failed for good in this run
(the admin should look at ``watcher deliveries log --failed``).
"""

from __future__ import annotations

import sys

import click
from rich.table import Table

from watcher.cli import Ctx, console, err_console, fmt_time, handle_errors, print_json


@click.command("digest")
@click.argument("network_ids", nargs=-1, metavar="[NETWORK]...")
@click.option(
    "--dry-run", is_flag=True, help="Build and show the digests; record and send nothing."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per network per line.")
@click.option("--resume-only", is_flag=True, help="Only send what earlier runs left open.")
@click.pass_obj
@handle_errors
def digest(
    ctx: Ctx, network_ids: tuple[str, ...], dry_run: bool, as_json: bool, resume_only: bool
) -> None:
    """Build and send the digest of each network (all, or those named), exactly once.

    Each digest lists the items new since the network's last digest and the items
    updated since (with what changed), grouped by area, plus what closes soon. Nothing is
    sent when nothing is new. A run that was interrupted is resumed without sending
    anyone a second copy."""
    from notifications.delivery import resume_digests, run_digests

    app = ctx.app
    if resume_only:
        outcomes = resume_digests(app, list(network_ids))
    else:
        outcomes = run_digests(app, list(network_ids), dry_run=dry_run)
    if as_json:
        for o in outcomes:
            print_json(o.as_json())
    else:
        title = "Digests (dry run: nothing recorded or sent)" if dry_run else "Digests"
        table = Table(title=title)
        for col in ("network", "new", "updated", "closing soon", "recipients", "sent", "note"):
            table.add_column(col, justify="left" if col in ("network", "note") else "right")
        for o in outcomes:
            note = o.skipped_reason or ""
            if o.failed:
                note = (note + "; " if note else "") + f"[red]{o.failed} failed[/]"
            if o.deferred:
                note = (note + "; " if note else "") + f"[yellow]{o.deferred} to retry later[/]"
            for err in o.errors:
                note = (note + "; " if note else "") + f"[red]{err}[/]"
            table.add_row(
                o.network,
                str(o.new),
                str(o.updated),
                str(o.closing_soon),
                str(o.recipients),
                str(o.sent),
                note,
            )
        console.print(table)
        if dry_run:
            for o in outcomes:
                if o.digest is None or o.digest.is_empty:
                    continue
                console.print(f"\n[bold]{o.network}[/]", highlight=False)
                for label, entries in (
                    ("new", o.digest.new),
                    ("updated", o.digest.updated),
                    ("closing soon", o.digest.closing_soon),
                ):
                    for e in entries:
                        console.print(
                            f"  {label:<12} {fmt_time(e.deadline)}  {e.title}",
                            markup=False,
                            highlight=False,
                        )
    if any(o.failed for o in outcomes):
        sys.exit(1)


@click.group()
def deliveries() -> None:
    """The delivery log and opt-outs of the email digests."""


@deliveries.command("log")
@click.option("--network", "network_id", help="Only this network.")
@click.option("--failed", is_flag=True, help="Only deliveries that failed for good.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per delivery per line.")
@click.pass_obj
@handle_errors
def deliveries_log(
    ctx: Ctx, network_id: str | None, failed: bool, limit: int, as_json: bool
) -> None:
    """Who got which digest, and what failed."""
    from watcher.storage.deliveries import DeliveryStore

    rows = DeliveryStore(ctx.app.storage).delivery_log(
        network_id, status="failed" if failed else None, limit=limit
    )
    if as_json:
        for r in rows:
            print_json(
                {
                    "digest": r.digest_id,
                    "network": r.network_id,
                    "window_end": r.window_end.isoformat(),
                    "address": r.address,
                    "status": r.status,
                    "attempts": r.attempts,
                    "last_error": r.last_error,
                    "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                    "message_id": r.message_id,
                }
            )
        return
    table = Table(title=f"Deliveries ({len(rows)})")
    for col in ("digest", "network", "window end", "address", "status", "tries", "sent", "error"):
        table.add_column(col)
    styles = {"sent": "green", "failed": "red", "pending": "yellow", "sending": "yellow"}
    for r in rows:
        style = styles.get(r.status, "white")
        table.add_row(
            str(r.digest_id),
            r.network_id,
            fmt_time(r.window_end),
            r.address,
            f"[{style}]{r.status}[/]",
            str(r.attempts),
            fmt_time(r.sent_at),
            (r.last_error or "")[:80],
        )
    console.print(table)


@deliveries.command("optouts")
@click.option("--network", "network_id", help="Only this network.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def deliveries_optouts(ctx: Ctx, network_id: str | None, as_json: bool) -> None:
    """Members who unsubscribed (newest first)."""
    from watcher.storage.deliveries import DeliveryStore

    rows = DeliveryStore(ctx.app.storage).optouts(network_id)
    if as_json:
        for r in rows:
            print_json({"network": r.network_id, "address": r.address, "at": r.at.isoformat()})
        return
    table = Table(title=f"Opt-outs ({len(rows)})")
    for col in ("network", "address", "at"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.network_id, r.address, fmt_time(r.at))
    console.print(table)


@deliveries.command("retry")
@click.argument("digest_id", type=int, required=False)
@click.pass_obj
@handle_errors
def deliveries_retry(ctx: Ctx, digest_id: int | None) -> None:
    """Queue failed deliveries again (of one digest, or all); the next run sends them."""
    from watcher.storage.deliveries import DeliveryStore

    n = DeliveryStore(ctx.app.storage).retry_failed(digest_id)
    if n:
        console.print(f"{n} failed deliver{'y' if n == 1 else 'ies'} queued again.")
    else:
        err_console.print("No failed deliveries to queue.")
