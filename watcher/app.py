"""The application facade: config, storage, rules, the one clock, and the jobs.

The CLI, the scheduler and the web all go through an ``App``. It owns the only place the
wall clock is read (``App.now``); everything below takes ``now`` as a parameter.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from notifications.alerts import alert_hook
from sources.registry import load_config
from watcher.config import Config, SourceConfig
from watcher.exceptions import ConfigError
from watcher.storage import Storage
from watcher.types import PollResult

if TYPE_CHECKING:
    from watcher.classify import RulesClassifier
    from watcher.http import HttpClient
    from watcher.storage.writer import BatchWriter

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The wall clock. Only ``App`` calls it; tests give their own."""
    return datetime.now(UTC)


@dataclass
class Hooks:
    """Typed hook lists; built-in features use them too."""

    # (source_id, item ids) after a poll stored new, updated or merged items.
    items_changed: list[Callable[[str, Sequence[int]], None]] = field(default_factory=list)
    # (old config, new config) after the config was reloaded or edited.
    config_changed: list[Callable[[Config, Config], None]] = field(default_factory=list)
    # (item ids) after items were re-tagged.
    items_retagged: list[Callable[[Sequence[int]], None]] = field(default_factory=list)
    # (results) after polls were recorded; run in a thread, an error is logged. The admin
    # alerts are one (``notifications.alerts.record_poll_events``).
    polled: list[Callable[[Sequence[PollResult]], None]] = field(default_factory=list)

    def on_any_change(self, forget: Callable[..., None]) -> None:
        """Call ``forget`` (a cache's invalidate) whenever items, tags or the config change."""
        self.items_changed.append(forget)
        self.items_retagged.append(forget)
        self.config_changed.append(forget)


