"""The types each pipeline stage hands to the next.

The flow, and the name of what crosses each arrow::

    adapter.fetch ──▶ Fetched(pages: Page…)          (I/O, sources/*)
    adapter.parse ──▶ RawItem…                       (pure, strings as found)
    normalise     ──▶ Item                           (pure: text, dates, enums, hash)
    track.decide  ──▶ Intent: NewItem | Linked | Updated | Unchanged   (pure: old + new)
    merge.merge   ──▶ RecordWrite                    (pure: stored record + intent + now)
    storage.apply ──▶ StoredItem                     (the only writer)

``StoredItem`` and the other stored types are here, not in storage, so that the pure
pipeline, the calls core (``watcher.calls``) and every surface share them without
importing storage.

A poll of one source ends as a ``PollResult``: either counts, or a ``SourceError``
value. "Not modified" is a status, never an exception.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

from watcher.text import title_numbers, title_words


class Status(enum.StrEnum):
    """Lifecycle of a call or consultation."""

    FORTHCOMING = "forthcoming"
    OPEN = "open"
    CLOSED = "closed"


class Kind(enum.StrEnum):
    """What an item is."""

    CALL = "call"
    FORTHCOMING_CALL = "forthcoming_call"
    CONSULTATION = "consultation"
    EVENT = "event"
    NEWS = "news"
    PARTNER_SEARCH = "partner_search"
    PAGE_CHANGE = "page_change"


DateLike = str | date | datetime


@dataclass(frozen=True)
class Page:
    """One HTTP response body as fetched (or read from a saved file)."""

    url: str
    content: bytes
    content_type: str = ""
    encoding: str | None = None  # from the Content-Type header, if any
    headers: Mapping[str, str] = field(default_factory=dict)
    status_code: int = 200


@dataclass(frozen=True)
class CacheState:
    """What a source remembers between polls for conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


class FetchStatus(enum.StrEnum):
    OK = "ok"
    NOT_MODIFIED = "not_modified"


@dataclass(frozen=True)
class Fetched:
    """What an adapter's fetch returns: pages to parse, or 'not modified'."""

    status: FetchStatus
    pages: tuple[Page, ...] = ()
    cache: CacheState = field(default_factory=CacheState)
    # Adapters that fetch extra pages (details) for some items say so here: key -> Page.
    details: Mapping[str, Page] = field(default_factory=dict)
    # What fetch learnt from earlier polls that the pure parse needs (e.g. a watched
    # page's previous text, to say what changed).
    context: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def not_modified(cls, cache: CacheState) -> Fetched:
        return cls(FetchStatus.NOT_MODIFIED, (), cache)


@dataclass(frozen=True)
class Incomplete:
    """What an item lacks because part of its source failed (a detail page that answered
    503 or timed out) or was left for later: the fields that are unknown, not empty."""

    reason: str  # for people: "detail page failed: http_503 …"
    missing: tuple[str, ...]  # tracked fields not known ("status", "deadlines", …)
    error: str | None = None  # the error code when a fetch failed (the poll is partial)

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "missing": list(self.missing), "error": self.error}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> Incomplete | None:
        if not value:
            return None
        return cls(
            str(value.get("reason", "")), tuple(value.get("missing") or ()), value.get("error")
        )


@dataclass(frozen=True)
class RawItem:
    """An item as an adapter found it: strings as on the page, or values the format
    already types (a JSON API's dates). ``normalise`` turns it into an ``Item``."""

    key: str
    title: str
    link: str = ""
    summary: str = ""  # plain text or HTML (see summary_is_html)
    summary_is_html: bool = False
    language: str | None = None
    kind: str | None = None
    programme: str | None = None
    identifier: str | None = None  # a call identifier shared across sources, if any
    status: str | None = None
    published: DateLike | None = None
    opening: DateLike | None = None
    deadlines: tuple[DateLike, ...] = ()
    budget: str | None = None
    budget_amount: float | None = None
    currency: str | None = None
    regions: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    incomplete: Incomplete | None = None


@dataclass(frozen=True)
class Item:
    """A normalised item: plain text, aware datetimes (UTC), enums, content hash."""

    source_id: str
    key: str
    title: str
    link: str
    summary: str
    language: str
    kind: Kind
    status: Status | None
    programme: str | None
    identifier: str | None
    published: datetime | None
    opening: datetime | None
    deadlines: tuple[datetime, ...]
    budget: str | None
    budget_amount: float | None
    currency: str | None
    regions: tuple[str, ...]
    topics: tuple[str, ...]
    content_hash: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    incomplete: Incomplete | None = None

    @property
    def deadline(self) -> datetime | None:
        """The next deadline that has not passed is not knowable without ``now``;
        this is the last (final) deadline, the one that closes the call."""
        return max(self.deadlines) if self.deadlines else None


