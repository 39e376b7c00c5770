"""Test-fetch a source without storing anything (CLI ``sources test``, admin preview)."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sources import registry
from sources.base import FetchContext
from watcher.exceptions import SourceFailure
from watcher.pipeline.layout import check_layout
from watcher.pipeline.normalise import normalise
from watcher.types import Fetched, FetchStatus, Item, Page, SourceError, SourceState

if TYPE_CHECKING:
    from watcher.app import App
    from watcher.config import SourceConfig
    from watcher.http import HttpClient


@dataclass(frozen=True)
class Preview:
    items: list[Item] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: SourceError | None = None


async def preview_source(
    app: App, source: SourceConfig, file_path: Path | None = None, http: HttpClient | None = None
) -> Preview:
    """Fetch (or read ``file_path``), parse and normalise; never writes to the database."""
    try:
        adapter = registry.get(source.kind)(source)
    except KeyError:
        return Preview(error=SourceError("config_error", f"unknown adapter kind {source.kind!r}"))
    try:
        if file_path is not None:
            ctype = mimetypes.guess_type(file_path.name)[0] or ""
            page = Page(url=source.url, content=file_path.read_bytes(), content_type=ctype)
            fetched = Fetched(FetchStatus.OK, (page,))
        else:
            own = http is None
            client = http or app.new_http_client()
            try:
                fetched = await adapter.fetch(client, FetchContext())
            finally:
                if own:
                    await client.aclose()
        raws = adapter.parse_fetched(fetched)
    except SourceFailure as e:
        return Preview(error=SourceError(e.code, str(e)))
    except OSError as e:
        return Preview(error=SourceError("read_error", str(e)))
    now = app.now()
    items: list[Item] = []
    warnings: list[str] = []
    for raw in raws:
        try:
            items.append(normalise(raw, source, now, app.config.tz))
        except Exception as e:  # shown to the admin, never raised
            warnings.append(f"an item could not be read: {e}")
    layout = check_layout(
        SourceState(source_id=source.id), items, adapter.kind, filtered=adapter.filters_items()
    )
    warnings.extend(layout.warnings)
    return Preview(items=items, warnings=warnings)
