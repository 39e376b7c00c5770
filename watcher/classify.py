"""The rules engine as the pipeline sees it: classify an item, re-tag stored items.

Rule files are reloaded when they change; a bad file keeps the last good rules in force
(``RulesClassifier.error`` says why, for the admin and ``watcher rules check``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rules.engine import classify
from rules.loader import RuleStore
from watcher.exceptions import RuleError
from watcher.pipeline.work import RulesSpec
from watcher.types import Classification

if TYPE_CHECKING:
    from rules.engine import ClassifiableItem
    from watcher.config import Config, SourceConfig
    from watcher.storage import Storage

log = logging.getLogger(__name__)

# The meta key holding the rules version the stored items were last re-tagged with.
RULES_VERSION_META = "rules_version"


def rule_paths(config: Config) -> list[Path]:
    return [config.resolve_path(p) for p in config.rules.paths]


class RulesClassifier:
    """Classifies with the current rules and the sources' default areas and themes."""

    def __init__(self, store: RuleStore, config: Config) -> None:
        self.store = store
        self.config = config

    @classmethod
    def from_config(cls, config: Config) -> RulesClassifier:
        store = RuleStore(rule_paths(config), defaults=config.rules.use_defaults)
        return cls(store, config)

    @property
    def version(self) -> str:
        return self.store.version

    @property
    def error(self) -> RuleError | None:
        return self.store.error

    def reload_if_changed(self) -> bool:
        return self.store.reload_if_changed()

    def spec(self) -> RulesSpec:
        """The rules in force, as a worker process can load them."""
        return RulesSpec(
            tuple(str(p) for p in self.store.paths), self.store.defaults, self.store.version
        )

    def __call__(self, item: ClassifiableItem, source: SourceConfig | None) -> Classification:
        if source is None:
            try:
                source = self.config.source(item.source_id)
            except KeyError:
                source = None
        return classify(
            item,
            self.store.rules,
            source_areas=source.areas if source else (),
            source_themes=source.themes if source else (),
        )


@dataclass(frozen=True)
class RetagReport:
    items: int
    changed: int
    added: int
    removed: int
    changed_ids: tuple[int, ...] = ()


def retag(
    storage: Storage,
    classifier: RulesClassifier,
    now: datetime,
    *,
    since: datetime | None = None,
    batch: int = 500,
) -> RetagReport:
    """Re-classify stored items with the current rules, recording every tag change.

    A re-tag never makes an item "new": first-seen and change times are not touched, so
    digests do not send old items again."""
    ids = storage.all_item_ids(since)
    changed: list[int] = []
    added = removed = 0
    for start in range(0, len(ids), batch):
        chunk: Sequence[int] = ids[start : start + batch]
        results = {it.id: classifier(it, None) for it in storage.get_items(chunk)}
        for item_id, (a, r) in storage.set_tags_many(results, now, classifier.version).items():
            if a or r:
                changed.append(item_id)
                added += len(a)
                removed += len(r)
    if since is None:
        storage.set_meta(RULES_VERSION_META, classifier.version)
    return RetagReport(len(ids), len(changed), added, removed, tuple(changed))
