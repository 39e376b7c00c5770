"""``watcher admin …``: the admin's password, its sessions and the audit log.

``set-password`` stores a salted scrypt hash in ``[web] admin_password_hash`` of
``config.toml`` (comments and order kept, written atomically); the password itself is never
written anywhere. Every admin session ends at once (their records are deleted from the
database); a running service picks the new hash up when it re-reads its config.
``revoke-sessions`` ends every admin session (or one user's) without changing the password.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from watcher import config as config_mod
from watcher.cli import Ctx, console, err_console, fmt_time, handle_errors, print_json
from watcher.exceptions import WatcherError


@click.group()
def admin() -> None:
    """Admin access: set the password, end sessions, read the audit log."""


@admin.command("set-password")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (one line) instead of asking.",
)
@click.option("--user", help="Also set the admin's user name ([web] admin_user).")
@click.pass_obj
@handle_errors
def set_password(ctx: Ctx, password_stdin: bool, user: str | None) -> None:
    """Set the admin password: its salted hash goes to [web] admin_password_hash."""
    from watcher.config_edit import ConfigFile
    from watcher.web.auth import MIN_PASSWORD_LENGTH, hash_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "New admin password", hide_input=True, confirmation_prompt=True, err=True
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        err_console.print(
            f"[red]The password must have at least {MIN_PASSWORD_LENGTH} characters.[/]"
        )
        sys.exit(2)
    path = config_mod.config_path(ctx.config_path)
    cf = ConfigFile.read(path)
    cf.set_value("web.admin_password_hash", hash_password(password))
    if user:
        cf.set_value("web.admin_user", user)
    cfg = cf.save()
    try:
        app = ctx.app
        ended = app.storage.end_sessions(app.now())
        app.storage.audit(
            "cli",
            "admin.set_password",
            str(path),
            {
                "admin_user": cfg.web.admin_user,
                "admin_password_hash": "***",
                "sessions_ended": ended,
            },
            app.now(),
        )
    except WatcherError as e:  # the password is set; sessions end when the service reloads
        err_console.print(
            f"[yellow]warning:[/] the database could not be updated ({e}): sessions end when "
            "the service re-reads config.toml, and this change is not in the audit log."
        )
    console.print(
        f"Password set for [bold]{cfg.web.admin_user}[/] in {path}. Every admin session has "
        "ended; a running service uses the new password once it re-reads config.toml.",
        highlight=False,
    )


@admin.command("revoke-sessions")
@click.option("--user", help="End only this user's sessions.")
@click.pass_obj
@handle_errors
def revoke_sessions(ctx: Ctx, user: str | None) -> None:
    """End every admin session (or one user's): their cookies open nothing afterwards."""
    app = ctx.app
    ended = app.storage.end_sessions(app.now(), user)
    app.storage.audit(
        "cli", "admin.revoke_sessions", user or "*", {"sessions_ended": ended}, app.now()
    )
    who = f" of {user}" if user else ""
    console.print(f"Ended {ended} admin session(s){who}.", highlight=False)


@admin.command("audit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry per line.")
@click.pass_obj
@handle_errors
def audit(ctx: Ctx, limit: int, as_json: bool) -> None:
    """The audit log, newest first: who changed what, when (secrets redacted)."""
    from rich.table import Table

    entries = ctx.app.storage.audit_entries(limit)
    if as_json:
        for e in entries:
            print_json({**e, "at": e["at"].isoformat()})
        return
    table = Table(title=f"Audit log ({len(entries)})")
    for col in ("when", "who", "action", "target", "details"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            fmt_time(e["at"]), e["actor"], e["action"], e["target"], audit_details(e.get("details"))
        )
    console.print(table)


def audit_details(details: Any) -> str:
    """An audit entry's details with their values (secrets are redacted when recorded): a
    change as ``field: old → new``, anything else as ``key: value``."""
    if not isinstance(details, dict):
        return "" if details is None else str(details)
    parts: list[str] = []
    changes = details.get("changes")
    if isinstance(changes, dict):
        for field, change in sorted(changes.items()):
            if isinstance(change, dict) and ("old" in change or "new" in change):
                parts.append(f"{field}: {_shown(change.get('old'))} → {_shown(change.get('new'))}")
            else:
                parts.append(f"{field}: {_shown(change)}")
    for key, value in details.items():
        if key != "changes":
            parts.append(f"{key}: {_shown(value)}")
    return "; ".join(parts)


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, list | tuple):
        return ", ".join(_shown(v) for v in value) or "–"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    return str(value)