class App:
    """One running EU-bevakning: what the CLI, the scheduler and the web share."""

    def __init__(
        self,
        config: Config,
        *,
        storage: Storage | None = None,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self.clock = clock
        self.transport = transport
        self.storage = storage or Storage(config.watcher.database_url, config.base_dir)
        self.hooks = Hooks()
        self.hooks.polled.append(alert_hook(self))
        self.config_error: ConfigError | None = None
        self._config_mtime = self._mtime()
        self._rules: RulesClassifier | None = None
        self._executor: WorkerPool | None = None
        # One writer per event loop, shared by all polls on it (scheduled ones included).
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BatchWriter] = (
            weakref.WeakKeyDictionary()
        )
        self.http: HttpClient | None = None  # the service's long-lived client (set by run)

    # -- config ----------------------------------------------------------------------------

    @classmethod
    def from_path(cls, path: str | Path | None = None, **kwargs: Any) -> App:
        return cls(load_config(path), **kwargs)

    @property
    def config(self) -> Config:
        return self._config

    def _mtime(self) -> float | None:
        p = self._config.path
        try:
            return Path(p).stat().st_mtime if p else None
        except OSError:
            return None

    def set_config(self, new: Config) -> None:
        """Switch to a new, already validated config (the admin's edits come here). The
        classifier follows: the sources' default tags, and the rule files when ``[rules]``
        changed (stored items are then re-tagged by ``reload_rules_if_changed``)."""
        old, self._config = self._config, new
        self._config_mtime = self._mtime()
        self.config_error = None
        if self._rules is not None:
            self._rules.config = new
            if (old.rules, old.base_dir) != (new.rules, new.base_dir):
                from rules.loader import RuleStore
                from watcher.classify import rule_paths

                self._rules.store = RuleStore(rule_paths(new), defaults=new.rules.use_defaults)
        for hook in self.hooks.config_changed:
            hook(old, new)

    def reload_config_if_changed(self) -> bool:
        """Re-read config.toml when it changed on disk. A bad file keeps the last good
        config in force; the error is kept in ``config_error`` for the admin to see."""
        if self._config.path is None or self._mtime() == self._config_mtime:
            return False
        try:
            new = load_config(self._config.path)
        except ConfigError as e:
            self.config_error = e
            self._config_mtime = self._mtime()
            log.error("config.toml has errors; the last good config stays in force: %s", e)
            return False
        self.set_config(new)
        return True

    # -- time ------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock()

    # -- rules -----------------------------------------------------------------------------

    @property
    def classifier(self) -> RulesClassifier:
        if self._rules is None:
            from watcher.classify import RulesClassifier

            self._rules = RulesClassifier.from_config(self._config)
        return self._rules

    def reload_rules_if_changed(self) -> bool:
        """Reload changed rule files; when new rules took effect, re-tag stored items
        (recording each tag change; no item becomes "new"). A bad file keeps the last good
        rules (``classifier.error`` says why)."""
        from watcher.classify import RULES_VERSION_META, retag

        classifier = self.classifier
        reloaded = classifier.reload_if_changed()
        tagged_with = self.storage.get_meta(RULES_VERSION_META)
        if not reloaded and tagged_with == classifier.version:
            return False
        if tagged_with is None and not reloaded:
            # First start: items are tagged as they come; remember the version only.
            self.storage.set_meta(RULES_VERSION_META, classifier.version)
            return False
        report = retag(self.storage, classifier, self.now())
        log.info(
            "rules changed (version %s): %d items re-tagged, %d changed",
            classifier.version,
            report.items,
            report.changed,
        )
        if report.changed:
            for hook in self.hooks.items_retagged:
                hook(report.changed_ids)
        return True

    # -- polling ---------------------------------------------------------------------------

    def new_http_client(self) -> HttpClient:
        from watcher.http import HttpClient

        return HttpClient(
            self._config.fetch,
            self._config.watcher.user_agent,
            transport=self.transport,
            clock=self.clock,
            robots_store=self.storage,  # robots.txt copies outlive a `watcher poll`
        )

    def sources(
        self, ids: Sequence[str] | None = None, *, include_disabled: bool = False
    ) -> list[SourceConfig]:
        """Sources by id (all enabled ones by default); unknown ids raise ConfigError."""
        if not ids:
            return [s for s in self._config.sources if s.enabled or include_disabled]
        known = self._config.sources_by_id
        missing = [i for i in ids if i not in known]
        if missing:
            raise ConfigError(
                f"unknown source(s): {', '.join(missing)}; see `watcher sources list`"
            )
        return [known[i] for i in ids]

    async def poll(
        self,
        ids: Sequence[str] | None = None,
        progress: Callable[[PollResult], None] | None = None,
        http: HttpClient | None = None,
        fresh_within: Mapping[str, timedelta] | None = None,
    ) -> list[PollResult]:
        """Poll the sources (all enabled ones by default); ``fresh_within``: see
        ``Poller.poll_many``."""
        from watcher.polling import Poller

        sources = self.sources(ids)
        own = http is None and self.http is None
        client = http or self.http or self.new_http_client()
        try:
            poller = Poller(
                storage=self.storage,
                http=client,
                tz=self._config.tz,
                classifier=self.classifier,
                flood_threshold=self._config.email.flood_threshold,
                on_changed=self.hooks.items_changed,
                executor=self.executor,
                writer=self._writer(),
            )
            results = await poller.poll_many(sources, self.now, progress, fresh_within)
        finally:
            await client.save_robots()
            if own:
                await client.aclose()
        for hook in self.hooks.polled:
            try:
                await asyncio.to_thread(hook, results)
            except Exception:
                log.exception("a hook after the polls failed")
        return results

    def _writer(self) -> BatchWriter:
        from watcher.storage.writer import BatchWriter

        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            writer = self._writers[loop] = BatchWriter(
                self.storage, global_concurrency=self._config.fetch.global_concurrency
            )
        return writer

    def refresh_statuses(self) -> list[int]:
        """Statuses follow the calendar (a passed deadline closes a call) even for sources
        that answer "not modified"; see ``Storage.refresh_statuses``. The scheduler runs
        this every 10 minutes, ``watcher poll`` after its polls, a digest run before it builds
        (a preview only reads: surfaces compute the status at ``now``, ``watcher.calls``)."""
        changed = self.storage.refresh_statuses(self.now())
        if changed:
            for hook in self.hooks.items_changed:
                hook("", changed)
        return changed

    @property
    def executor(self) -> WorkerPool | None:
        """Worker processes for the CPU work of polls (``[watcher] workers``), started when
        the first task is given to them (``WorkerPool``): a poll round that parses nothing
        starts none. They are spawned, not forked: the service has threads."""
        if self._executor is None and self._config.watcher.workers > 0:
            from watcher.pipeline.work import start_worker

            workers = self._config.watcher.workers
            self._executor = WorkerPool(
                lambda: ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=start_worker,
                )
            )
        return self._executor

    def warm_up_workers(self) -> None:
        """Start the worker processes and load adapters and rules in them now, and in this
        process what polling loads on first use (the HTTP stack imports its transport on
        the first request), so the first poll does not wait for that."""
        import concurrent.futures.thread  # noqa: F401

        import sources.registry
        import watcher.polling
        import watcher.wire  # noqa: F401
        from watcher.pipeline.work import warm_up

        sources.registry.kinds()
        executor = self.executor
        if executor is None:
            return
        spec = self.classifier.spec()
        futures = [executor.submit(warm_up, spec) for _ in range(self._config.watcher.workers)]
        for f in futures:
            f.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self.storage.close()


class WorkerPool(Executor):
    """A process pool made when the first task is submitted to it. Until then nothing runs:
    no worker, and not multiprocessing's resource tracker, a process of its own that a pool
    starts as it is made. `watcher poll` hands its pool to the poller before it knows
    whether any source will need parsing; in a round where every source answers "not
    modified" (the usual round), making the pool cost the main process imports and a
    process start for nothing."""

    def __init__(self, make: Callable[[], ProcessPoolExecutor]) -> None:
        self._make = make
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._pool is not None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = self._make()
            pool = self._pool
        return pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
