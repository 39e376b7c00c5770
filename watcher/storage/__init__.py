"""Storage: SQLAlchemy stays in here; the rest of the code sees ``Storage`` and our types.

``Storage`` is composed of rooms, one concern each (as lemon24/reader's ``_storage/``):

- ``core``: the engine, one write transaction at a time, the schema, the duplicate index;
- ``sources``: sources' state and health, the poll log, what the tracker needs;
- ``writes``: batches of write jobs, a poll's intents as ``merge`` decided them, statuses;
- ``items``: filters, lists, one item with its tags and sources, history, held items;
- ``tags``: tags with their rule and evidence, and their history;
- ``service``: meta values, the audit log, named locks (the scheduler's, each source's poll);
- ``sessions``: the admin's server-side sessions (only hashes of their ids);
- ``corrections``: the admin's corrections of an item's tags, which win over the rules;
- ``events``: what the admin is told (a failing source, a failed delivery …), each sent once;
- ``rows``: rows to our types.

Digests and deliveries have a store of their own over the same engine (``deliveries``).
"""

from watcher.storage.corrections import CorrectionsRoom
from watcher.storage.events import EventsRoom
from watcher.storage.items import ItemFilter
from watcher.storage.service import ServiceRoom
from watcher.storage.sessions import SessionsRoom
from watcher.storage.subscriptions import SubscriptionsRoom
from watcher.storage.writes import ApplyOutcome, Transaction, WritesRoom
from watcher.types import ItemChange, SourceLink, SourceState, StoredItem, StoredTag


class Storage(
    WritesRoom, ServiceRoom, SessionsRoom, CorrectionsRoom, EventsRoom, SubscriptionsRoom
):
    """All database reads and writes of the service. Every public method translates
    database errors into ``StorageError``; items leave as ``StoredItem`` values."""


__all__ = [
    "ApplyOutcome",
    "ItemChange",
    "ItemFilter",
    "SourceLink",
    "SourceState",
    "Storage",
    "StoredItem",
    "StoredTag",
    "Transaction",
]
