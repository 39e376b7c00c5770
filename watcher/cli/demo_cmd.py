"""``watcher demo``: the whole service on sample data, in one command, keeping nothing.

It makes a temporary folder (config.toml, the SQLite database, the outbox), starts the
demo's sample feeds on a loopback port, fills the database through the real pipeline
(``watcher.demo.seed``), and then starts the service as ``watcher run`` does (the same
``create_app`` with the scheduler, the same uvicorn call and SIGTERM handling). When it
stops (Ctrl-C, SIGTERM) the folder is removed.

The admin password is ``WATCHER_ADMIN_PASSWORD`` when set, otherwise a new random one; it is
printed, and only its hash is written (to the temporary config.toml).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import click

from watcher.cli import console, handle_errors

PASSWORD_ENV = "WATCHER_ADMIN_PASSWORD"


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port.")
@handle_errors
def demo(host: str, port: int) -> None:
    """Run the service on sample data in a temporary folder; nothing is kept.

    Calls (two-stage, forthcoming, open, closed), consultations, news, an event, a partner
    search, a call two sources saw, a deadline that moved, networks with members (email
    written to files) and source health with a failure: everything a real run would store,
    with dates relative to today. The sources are served from a loopback port, so nothing is
    fetched from the internet."""
    import uvicorn

    from watcher.app import App
    from watcher.demo import SampleFeeds, config_data, seed, write_config
    from watcher.web.app import create_app
    from watcher.web.auth import MIN_PASSWORD_LENGTH, hash_password

    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(12)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.UsageError(
            f"{PASSWORD_ENV} must have at least {MIN_PASSWORD_LENGTH} characters"
        )
    root = Path(tempfile.mkdtemp(prefix="watcher-demo-"))
    app: App | None = None
    try:
        base_url = f"http://{host}:{port}"
        with SampleFeeds() as feeds:
            data = config_data(
                root, feeds.url, feeds.allow_entry, base_url, hash_password(password)
            )
            app = App.from_path(write_config(root / "config.toml", data))
            app.storage.ensure_schema()
            console.print("Filling the demo database …", highlight=False)
            report = seed(app)
            feeds.publish(report.now)
            web = create_app(app, run_scheduler=True)
            console.print(
                "\n".join(
                    [
                        f"[bold]EU-bevakning DEMO[/] on {base_url}  ·  sample data, "
                        f"{report.items} items from {len(app.config.sources)} sources",
                        f"  admin:    {base_url}/admin  user [bold]{app.config.web.admin_user}[/]"
                        f"  password [bold]{password}[/]",
                        f"  email:    written to files in {root / 'outbox'} "
                        f"({report.digests_sent} digest emails sent)",
                        f"  data:     {root} (temporary: removed when the demo stops, "
                        "nothing is kept)",
                        "  sources:  served from a loopback port; nothing is fetched from the "
                        "internet. Stop with Ctrl-C.",
                    ]
                ),
                highlight=False,
                soft_wrap=True,
            )
            # As `watcher run`: uvicorn re-raises SIGTERM after its graceful shutdown.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            uvicorn.run(
                web,
                host=host,
                port=port,
                log_level="info",
                lifespan="on",
                timeout_graceful_shutdown=30,
            )
    except KeyboardInterrupt:
        pass
    finally:
        if app is not None:
            app.close()
        shutil.rmtree(root, ignore_errors=True)
        console.print(f"Demo stopped; removed {root}.", highlight=False)
