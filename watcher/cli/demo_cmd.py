"""``watcher demo``: the service on a temporary database filled with sample data."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port.")
def demo(host: str, port: int) -> None:
    """Run the service on sample data in a temporary folder; nothing is kept."""
    raise click.ClickException("not ready yet")
