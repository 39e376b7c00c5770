"""What every adapter is: a kind, an ``Options`` schema, ``fetch`` (I/O) and ``parse`` (pure).

An adapter's class docstring is its user-facing help (``watcher sources kinds`` and the
docs show it). ``Options`` is a pydantic model that rejects unknown keys, filled from the
source's ``[sources.options]`` table.

``fetch`` gets the guarded HTTP client (``watcher.http.HttpClient``) and a ``FetchContext``
(conditional-GET state, what is already stored for this source) and returns a ``Fetched``
value. ``parse`` turns one page's bytes into ``RawItem`` values without any I/O, so golden
tests need no network. Adapters raise ``ParseError`` for a body they cannot read;
``FetchError`` comes from the HTTP client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from watcher.types import CacheState, Fetched, FetchStatus, Page, RawItem, Status

if TYPE_CHECKING:
    from watcher.config import SourceConfig
    from watcher.http import HttpClient


class Options(BaseModel):
    """Base for adapter options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class FetchContext:
    """What a fetch may know about earlier polls of its source."""

    cache: CacheState = field(default_factory=CacheState)
    # Stored items of this source: key -> status (to re-check open calls' detail pages).
    known: Mapping[str, Status | None] = field(default_factory=dict)
    # Stored items of this source: key -> tracked values (title, summary, …), oldest first.
    previous: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class Adapter:
    """Base adapter: one conditional GET of the source URL, ``parse`` over the body."""

    kind: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    # Fields that, once items of this source usually have them, should not vanish
    # (layout-change detection compares against this list).
    expected_fields: ClassVar[tuple[str, ...]] = ("title", "link")
    # What ``fetch`` needs from storage (loaded only when asked, to keep 304 polls cheap):
    needs_known: ClassVar[bool] = False  # FetchContext.known (stored statuses)
    needs_previous: ClassVar[bool] = False  # FetchContext.previous (stored values)

    def __init__(self, source: SourceConfig) -> None:
        self.source = source
        self.options = self.Options.model_validate(source.options)

    async def fetch(self, http: HttpClient, ctx: FetchContext) -> Fetched:
        resp = await http.get(self.source.url, cache=ctx.cache)
        if resp.not_modified:
            return Fetched.not_modified(resp.cache)
        return Fetched(FetchStatus.OK, (resp.page,), resp.cache)

    def parse(self, page: Page) -> list[RawItem]:  # pure
        raise NotImplementedError

    def parse_fetched(self, fetched: Fetched) -> list[RawItem]:
        """All items of a fetch: ``parse`` over each page, one item per key (pages and
        listings overlap; the first wins). Adapters with detail pages override this to
        merge them. Pure."""
        out: dict[str, RawItem] = {}
        for page in fetched.pages:
            for item in self.parse(page):
                out.setdefault(item.key, item)
        return list(out.values())

    def filters_items(self) -> bool:
        """Whether this source drops entries by its options (keywords, regions): then a
        poll with no items is not by itself a sign of a changed layout."""
        o = self.options
        return bool(
            getattr(o, "include", None)
            or getattr(o, "exclude", None)
            or getattr(o, "regions", None)
        )

    @classmethod
    def help(cls) -> str:
        return (cls.__doc__ or "").strip()
