"""What notifications need from the running service, as small Protocols.

``notifications`` sits beside ``watcher.app`` in the layers, not above it: the app, the
scheduler, the CLI and the web call into notifications, never the other way round. So the
digest, delivery, unsubscribe and job code ask for these few members instead of the whole
``App``; ``watcher.app.App`` has them (structurally, nothing to inherit), so callers keep
passing ``app``, and ``watcher.scheduler.Scheduler`` is a ``JobHost``.

::

    Host            config, storage, now()        building a digest, signing unsubscribe links
    DeliveryHost    Host + refresh_statuses()     a digest run (statuses first, then build)
    JobHost         app, leader, aps, running()   the scheduler the digest jobs live in
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from apscheduler.schedulers.base import BaseScheduler

from watcher.config import Config
from watcher.storage import Storage


class Host(Protocol):
    """The config, the database and the one clock: everything a digest is built from.
    The clock is the host's (``App.now``), so a preview and a run agree on ``now``."""

    @property
    def config(self) -> Config: ...

    @property
    def storage(self) -> Storage: ...

    def now(self) -> datetime: ...


class DeliveryHost(Host, Protocol):
    """A host that can also bring stored statuses up to date, which a digest run does
    before it builds (a call that opened since the last poll is reported as open)."""

    def refresh_statuses(self) -> Sequence[int]: ...


class JobHost(Protocol):
    """The scheduler the digest jobs are added to: its APScheduler, whether this process
    holds the scheduler lock, and ``running()`` to mark a job in flight so that a stop
    waits for it."""

    @property
    def app(self) -> DeliveryHost: ...

    @property
    def leader(self) -> bool: ...

    @property
    def aps(self) -> BaseScheduler: ...

    def running(self) -> AbstractContextManager[None]: ...