# The fields whose change makes an item "updated" (and is recorded with old/new values).
TRACKED_FIELDS: tuple[str, ...] = (
    "title",
    "link",
    "summary",
    "status",
    "kind",
    "programme",
    "opening",
    "deadlines",
    "budget",
    "regions",
)

# Of those, the ones a digest reports as an update (a reworded summary alone is not news).
NOTABLE_FIELDS: frozenset[str] = frozenset(
    {"title", "status", "opening", "deadlines", "budget", "programme", "link"}
)


def tracked_values(item: Item) -> dict[str, Any]:
    """The TRACKED_FIELDS of an item as JSON-ready values (also what storage keeps)."""
    return {
        "title": item.title,
        "link": item.link,
        "summary": item.summary,
        "status": item.status.value if item.status else None,
        "kind": item.kind.value,
        "programme": item.programme,
        "opening": item.opening.isoformat() if item.opening else None,
        "deadlines": [d.isoformat() for d in item.deadlines],
        "budget": item.budget,
        "regions": list(item.regions),
    }


# -- what storage keeps ------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceState:
    """What is remembered of a source between polls (and shown as its health)."""

    source_id: str
    etag: str | None = None
    last_modified: str | None = None
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    consecutive_failures: int = 0
    next_attempt_at: datetime | None = None
    last_parsed: int | None = None
    warning: str | None = None
    baseline_done: bool = False
    field_profile: Mapping[str, float] = field(default_factory=dict)
    item_count: int = 0


@dataclass(frozen=True, slots=True)
class SourceTrouble:
    """What a source's stored state says of its problems: what the admin alerts read of
    every polled source after a cycle (``Storage.source_troubles``), without the rest of
    its state."""

    consecutive_failures: int = 0
    last_error_code: str | None = None
    last_error_message: str | None = None
    warning: str | None = None


@dataclass(frozen=True)
class StoredTag:
    kind: str
    tag: str
    rule_id: str
    evidence: tuple[Mapping[str, str], ...]
    score: float

    def why(self) -> str:
        ev = "; ".join(f"{e.get('field')}: «{e.get('matched')}»" for e in self.evidence)
        return f"{self.rule_id} ({ev})" if ev else self.rule_id


@dataclass(frozen=True)
class SourceLink:
    """One source's entry for a stored item (a call several sources list has several)."""

    source_id: str
    key: str
    link: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class StoredItem:
    """An item as stored: the call record, its tags and its sources. ``status`` is the
    stored one (as of the last poll or status refresh); surfaces show
    ``watcher.calls.status(item, now)``."""

    id: int
    uid: str
    source_id: str
    title: str
    link: str
    summary: str
    language: str
    kind: Kind
    status: Status | None
    programme: str | None
    identifier: str | None
    published: datetime | None
    opening: datetime | None
    deadline: datetime | None  # the last deadline (the one that closes the call)
    deadlines: tuple[datetime, ...]
    budget: str | None
    budget_amount: float | None
    currency: str | None
    regions: tuple[str, ...]
    topics: tuple[str, ...]
    relevant: bool
    first_seen: datetime
    last_seen: datetime
    changed_at: datetime | None
    baseline: bool
    held: bool
    extra: Mapping[str, Any]
    released_at: datetime | None = None
    incomplete: Incomplete | None = None
    tags: tuple[StoredTag, ...] = ()
    sources: tuple[SourceLink, ...] = ()

    def tag_ids(self, kind: str) -> list[str]:
        return [t.tag for t in self.tags if t.kind == kind]


@dataclass(frozen=True)
class ItemChange:
    """One entry of an item's history: what a poll, a merge or a status refresh changed."""

    at: datetime
    source_id: str
    kind: str
    changes: tuple[Mapping[str, Any], ...]
    notable: bool


@dataclass(frozen=True)
class DupCandidate:
    """A stored item from another source that a new item might be the same call as."""

    item_id: int
    source_ids: frozenset[str]
    identifier: str | None
    title: str
    days: frozenset[str]  # deadline days as UTC ISO dates ("2027-03-16")
    tokens: frozenset[str] = frozenset()  # title_words(title); made when not given
    numbers: tuple[str, ...] = ()  # the numbers of the title, in order (title_numbers)
    named: frozenset[str] = frozenset()  # identifiers its title names (a news item on a call)

    def __post_init__(self) -> None:
        # Plain attributes, not cached properties: these are read for every candidate of
        # every new item, and a cached property takes a lock on each first read.
        if not self.tokens and self.title:
            words = title_words(self.title)
            object.__setattr__(self, "tokens", frozenset(words))
            if not self.numbers:
                object.__setattr__(self, "numbers", title_numbers(words))


