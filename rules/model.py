"""The rule set as data: frozen models that ``rules.loader`` builds from TOML files.

::

    RuleSet
    ├── settings: Settings          default field weights, minimum score, "untagged = not relevant"
    ├── rules: Rule…                each gives one or more area/theme tags
    │   ├── terms / requires / exclude: Term…   (parsed by rules.matching)
    │   ├── fields                 where to look and what a match there is worth
    │   └── when / unless: Conditions           source, kind, status, programme, language
    └── relevance: RelevanceRule…   each makes an item not relevant (no tags at all)

The models hold no behaviour beyond small lookups; ``rules.engine`` compiles a rule set
into matchers once and caches them on the rule set (``RuleSet.cache``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rules.matching import Pattern

TagKind = Literal["area", "theme"]
FIELDS: tuple[str, ...] = ("title", "summary", "programme", "source")
DEFAULT_FIELDS: tuple[tuple[str, float], ...] = (("title", 2.0), ("summary", 1.0))


@dataclass(frozen=True)
class Origin:
    """Where a rule was written: file and line (1-based), for errors and explanations."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class Term:
    """One term of a rule: as written, parsed, with its weight and the language list it
    was written under (``terms.sv`` → "sv"; ``None`` for a plain list)."""

    text: str
    pattern: Pattern
    weight: float = 1.0
    lang: str | None = None

    @property
    def is_phrase(self) -> bool:
        return len(self.pattern.words) > 1


@dataclass(frozen=True)
class Conditions:
    """Conditions on an item's metadata. Within one key any value may match; all keys given
    must match. ``programmes`` are terms matched against the item's programme name."""

    sources: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    programmes: tuple[Term, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.sources or self.kinds or self.statuses or self.languages or self.programmes
        )


@dataclass(frozen=True)
class Target:
    """A tag a rule gives: an area or a theme, by id."""

    kind: TagKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Matching:
    """What area rules and relevance rules share: terms, scopes, conditions, a threshold.

    The score of an item is the sum, over the distinct terms found, of the term's weight
    times the highest weight of a field it was found in. The rule fires when the score
    reaches ``min_score``, at least one ``requires`` term (if any) is found, no ``exclude``
    term is found, and the conditions hold. A rule without terms fires on its conditions."""

    id: str
    terms: tuple[Term, ...] = ()
    requires: tuple[Term, ...] = ()
    exclude: tuple[Term, ...] = ()
    fields: tuple[tuple[str, float], ...] | None = None  # None: the settings' default
    min_score: float | None = None  # None: the settings' default
    when: Conditions = Conditions()
    unless: Conditions = Conditions()
    description: str = ""
    origin: Origin = Origin("<unknown>")


@dataclass(frozen=True)
class Rule(Matching):
    """A tagging rule: gives its targets when it fires. A ``keep`` rule that fires also keeps
    the item relevant whatever relevance rule fires (a call GR can apply to is never
    dropped because it also names another region or programme)."""

    targets: tuple[Target, ...] = ()
    keep: bool = False


@dataclass(frozen=True)
class RelevanceRule(Matching):
    """An exclusion: an item it fires on is not relevant and gets no tags."""


@dataclass(frozen=True)
class Settings:
    """Rule-set wide defaults (``[settings]`` in any rule file; later files win)."""

    fields: tuple[tuple[str, float], ...] = DEFAULT_FIELDS
    min_score: float = 1.0
    untagged_not_relevant: bool = True


@dataclass(frozen=True)
class RuleSet:
    """A loaded, validated rule set. ``version`` is a hash of the files' contents."""

    rules: tuple[Rule, ...] = ()
    relevance: tuple[RelevanceRule, ...] = ()
    settings: Settings = Settings()
    version: str = "empty"
    files: tuple[str, ...] = ()
    # Compiled matchers, filled by rules.engine on first use; not part of the value.
    cache: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def rule(self, rule_id: str) -> Rule | RelevanceRule:
        """The rule with this id (tagging or relevance); KeyError if there is none."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        for rr in self.relevance:
            if rr.id == rule_id:
                return rr
        raise KeyError(rule_id)

    def targets(self) -> Mapping[str, tuple[Rule, ...]]:
        """Rules by the tag they give ("area:paverkan" → rules), for the admin's overview."""
        out: dict[str, list[Rule]] = {}
        for r in self.rules:
            for t in r.targets:
                out.setdefault(str(t), []).append(r)
        return {k: tuple(v) for k, v in out.items()}
