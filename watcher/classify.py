"""The rules engine as the pipeline sees it: classify an item, re-tag stored items.

Rule files are reloaded when they change; a bad file keeps the last good rules in force
(``RulesClassifier.error`` says why, for the admin and ``watcher rules check``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules.corrections import Correction, labelled_row
from rules.engine import classify
from rules.evaluate import LabelledItem
from rules.learned import Model, Proposal, shipped_rows, suggestions, train
from rules.loader import RuleStore
from watcher.exceptions import RuleError
from watcher.pipeline.work import RulesSpec
from watcher.types import Classification, StoredItem, Tag

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

    def __init__(self, store: RuleStore | None, config: Config) -> None:
        self._store = store
        self._reading = threading.Lock()
        self.config = config

    @classmethod
    def from_config(cls, config: Config) -> RulesClassifier:
        """A classifier whose rule files are read and parsed on first use: a `watcher
        poll` whose sources all answer "not modified" never classifies (13 ms saved)."""
        return cls(None, config)

    @property
    def store(self) -> RuleStore:
        if self._store is None:
            with self._reading:
                if self._store is None:
                    self._store = RuleStore(
                        rule_paths(self.config), defaults=self.config.rules.use_defaults
                    )
        return self._store

    @store.setter
    def store(self, store: RuleStore) -> None:
        with self._reading:  # not overwritten by a first read of the rules under way
            self._store = store

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


# -- corrections --------------------------------------------------------------------------


def correct(
    storage: Storage, classifier: RulesClassifier, item_id: int, correction: Correction
) -> bool:
    """Record an admin's correction of a stored item and write its effective tags (the
    rules' result with every correction of the item applied). False: no such item."""
    found = storage.get_items([item_id])
    if not found:
        return False
    storage.correct(item_id, correction, classifier(found[0], None), classifier.version)
    return True


def uncorrect(
    storage: Storage,
    classifier: RulesClassifier,
    item_id: int,
    kind: str,
    tag: str,
    user: str,
    now: datetime,
) -> bool:
    """Undo the correction of one label of a stored item: the rules decide it again."""
    found = storage.get_items([item_id])
    if not found:
        return False
    return storage.uncorrect(
        item_id, kind, tag, user, now, classifier(found[0], None), classifier.version
    )


def corrected_items(storage: Storage) -> list[tuple[StoredItem, list[Correction]]]:
    """Every corrected item (as stored, its effective tags) with its corrections."""
    by_item = storage.all_corrections()
    items = {it.id: it for it in storage.get_items(list(by_item))}
    return [(items[i], cs) for i, cs in by_item.items() if i in items]


def corrections_labelled(storage: Storage) -> list[dict[str, Any]]:
    """The corrected items as rows of the shared labelled sets (``rules.corrections``):
    their labels are the effective tags and relevance as stored."""
    out = []
    for item, cs in corrected_items(storage):
        effective = Classification(
            tuple(Tag(t.kind, t.tag, t.rule_id) for t in item.tags), item.relevant
        )
        out.append(labelled_row(item, cs, effective))
    return out


# -- the learned model's suggestions ----------------------------------------------------------

_MODELS: dict[tuple[Any, ...], Model] = {}


def model_for(storage: Storage) -> Model:
    """The model trained on the shipped labelled sets and the network's corrections (kept
    per process until a correction changes; training is counting, tens of milliseconds)."""
    rows = [LabelledItem.from_dict(d) for d in corrections_labelled(storage)]
    key = tuple((r.id, r.areas, r.themes, r.relevant) for r in rows)
    model = _MODELS.get(key)
    if model is None:
        _MODELS.clear()
        model = train([*shipped_rows(), *rows])
        _MODELS[key] = model
    return model


def suggestions_for(storage: Storage, item: StoredItem) -> list[Proposal]:
    """The labels the model proposes for a stored item that it does not have ("förslag"),
    each with the terms that weighed most. Reads only."""
    effective = Classification(
        tuple(Tag(t.kind, t.tag, t.rule_id) for t in item.tags), item.relevant
    )
    return suggestions(effective, item, model_for(storage))