@dataclass(frozen=True)
class StoredSlice:
    """The part of a stored item that change tracking needs."""

    item_id: int
    source_id: str
    key: str
    content_hash: str
    values: Mapping[str, Any]  # TRACKED_FIELDS as stored (JSON-ready values)


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


class IntentKind(enum.StrEnum):
    """How a poll counts an intent: a new entry (a new item, or a new source of a stored
    call), an update, or nothing new."""

    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class NewItem:
    """An item no stored record is: stored as a new record, tagged with its own
    ``classification``. ``baseline``: part of a source's silent first poll (never mailed as
    new); ``held``: part of a flood, held for the admin."""

    item: Item
    classification: Classification | None = None
    baseline: bool = False
    held: bool = False
    kind: ClassVar[IntentKind] = IntentKind.NEW


@dataclass(frozen=True)
class Linked:
    """A new entry of this source that is a call another source stored (``item_id``): the
    source is linked to it, no new record. ``takes_over``: the item is the call itself where
    the stored record only named its identifier (a news page polled before the call's own
    source); the call's record and source take over. The stored call's tags stand unless
    the record is taken over (then it is tagged from the merged record)."""

    item: Item
    item_id: int
    reason: str
    takes_over: bool = False
    classification: Classification | None = None
    kind: ClassVar[IntentKind] = IntentKind.NEW


@dataclass(frozen=True)
class Updated:
    """This source's entry of a stored item changed: ``changes`` against the source's own
    last values. ``stored_key``: the key storage has, when it differs (guid churn)."""

    item: Item
    item_id: int
    changes: tuple[FieldChange, ...]
    stored_key: str | None = None
    classification: Classification | None = None
    kind: ClassVar[IntentKind] = IntentKind.UPDATED


@dataclass(frozen=True)
class Unchanged:
    """This source's entry of a stored item is as it was (only seen again)."""

    item: Item
    item_id: int
    stored_key: str | None = None
    kind: ClassVar[IntentKind] = IntentKind.UNCHANGED


# What storage should do with one normalised item (``track.decide`` makes them).
Intent = NewItem | Linked | Updated | Unchanged


@dataclass(frozen=True)
class SourceError:
    """A failed poll, as a value. ``code`` is a stable machine-readable word."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class PollStatus(enum.StrEnum):
    OK = "ok"
    PARTIAL = "partial"  # stored, but part of the source failed (items are incomplete)
    NOT_MODIFIED = "not_modified"
    ERROR = "error"
    SKIPPED = "skipped"  # another poll of the source was running (error code poll_in_progress)


@dataclass(frozen=True)
class PollResult:
    source_id: str
    status: PollStatus
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    parsed: int = 0
    error: SourceError | None = None
    warnings: tuple[str, ...] = ()
    # A source's first poll: calls announced to the networks, items kept silent.
    announced: int | None = None
    baselined: int | None = None
    incomplete: int = 0  # items stored without parts their source failed to give

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source_id,
            "status": self.status.value,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "error": self.error.as_dict() if self.error else None,
        }
        if self.incomplete:
            out["incomplete"] = self.incomplete
        if self.announced is not None:
            out["announced"], out["baselined"] = self.announced, self.baselined
        return out


@dataclass(frozen=True)
class Evidence:
    """Why a rule fired: the field it looked at and the text it matched there."""

    field: str  # "title" | "summary" | "source" | "kind" | "programme" | "status" | …
    matched: str


@dataclass(frozen=True)
class Tag:
    """One tag on an item, with the rule that gave it and the evidence."""

    kind: str  # "area" | "theme"
    tag: str
    rule_id: str
    evidence: tuple[Evidence, ...] = ()
    score: float = 1.0

    def why(self) -> str:
        """A one-line explanation for people: rule and evidence."""
        ev = "; ".join(f"{e.field}: «{e.matched}»" for e in self.evidence)
        return f"{self.rule_id} ({ev})" if ev else self.rule_id


@dataclass(frozen=True)
class Classification:
    """The result of classifying one item."""

    tags: tuple[Tag, ...]
    relevant: bool
    reason: str = ""  # why not relevant, when it is not

    def ids(self, kind: str) -> frozenset[str]:
        return frozenset(t.tag for t in self.tags if t.kind == kind)
