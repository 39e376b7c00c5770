"""Back-test a changed rule set: which items would gain or lose which tags. Pure.

``backtest(items, old, new)`` classifies every item with both rule sets and returns a
``TagDiff`` for each item whose tags or relevance differ: the tags it gains (with the new
rule and evidence) and the tags it loses (with the old ones). Nothing is stored; the CLI
(``watcher rules test``) and the admin's rule editor show the result before saving.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rules.engine import ClassifiableItem, classify
from rules.model import RuleSet
from watcher.types import Classification, Tag

# source id -> (default areas, default themes), as in config.toml's [[sources]]
SourceDefaults = Mapping[str, tuple[Sequence[str], Sequence[str]]]


@dataclass(frozen=True)
class TagDiff:
    """How one item's classification changes between two rule sets."""

    item: ClassifiableItem
    gained: tuple[Tag, ...]
    lost: tuple[Tag, ...]
    before: Classification
    after: Classification

    @property
    def relevance_changed(self) -> bool:
        return self.before.relevant != self.after.relevant


def _key(t: Tag) -> tuple[str, str]:
    return (t.kind, t.tag)


def diff(before: Classification, after: Classification) -> tuple[tuple[Tag, ...], tuple[Tag, ...]]:
    """Tags in ``after`` but not ``before`` (gained) and the reverse (lost), by kind and id."""
    old = {_key(t) for t in before.tags}
    new = {_key(t) for t in after.tags}
    gained = tuple(t for t in after.tags if _key(t) not in old)
    lost = tuple(t for t in before.tags if _key(t) not in new)
    return gained, lost


def backtest(
    items: Iterable[ClassifiableItem],
    old: RuleSet,
    new: RuleSet,
    *,
    source_defaults: SourceDefaults | None = None,
    current: Callable[[ClassifiableItem], Classification] | None = None,
) -> list[TagDiff]:
    """Items whose tags or relevance would change going from ``old`` to ``new``.

    ``source_defaults`` adds the sources' default tags to both sides, as the service does.
    ``current`` may give an item's stored classification instead of classifying it with
    ``old`` (then the diff is against what is saved)."""
    defaults = source_defaults or {}
    out: list[TagDiff] = []
    for item in items:
        areas, themes = defaults.get(item.source_id, ((), ()))
        after = classify(item, new, source_areas=areas, source_themes=themes)
        if current is not None:
            before = current(item)
        else:
            before = classify(item, old, source_areas=areas, source_themes=themes)
        gained, lost = diff(before, after)
        if gained or lost or before.relevant != after.relevant:
            out.append(TagDiff(item, gained, lost, before, after))
    return out


def summarise(diffs: Iterable[TagDiff]) -> dict[str, tuple[int, int]]:
    """Per tag ("area:paverkan"): how many items gain it and how many lose it."""
    gained: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    for d in diffs:
        gained.update(f"{t.kind}:{t.tag}" for t in d.gained)
        lost.update(f"{t.kind}:{t.tag}" for t in d.lost)
    return {k: (gained[k], lost[k]) for k in sorted(set(gained) | set(lost))}


def format_backtest(diffs: Sequence[TagDiff], *, limit: int = 200) -> str:
    """A plain-text report: one block per changed item (up to ``limit``), then totals."""
    if not diffs:
        return "No item would change."
    lines: list[str] = []
    for d in diffs[:limit]:
        lines.append(f"{d.item.source_id}: {d.item.title}")
        if d.relevance_changed:
            lines.append(
                f"  relevant: {d.before.relevant} → {d.after.relevant}"
                + (f" ({d.after.reason})" if d.after.reason else "")
            )
        lines.extend(f"  + {t.kind}:{t.tag}  {t.why()}" for t in d.gained)
        lines.extend(f"  - {t.kind}:{t.tag}  {t.why()}" for t in d.lost)
    if len(diffs) > limit:
        lines.append(f"… and {len(diffs) - limit} more items")
    lines.append("")
    lines.append(f"{len(diffs)} items would change.")
    for tag, (g, lo) in summarise(diffs).items():
        lines.append(f"  {tag}: +{g} −{lo}")
    return "\n".join(lines)
