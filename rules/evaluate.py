"""Measure a rule set against labelled items: precision, recall and F1 per area and theme.

A labelled file is JSON Lines, one item per line, with at least ``title``, ``summary``,
``areas``, ``themes`` and ``relevant``; ``source`` (or ``source_id``), ``language``,
``kind``, ``status`` and ``programme`` are used when present. ``evaluate(rows, rules)``
classifies each row and counts, per label, true positives, false positives and false
negatives over all rows (an item marked not relevant has no tags). Macro-F1 is the mean F1
over the labels that occur in the gold labels or in the predictions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rules.engine import PlainItem, classify
from rules.model import RuleSet
from watcher.config import AREAS, THEMES
from watcher.exceptions import RuleError
from watcher.types import Classification


@dataclass(frozen=True)
class LabelledItem(PlainItem):
    """One evaluation row: the fields the engine reads, and the expected answer."""

    id: str = ""
    areas: frozenset[str] = frozenset()
    themes: frozenset[str] = frozenset()
    relevant: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelledItem:
        return cls(
            title=str(d.get("title") or ""),
            summary=str(d.get("summary") or ""),
            source_id=str(d.get("source_id") or d.get("source") or ""),
            kind=str(d.get("kind") or "news"),
            programme=d.get("programme") or None,
            status=d.get("status") or None,
            language=str(d.get("language") or "sv"),
            id=str(d.get("id") or ""),
            areas=frozenset(d.get("areas") or ()),
            themes=frozenset(d.get("themes") or ()),
            relevant=bool(d.get("relevant", True)),
        )


def load_labelled(path: Path | str) -> list[LabelledItem]:
    """Read a labelled JSONL file. Raises ``RuleError`` naming the line of a bad row."""
    rows: list[LabelledItem] = []
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise RuleError(f"cannot read labelled data: {e}", str(p)) from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise RuleError(f"not JSON: {e.msg}", str(p), n) from e
        if not isinstance(d, dict) or "title" not in d:
            raise RuleError("each line must be an object with a title", str(p), n)
        rows.append(LabelledItem.from_dict(d))
    return rows


@dataclass(frozen=True)
class LabelScore:
    """Counts for one label and the measures derived from them."""

    label: str
    tp: int
    fp: int
    fn: int

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def counted(self) -> bool:
        """Whether the label takes part in the macro average (it was expected or predicted)."""
        return bool(self.tp + self.fp + self.fn)


@dataclass(frozen=True)
class GroupScores:
    """All labels of one kind (areas or themes)."""

    labels: tuple[LabelScore, ...]

    @property
    def macro_f1(self) -> float:
        counted = [s.f1 for s in self.labels if s.counted]
        return sum(counted) / len(counted) if counted else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "macro_f1": round(self.macro_f1, 4),
            "per_label": {
                s.label: {
                    "precision": round(s.precision, 4),
                    "recall": round(s.recall, 4),
                    "f1": round(s.f1, 4),
                    "support": s.support,
                }
                for s in self.labels
            },
        }


@dataclass(frozen=True)
class Mistake:
    """One row where the prediction differs from the labels."""

    item: LabelledItem
    result: Classification
    missing: tuple[str, ...]  # expected tags not given ("area:paverkan")
    extra: tuple[str, ...]  # tags given but not expected
    relevance_wrong: bool


@dataclass(frozen=True)
class Report:
    """The outcome of ``evaluate``; ``as_json()`` and ``as_text()`` for the CLI."""

    areas: GroupScores
    themes: GroupScores
    relevance_accuracy: float
    items: int
    mistakes: tuple[Mistake, ...] = field(default=(), compare=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "areas": self.areas.as_json(),
            "themes": self.themes.as_json(),
            "relevance_accuracy": round(self.relevance_accuracy, 4),
            "items": self.items,
        }

    def as_text(self, *, mistakes: bool = False) -> str:
        """A readable table; with ``mistakes`` also every row the rules got wrong."""
        lines: list[str] = []
        for title, group in (("Areas", self.areas), ("Themes", self.themes)):
            lines.append(f"{title:<24}{'precision':>10}{'recall':>10}{'F1':>8}{'support':>9}")
            for s in group.labels:
                lines.append(
                    f"  {s.label:<22}{s.precision:>10.3f}{s.recall:>10.3f}{s.f1:>8.3f}{s.support:>9}"
                )
            lines.append(f"  {'macro-F1':<22}{'':>10}{'':>10}{group.macro_f1:>8.3f}")
            lines.append("")
        lines.append(f"Relevance accuracy: {self.relevance_accuracy:.3f}")
        lines.append(f"Items: {self.items}")
        if mistakes and self.mistakes:
            lines.append("")
            lines.append("Mistakes:")
            for m in self.mistakes:
                name = m.item.id or m.item.title[:60]
                parts = []
                if m.relevance_wrong:
                    why = f" ({m.result.reason})" if m.result.reason else ""
                    parts.append(f"relevant={m.result.relevant}, expected {m.item.relevant}{why}")
                if m.missing:
                    parts.append("missing " + ", ".join(m.missing))
                if m.extra:
                    extra = []
                    for tag in m.extra:
                        kind, _, tag_id = tag.partition(":")
                        t = next(
                            (x for x in m.result.tags if x.kind == kind and x.tag == tag_id), None
                        )
                        extra.append(f"{tag} [{t.why()}]" if t else tag)
                    parts.append("extra " + ", ".join(extra))
                lines.append(f"  {name}: " + "; ".join(parts))
        return "\n".join(lines)


def evaluate(rows: Iterable[LabelledItem], rules: RuleSet) -> Report:
    """Classify every row with ``rules`` and score the result against its labels."""
    listed = list(rows)
    return score(listed, [classify(row, rules) for row in listed])


def score(rows: Sequence[LabelledItem], results: Sequence[Classification]) -> Report:
    """Score given results (one per row, in order) against the rows' labels: how
    ``evaluate`` scores the rules, and how cross-validation scores rules with a model."""
    counts: dict[tuple[str, str], list[int]] = {}
    for kind, labels in (("area", AREAS), ("theme", THEMES)):
        for label in labels:
            counts[(kind, label)] = [0, 0, 0]
    right = total = 0
    mistakes: list[Mistake] = []
    for row, result in zip(rows, results, strict=True):
        total += 1
        right += result.relevant == row.relevant
        missing: list[str] = []
        extra: list[str] = []
        for kind, gold in (("area", row.areas), ("theme", row.themes)):
            got = result.ids(kind)
            for label in gold | got:
                c = counts.setdefault((kind, label), [0, 0, 0])
                if label in gold and label in got:
                    c[0] += 1
                elif label in got:
                    c[1] += 1
                    extra.append(f"{kind}:{label}")
                else:
                    c[2] += 1
                    missing.append(f"{kind}:{label}")
        if missing or extra or result.relevant != row.relevant:
            mistakes.append(
                Mistake(row, result, tuple(missing), tuple(extra), result.relevant != row.relevant)
            )

    def group(kind: str) -> GroupScores:
        return GroupScores(
            tuple(LabelScore(label, *c) for (k, label), c in counts.items() if k == kind)
        )

    return Report(
        areas=group("area"),
        themes=group("theme"),
        relevance_accuracy=right / total if total else 0.0,
        items=total,
        mistakes=tuple(mistakes),
    )


def evaluate_file(path: Path | str, rules: RuleSet) -> Report:
    """``evaluate`` over a labelled JSONL file."""
    return evaluate(load_labelled(path), rules)


__all__: Sequence[str] = [
    "GroupScores",
    "LabelScore",
    "LabelledItem",
    "Mistake",
    "Report",
    "evaluate",
    "evaluate_file",
    "load_labelled",
    "score",
]
