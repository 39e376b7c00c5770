"""The ``watcher`` command line: the service and every job by hand.

Exit codes: 0 success (``poll`` also when some sources failed: that is news, not a usage
error); 1 a check found problems (``check-config``, ``rules check``); 2 a usage or config
error.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import signal
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from sources.registry import load_config
from watcher import calls
from watcher import config as config_mod
from watcher.exceptions import ConfigError, StorageError, WatcherError
from watcher.types import PollResult, StoredItem

# Piped output is not squeezed into 80 columns: tables keep their columns whole.
console = Console(width=None if sys.stdout.isatty() else 240)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


class Ctx:
    """Lazily builds the App, so `--help` and `check-config` work without a database."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from watcher.app import App

            self._app = App.from_path(self.config_path)
            self._app.storage.ensure_schema()
        return self._app


def handle_errors(fn: F) -> F:
    """Config errors and storage errors end as a clear message and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            err_console.print(f"[bold red]Configuration error[/] {e.source or ''}")
            for p in e.problems:
                err_console.print(f"  • {p}", markup=False, highlight=False)
            sys.exit(2)
        except StorageError as e:
            err_console.print(f"[bold red]Database error:[/] {e}", highlight=False)
            sys.exit(2)
        except WatcherError as e:
            err_console.print(f"[bold red]Error:[/] {e}", highlight=False)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


class _LazyGroup(click.Group):
    """``main``: the groups that live in their own modules (``rules``, ``admin``,
    ``digest``, ``deliveries``, ``demo``) are imported when asked for by name or when the
    commands are listed (``--help``), not on every start: a ``watcher poll`` does not load
    the rule checker, the web's auth or the demo."""

    ELSEWHERE = {
        "rules": "watcher.cli.rules_cmd:rules",
        "admin": "watcher.cli.admin_cmd:admin",
        "digest": "watcher.cli.digest_cmd:digest",
        "deliveries": "watcher.cli.digest_cmd:deliveries",
        "demo": "watcher.cli.demo_cmd:demo",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.ELSEWHERE})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self.ELSEWHERE.get(cmd_name)
        if where is not None and cmd_name not in self.commands:
            module, attr = where.split(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar=config_mod.ENV_CONFIG,
    type=click.Path(dir_okay=False),
    help="Config file (default: ./config.toml; also WATCHER_CONFIG).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """EU-bevakning: watches EU funding and policy sources and tells the right people."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    ctx.obj = Ctx(config_path)


pass_ctx = click.make_pass_decorator(Ctx)


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from watcher.dates import parse_date

    dt = parse_date(value)
    if dt is None:
        raise click.BadParameter(f"{value!r} is not a date (use YYYY-MM-DD)")
    return dt


def fmt_time(dt: datetime | None, tz: Any = None) -> str:
    if dt is None:
        return "–"
    from watcher.dates import STOCKHOLM

    return dt.astimezone(tz or STOCKHOLM).strftime("%Y-%m-%d %H:%M")


def local_iso(dt: datetime | None, tz: Any = None) -> str | None:
    """ISO 8601 in local time (``[watcher] timezone``) with its offset:
    "2027-03-16T23:59:59+01:00" reads as the 16th, as the source wrote it; in UTC it would
    read as another day."""
    if dt is None:
        return None
    from watcher.dates import STOCKHOLM

    return dt.astimezone(tz or STOCKHOLM).isoformat()


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


# -- run -------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Address to serve on (default from [web], 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default from [web], 8000).")
@click.option("--no-scheduler", is_flag=True, help="Serve the web only; run no jobs.")
@pass_ctx
@handle_errors
def run(ctx: Ctx, host: str | None, port: int | None, no_scheduler: bool) -> None:
    """Run the service: scheduler and web, until SIGTERM or Ctrl-C."""
    import uvicorn

    from watcher.pipeline.work import settle_heap
    from watcher.web.app import create_app

    app = ctx.app
    web = create_app(app, run_scheduler=not no_scheduler)
    settle_heap()
    cfg = app.config
    h, p = host or cfg.web.host, port or cfg.web.port
    console.print(
        f"EU-bevakning on http://{h}:{p}  ·  database {_redacted(cfg.watcher.database_url)}  ·  "
        f"email: {cfg.email.backend}  ·  {len([s for s in cfg.sources if s.enabled])} sources",
        soft_wrap=True,  # one line: the terminal wraps it, never rich mid-word
        highlight=False,
    )
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal; after a clean
    # shutdown that is a normal end, so it exits 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(web, host=h, port=p, log_level="info", lifespan="on", timeout_graceful_shutdown=30)


def _redacted(url: str) -> str:
    from watcher.storage.base import redact_url

    return redact_url(url)


# -- poll ------------------------------------------------------------------------------


# A poll of more sources than this lists only those with something to tell (new or
# updated items, an error, a warning); --all lists every one.
QUIET_ROWS = 25


@main.command()
@click.argument("source_ids", nargs=-1, metavar="[SOURCE]...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source per line.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help=f"List every source (above {QUIET_ROWS} sources, quiet ones are counted, not listed).",
)
@pass_ctx
@handle_errors
def poll(ctx: Ctx, source_ids: tuple[str, ...], as_json: bool, show_all: bool) -> None:
    """Poll sources now (all enabled ones, or those named)."""
    from watcher.pipeline.work import settle_heap

    app = ctx.app
    sources = app.sources(list(source_ids))
    settle_heap(freeze=True)  # this process ends after its polls
    if as_json:
        results = asyncio.run(app.poll([s.id for s in sources]))
        app.refresh_statuses()
        for r in results:
            print_json(r.as_dict())
        return
    if err_console.is_terminal:
        from rich.progress import Progress

        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task("Polling", total=len(sources))
            results = asyncio.run(
                app.poll([s.id for s in sources], progress=lambda _r: progress.advance(task))
            )
    else:  # no one watches a bar (cron, a pipe): no bar, and no thread redrawing it
        results = asyncio.run(app.poll([s.id for s in sources]))
    app.refresh_statuses()
    table = Table(title="Poll")
    for col in ("source", "status", "new", "updated", "unchanged", "error / warning"):
        table.add_column(col, justify="right" if col in ("new", "updated", "unchanged") else "left")
    # Above QUIET_ROWS sources the table stays readable: errors and warnings are always
    # listed, sources with news only while they are few (a first poll of 2,000 sources
    # has news from each, and drawing that table took a second), quiet ones never.
    big = not show_all and len(results) > QUIET_ROWS
    rows: list[tuple[PollResult, str]] = []
    quiet = 0
    for r in results:
        note = f"{r.error.code}: {r.error.message}" if r.error else "; ".join(r.warnings)
        if r.announced is not None:
            first = f"first poll: {r.announced} open call(s) announced, {r.baselined} kept silent"
            note = f"{first}; {note}" if note else first
        if big and not (note or r.new or r.updated):
            quiet += 1
            continue
        rows.append((r, note))
    news = [r for r, _note in rows if not (r.error or r.warnings)]
    unlisted = len(news) if big and len(news) > QUIET_ROWS else 0
    for r, note in rows:
        if unlisted and not (r.error or r.warnings):
            continue
        style = {
            "ok": "green",
            "partial": "yellow",
            "not_modified": "cyan",
            "skipped": "yellow",
            "error": "red",
        }[r.status.value]
        status = "not modified" if r.status.value == "not_modified" else r.status.value
        table.add_row(
            r.source_id, f"[{style}]{status}[/]", str(r.new), str(r.updated), str(r.unchanged), note
        )
    if table.rows:
        console.print(table)
    counts = Counter(r.status.value for r in results)
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
    console.print(
        f"{len(results)} source(s): {summary}; {sum(r.new for r in results)} new item(s)"
        + (f"; {unlisted} source(s) with news not listed" if unlisted else "")
        + (f"; {quiet} quiet source(s) not listed" if quiet else "")
        + ("; --all lists them" if quiet or unlisted else "")
    )


# -- items -----------------------------------------------------------------------------


@main.group()
def items() -> None:
    """Look at stored items."""


def item_json(it: StoredItem, now: datetime, tz: Any = None) -> dict[str, Any]:
    """An item as ``items list/show --json`` print it: status and next deadline at ``now``
    (``watcher.calls``), as every surface shows them."""
    return {
        "id": it.id,
        "title": it.title,
        "link": it.link,
        "kind": it.kind,
        "status": calls.status(it, now),
        "programme": it.programme,
        "identifier": it.identifier,
        "opening": local_iso(it.opening, tz),
        "next_deadline": local_iso(calls.next_deadline(it, now), tz),
        "deadlines": [local_iso(d, tz) for d in sorted(it.deadlines)],
        "budget": it.budget,
        "language": it.language,
        "relevant": it.relevant,
        "first_seen": local_iso(it.first_seen, tz),
        "areas": it.tag_ids("area"),
        "themes": it.tag_ids("theme"),
        "sources": [{"source": s.source_id, "key": s.key, "link": s.link} for s in it.sources],
        "summary": it.summary,
    }


@items.command("list")
@click.option("--source", help="Only items from this source.")
@click.option("--since", help="Only items first seen on or after this date (YYYY-MM-DD).")
@click.option("--area", help="Only items with this area.")
@click.option("--theme", help="Only items with this theme.")
@click.option("--status", type=click.Choice(["forthcoming", "open", "closed"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per item per line.")
@pass_ctx
@handle_errors
def items_list(
    ctx: Ctx,
    source: str | None,
    since: str | None,
    area: str | None,
    theme: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List stored items, newest first."""
    from watcher.storage import ItemFilter

    f = ItemFilter(
        source=source, since=parse_since(since), area=area, theme=theme, status=status, limit=limit
    )
    found = ctx.app.storage.list_items(f)
    now = ctx.app.now()
    if as_json:
        for it in found:
            print_json(item_json(it, now, ctx.app.config.tz))
        return
    total = ctx.app.storage.count_items(f) if len(found) == limit else len(found)
    title = f"Items ({len(found)})" if total == len(found) else f"Items ({len(found)} of {total})"
    table = Table(title=title)
    for col in ("id", "title", "status", "deadline", "areas", "source", "first seen"):
        table.add_column(col)
    for it in found:
        table.add_row(
            str(it.id),
            shorten(it.title, 80),
            calls.status(it, now) or "–",
            fmt_time(calls.next_deadline(it, now)),
            ", ".join(it.tag_ids("area")) or "–",
            ", ".join(sorted({s.source_id for s in it.sources})),
            fmt_time(it.first_seen),
        )
    console.print(table)
    if total > len(found):
        err_console.print(
            f"{total - len(found)} more not shown: use --limit (up to 10000) or narrow the filters."
        )


def shorten(text: str, width: int) -> str:
    """A title cut at a word boundary, with an ellipsis when cut."""
    return textwrap.shorten(text, width, placeholder=" …") if len(text) > width else text


@items.command("show")
@click.argument("item_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def items_show(ctx: Ctx, item_id: int, as_json: bool) -> None:
    """Show one item: its call record, sources, tags with why, and history."""
    storage = ctx.app.storage
    it = storage.get_item(item_id)
    if it is None:
        err_console.print(f"No item {item_id}.")
        sys.exit(2)
    history = storage.item_history(item_id)
    now = ctx.app.now()
    if as_json:
        data = item_json(it, now, ctx.app.config.tz)
        data["tags"] = [
            {"kind": t.kind, "tag": t.tag, "rule": t.rule_id, "evidence": list(t.evidence)}
            for t in it.tags
        ]
        data["history"] = [
            {
                "at": h.at.isoformat(),
                "source": h.source_id,
                "kind": h.kind,
                "changes": list(h.changes),
            }
            for h in history
        ]
        print_json(data)
        return
    console.print(f"[bold]{it.title}[/]", highlight=False)
    rows = [
        ("Länk", it.link),
        ("Typ", it.kind),
        ("Status", calls.status(it, now) or "–"),
        ("Program", it.programme or "–"),
        ("Id", it.identifier or "–"),
        ("Öppnar", fmt_time(it.opening)),
        ("Nästa sista dag", fmt_time(calls.next_deadline(it, now))),
        ("Sista dagar", ", ".join(fmt_time(d) for d in sorted(it.deadlines)) or "–"),
        ("Budget", it.budget or "–"),
        ("Relevant", "ja" if it.relevant else "nej"),
        ("Först sedd", fmt_time(it.first_seen)),
    ]
    for label, value in rows:
        console.print(f"  {label:<11} {value}", highlight=False, markup=False)
    console.print("\n[bold]Källor[/]")
    for s in it.sources:
        console.print(f"  • {s.source_id}: {s.link or s.key}", markup=False, highlight=False)
    console.print("\n[bold]Taggar och varför[/]")
    if not it.tags:
        console.print("  (inga)")
    for t in it.tags:
        console.print(f"  • {t.kind} {t.tag}: {t.why()}", markup=False, highlight=False)
    console.print("\n[bold]Historik[/]")
    from notifications.wording import sentences

    for h in history:
        # Said as on the item page and in the digest: whole sentences, local time.
        said = sentences(h.changes, "sv", ctx.app.config.tz)
        console.print(
            f"  {fmt_time(h.at)} {h.kind} ({h.source_id or 'kalendern'})",
            markup=False,
            highlight=False,
        )
        for line in said:
            console.print(f"      {line}", markup=False, highlight=False, soft_wrap=True)
    if it.summary:
        console.print("\n" + it.summary[:1500], markup=False, highlight=False)


# -- sources ---------------------------------------------------------------------------


@main.group()
def sources() -> None:
    """Sources: health, test a fetch, adapter kinds."""


@sources.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def sources_list(ctx: Ctx, as_json: bool) -> None:
    """Every configured source with its health."""
    app = ctx.app
    states = app.storage.source_states()
    from watcher.types import SourceState

    rows = []
    for s in app.config.sources:
        st = states.get(s.id) or SourceState(source_id=s.id)
        rows.append((s, st))
    if as_json:
        for s, st in rows:
            print_json(
                {
                    "id": s.id,
                    "name": s.name,
                    "kind": s.kind,
                    "url": s.url,
                    "enabled": s.enabled,
                    "schedule": s.schedule,
                    "last_success": st.last_success_at.isoformat() if st.last_success_at else None,
                    "last_error": (
                        {
                            "at": st.last_error_at.isoformat() if st.last_error_at else None,
                            "code": st.last_error_code,
                            "message": st.last_error_message,
                        }
                        if st.last_error_code
                        else None
                    ),
                    "consecutive_failures": st.consecutive_failures,
                    "items": st.item_count,
                    "warning": st.warning,
                }
            )
        return
    table = Table(title="Sources")
    for col in ("id", "kind", "on", "last success", "last error", "fails", "items", "warning"):
        table.add_column(col)
    for s, st in rows:
        err = f"{st.last_error_code} ({fmt_time(st.last_error_at)})" if st.last_error_code else "–"
        table.add_row(
            s.id,
            s.kind,
            "yes" if s.enabled else "no",
            fmt_time(st.last_success_at),
            err,
            f"[red]{st.consecutive_failures}[/]" if st.consecutive_failures else "0",
            str(st.item_count),
            f"[yellow]{st.warning}[/]" if st.warning else "",
        )
    console.print(table)


def option_default(fld: Any) -> str:
    """An option's default as a person reads it: a default made by a factory is shown as
    the value the factory makes, not as pydantic's marker for "no plain default"."""
    if fld.default_factory is not None:
        return repr(fld.default_factory())
    return repr(fld.default)


@sources.command("kinds")
def sources_kinds() -> None:
    """The adapter kinds, with their help and options."""
    from sources import registry

    for kind, cls in registry.all_adapters().items():
        console.print(f"[bold]{kind}[/]")
        console.print("  " + cls.help().replace("\n", "\n  "), markup=False, highlight=False)
        for name, fld in cls.Options.model_fields.items():
            default = "required" if fld.is_required() else option_default(fld)
            desc = fld.description or ""
            console.print(f"    {name} ({default}) {desc}", markup=False, highlight=False)
        console.print()


@sources.command("test")
@click.argument("source_id")
@click.option(
    "--file",
    "file_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Parse a saved response instead of fetching.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per parsed item.")
@pass_ctx
@handle_errors
def sources_test(ctx: Ctx, source_id: str, file_path: Path | None, as_json: bool) -> None:
    """Fetch a source (or read a saved response) and show the parsed items; store nothing."""
    from watcher.preview import preview_source

    app = ctx.app
    src = app.sources([source_id], include_disabled=True)[0]
    preview = asyncio.run(preview_source(app, src, file_path))
    if preview.error is not None:
        if as_json:
            print_json({"error": preview.error.as_dict()})
        else:
            err_console.print(
                f"[red]{preview.error.code}[/]: {preview.error.message}", highlight=False
            )
        sys.exit(1)
    if as_json:
        for it in preview.items:
            print_json(
                {
                    "key": it.key,
                    "title": it.title,
                    "link": it.link,
                    "kind": it.kind.value,
                    "status": it.status.value if it.status else None,
                    "opening": local_iso(it.opening, app.config.tz),
                    "deadlines": [local_iso(d, app.config.tz) for d in it.deadlines],
                    "programme": it.programme,
                    "identifier": it.identifier,
                    "budget": it.budget,
                    "regions": list(it.regions),
                    "language": it.language,
                }
            )
        return
    table = Table(title=f"{src.id}: {len(preview.items)} items (not stored)")
    for col in ("title", "status", "opening", "deadline", "programme", "link"):
        table.add_column(col)
    for it in preview.items:
        table.add_row(
            shorten(it.title, 70),
            it.status.value if it.status else "–",
            fmt_time(it.opening),
            ", ".join(fmt_time(d) for d in it.deadlines) or "–",
            it.programme or "–",
            it.link[:60],
        )
    console.print(table)
    for w in preview.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)


# -- config and database ---------------------------------------------------------------


@main.command("check-config")
@click.pass_context
def check_config(click_ctx: click.Context) -> None:
    """Validate config.toml; every problem with its key path (exit 1 when any)."""
    ctx: Ctx = click_ctx.obj
    path = config_mod.config_path(ctx.config_path)
    try:
        cfg = load_config(ctx.config_path)
    except ConfigError as e:
        err_console.print(f"[bold red]{len(e.problems)} problem(s)[/] in {path}:")
        for p in e.problems:
            err_console.print(f"  • {p}", markup=False, highlight=False)
        sys.exit(1)
    problems: list[str] = []
    try:
        from watcher.classify import RulesClassifier

        rc = RulesClassifier.from_config(cfg)
        if rc.error is not None:
            problems.append(f"rules: {rc.error}")
    except WatcherError as e:
        problems.append(f"rules: {e}")
    if problems:
        for problem in problems:
            err_console.print(f"  • {problem}", markup=False, highlight=False)
        sys.exit(1)
    console.print(
        f"[green]OK[/] {path if path.exists() else '(built-in defaults)'}: "
        f"{len(cfg.sources)} sources, {len(cfg.networks)} networks"
    )


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
@handle_errors
def db_upgrade(click_ctx: click.Context) -> None:
    """Migrate the database schema to the newest version."""
    from watcher.storage import Storage

    ctx: Ctx = click_ctx.obj
    cfg = config_mod.load(ctx.config_path)
    storage = Storage(cfg.watcher.database_url, cfg.base_dir)
    before = storage.revision()
    storage.upgrade()
    console.print(f"database at revision {storage.revision()} (was {before or 'empty'})")
