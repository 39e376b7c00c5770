"""The network's corrections of an item's tags: pure values and how they win over the rules.

An admin corrects an item with one click on its page: removes a tag, adds an area or a
theme, or marks it relevant or not relevant. A correction is stored per item and label
(``kind`` and ``tag``; relevance has the tag ``""``); a later click on the same label
replaces it, and "ångra" deletes it. The item's effective tags are always::

    apply_corrections(classify(item, rules), corrections)

so a correction wins over the rules for that item and survives every re-tag (storage
applies it wherever it writes tags). A corrected tag names its correction the way a rule's
tag names its rule: rule id ``correction:<admin>``, evidence ``("rättad", <when, ISO>)``.

Corrected items are labelled data too: ``labelled_row`` turns one into a row of the shared
labelled sets' JSONL format, so ``watcher rules evaluate`` scores the rules against them
and ``rules.learned`` trains on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.types import Classification, Evidence, Tag

RELEVANCE = "relevance"
KINDS = ("area", "theme", RELEVANCE)
CORRECTION_PREFIX = "correction:"
CORRECTED_FIELD = "rättad"


@dataclass(frozen=True)
class Correction:
    """One admin's correction of one label of one item.

    ``kind`` is "area", "theme" or "relevance"; ``tag`` the area or theme id ("" for
    relevance); ``present``: the tag is added (True) or removed (False), or the item is
    relevant (True) or not (False)."""

    kind: str
    tag: str
    present: bool
    user: str
    at: datetime

    @property
    def label(self) -> str:
        """ "area:kompetens", "theme:utbildning" or "relevance"."""
        return self.kind if self.kind == RELEVANCE else f"{self.kind}:{self.tag}"

    def as_tag(self) -> Tag:
        return Tag(
            self.kind,
            self.tag,
            f"{CORRECTION_PREFIX}{self.user}",
            (Evidence(CORRECTED_FIELD, self.at.isoformat(timespec="minutes")),),
            1.0,
        )

    def describe(self) -> str:
        """ "+area:kompetens", "−theme:utbildning", "relevant", "not relevant"."""
        if self.kind == RELEVANCE:
            return "relevant" if self.present else "not relevant"
        return ("+" if self.present else "−") + self.label


def is_correction(rule_id: str) -> bool:
    """Whether a tag's rule id names a correction rather than a rule."""
    return rule_id.startswith(CORRECTION_PREFIX)


def apply_corrections(result: Classification, corrections: Iterable[Correction]) -> Classification:
    """The rules' result with the corrections applied: they win over the rules.

    - relevance: a correction sets it; "not relevant" leaves no tags (as a relevance rule);
    - a removed tag is gone; an added tag is there, saying who added it and when (it
      replaces the rule's tag of the same label, if a rule gives it too);
    - an added tag on an item the rules left not relevant makes it relevant: the admin
      said which area or theme of the network it concerns.
    """
    cs = list(corrections)
    if not cs:
        return result
    relevance = next((c for c in cs if c.kind == RELEVANCE), None)
    added = {(c.kind, c.tag): c for c in cs if c.kind != RELEVANCE and c.present}
    removed = {(c.kind, c.tag) for c in cs if c.kind != RELEVANCE and not c.present}
    if relevance is not None and not relevance.present:
        return Classification((), False, f"{CORRECTION_PREFIX}{relevance.user}")
    relevant = result.relevant or bool(added) or relevance is not None
    base = result.tags if result.relevant else ()
    tags = [t for t in base if (t.kind, t.tag) not in removed and (t.kind, t.tag) not in added]
    tags.extend(c.as_tag() for c in added.values())
    order = {"area": 0, "theme": 1}
    tags.sort(key=lambda t: order.get(t.kind, 2))
    return Classification(tuple(tags), relevant, "" if relevant else result.reason)


def labelled_row(
    item: Any, corrections: Sequence[Correction], effective: Classification
) -> dict[str, Any]:
    """One corrected item as a row of the shared labelled sets (``title``, ``summary``,
    ``areas``, ``themes``, ``relevant`` …, and a ``rationale`` listing the corrections).
    The labels are the item's effective tags: what the admin changed, and what the admin
    saw and left as it was."""
    last = max(c.at for c in corrections) if corrections else None
    users = sorted({c.user for c in corrections})
    return {
        "id": f"item-{item.id}",
        "source": item.source_id,
        "url": getattr(item, "link", ""),
        "language": item.language,
        "title": item.title,
        "summary": item.summary,
        "published": _iso_day(getattr(item, "published", None)),
        "opening": _iso_day(getattr(item, "opening", None)),
        "deadline": _iso_day(getattr(item, "deadline", None)),
        "kind": str(item.kind),
        "status": None if item.status is None else str(item.status),
        "programme": item.programme,
        "areas": sorted(effective.ids("area")),
        "themes": sorted(effective.ids("theme")),
        "relevant": effective.relevant,
        "rationale": (
            f"corrected by {', '.join(users)}"
            + (f" on {last.date().isoformat()}" if last else "")
            + ": "
            + ", ".join(c.describe() for c in corrections)
        ),
    }


