"""Storage: SQLAlchemy stays in here; the rest of the code sees ``Storage`` and our types."""

from watcher.storage.store import ApplyOutcome, ItemFilter, Storage
from watcher.types import ItemChange, SourceLink, SourceState, StoredItem, StoredTag

__all__ = [
    "ApplyOutcome",
    "ItemChange",
    "ItemFilter",
    "SourceLink",
    "SourceState",
    "Storage",
    "StoredItem",
    "StoredTag",
]