@dataclass(frozen=True)
class Contradiction:
    """A rule the corrections contradict: tags it gave that admins removed (or on items
    they marked not relevant), or a relevance rule that excluded an item marked relevant;
    and, per label the admins added, the rules that give that label but missed it."""

    rule_id: str
    gave_removed: int = 0
    missed: int = 0
    items: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return self.gave_removed + self.missed


def contradictions(
    corrected: Sequence[tuple[Any, Sequence[Correction]]],
    rules_results: Sequence[Classification],
    rules_for: Mapping[str, Sequence[str]],
) -> list[Contradiction]:
    """Which rules the corrections contradict most. ``corrected``: (item, corrections)
    pairs, ``rules_results``: the rules' own result for each (no corrections applied),
    ``rules_for``: the rules that give each label ("area:kompetens" → rule ids)."""
    gave: dict[str, list[int]] = {}
    missed: dict[str, list[int]] = {}
    for (item, cs), result in zip(corrected, rules_results, strict=True):
        by_label = {(t.kind, t.tag): t for t in result.tags}
        for c in cs:
            if c.kind == RELEVANCE:
                if not c.present:
                    for t in result.tags:
                        gave.setdefault(t.rule_id, []).append(item.id)
                elif not result.relevant and result.reason:
                    rid = result.reason.split(" ", 1)[0]
                    gave.setdefault(rid, []).append(item.id)
            elif not c.present and (c.kind, c.tag) in by_label:
                gave.setdefault(by_label[(c.kind, c.tag)].rule_id, []).append(item.id)
            elif c.present and (c.kind, c.tag) not in by_label:
                for rid in rules_for.get(c.label, ()):
                    missed.setdefault(rid, []).append(item.id)
    out = [
        Contradiction(
            rid,
            len(gave.get(rid, ())),
            len(missed.get(rid, ())),
            tuple(sorted(set(gave.get(rid, ())) | set(missed.get(rid, ())))),
        )
        for rid in set(gave) | set(missed)
        if not is_correction(rid)
    ]
    out.sort(key=lambda c: (-c.gave_removed, -c.total, c.rule_id))
    return out


@dataclass(frozen=True)
class SharedTerms:
    """Words that the items given one correction share, more than corrected items do
    in general: candidates for a rule's terms (never added by themselves)."""

    correction: str  # "+area:kompetens", "−theme:utbildning", "not relevant"
    items: int
    terms: tuple[tuple[str, int], ...]  # (word, items that have it)


def shared_terms(
    corrected: Sequence[tuple[Any, Sequence[Correction]]],
    words: Callable[[Any], set[str]],
    limit: int = 8,
) -> list[SharedTerms]:
    """Per kind of correction made on at least two items, the words (``words(item)``: the
    item's words as written) found in at least two of them and in a larger share of them
    than of all corrected items."""
    item_words = [words(item) for item, _cs in corrected]
    n_all = len(corrected)
    df_all: dict[str, int] = {}
    for ws in item_words:
        for w in ws:
            df_all[w] = df_all.get(w, 0) + 1
    groups: dict[str, list[int]] = {}
    for n, (_item, cs) in enumerate(corrected):
        for c in cs:
            groups.setdefault(c.describe(), []).append(n)
    out: list[SharedTerms] = []
    for name, members in sorted(groups.items()):
        if len(members) < 2:
            continue
        df: dict[str, int] = {}
        for n in members:
            for w in item_words[n]:
                df[w] = df.get(w, 0) + 1
        ranked = sorted(
            ((w, c) for w, c in df.items() if c >= 2 and c / len(members) >= df_all[w] / n_all),
            key=lambda e: (-e[1] / len(members) + df_all[e[0]] / n_all, -e[1], e[0]),
        )
        out.append(SharedTerms(name, len(members), tuple(ranked[:limit])))
    return out


def _iso_day(d: datetime | None) -> str | None:
    return d.date().isoformat() if d is not None else None


__all__ = [
    "CORRECTION_PREFIX",
    "KINDS",
    "RELEVANCE",
    "Contradiction",
    "Correction",
    "SharedTerms",
    "apply_corrections",
    "contradictions",
    "is_correction",
    "labelled_row",
    "shared_terms",
]
