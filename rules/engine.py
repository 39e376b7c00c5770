"""Classify one item with a rule set: pure code, no I/O.

``classify(item, rules)`` returns a ``watcher.types.Classification``: area and theme tags,
each naming the rule that gave it and the evidence (field and matched text), or "not
relevant" with the reason. The steps:

1. Every field a rule looks at (title, summary, programme, source) is searched once for
   all terms of the whole rule set (one ``rules.matching.Matcher``).
2. A relevance rule that fires makes the item not relevant; it gets no tags.
3. Each tagging rule with a hit (or with conditions only) is scored; a rule that fires
   gives its targets. Per tag the best-scoring rule is kept.
4. The source's default areas/themes from ``config.toml`` are added (rule id
   ``source-default:<source id>``).
5. With ``untagged_not_relevant`` (the default), an item with no tags is not relevant.

The compiled form of a rule set is built on first use and cached on the ``RuleSet``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rules.matching import Hit, Matcher, Pattern
from rules.model import Conditions, Matching, RelevanceRule, Rule, RuleSet, Term
from watcher.config import AREAS, THEMES
from watcher.types import Classification, Evidence, Kind, Status, Tag

_ORDER = {("area", a): i for i, a in enumerate(AREAS)} | {
    ("theme", t): 100 + i for i, t in enumerate(THEMES)
}


class ClassifiableItem(Protocol):
    """What the engine reads from an item; ``watcher.types.Item`` has all of it."""

    @property
    def title(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def source_id(self) -> str: ...
    @property
    def kind(self) -> str | Kind: ...
    @property
    def programme(self) -> str | None: ...
    @property
    def status(self) -> str | Status | None: ...
    @property
    def language(self) -> str: ...


@dataclass(frozen=True)
class PlainItem:
    """A minimal item for evaluation rows, tests and previews (satisfies ClassifiableItem)."""

    title: str
    summary: str = ""
    source_id: str = ""
    kind: str = "news"
    programme: str | None = None
    status: str | None = None
    language: str = "sv"


Hits = dict[str, dict[int, Hit]]  # field -> pattern id -> first hit


@dataclass(frozen=True)
class _Compiled:
    """One rule (tagging or relevance) with its terms replaced by pattern ids."""

    rule: Matching
    terms: tuple[tuple[int, float, int], ...]  # pattern id, weight, length of the term
    requires: tuple[int, ...]
    exclude: tuple[int, ...]
    fields: tuple[tuple[str, float], ...]
    min_score: float
    when_programmes: tuple[int, ...]
    unless_programmes: tuple[int, ...]


class CompiledRules:
    """A rule set turned into one matcher and per-rule pattern ids."""

    def __init__(self, rules: RuleSet) -> None:
        self.settings = rules.settings
        ids: dict[Pattern, int] = {}

        def pid(term: Term) -> int:
            return ids.setdefault(term.pattern, len(ids))

        def compile_one(rule: Matching) -> _Compiled:
            return _Compiled(
                rule=rule,
                terms=tuple((pid(t), t.weight, len(t.text)) for t in rule.terms),
                requires=tuple(pid(t) for t in rule.requires),
                exclude=tuple(pid(t) for t in rule.exclude),
                fields=rule.fields if rule.fields is not None else self.settings.fields,
                min_score=(
                    rule.min_score if rule.min_score is not None else self.settings.min_score
                ),
                when_programmes=tuple(pid(t) for t in rule.when.programmes),
                unless_programmes=tuple(pid(t) for t in rule.unless.programmes),
            )

        self.relevance = tuple(compile_one(r) for r in rules.relevance)
        self.rules = tuple(compile_one(r) for r in rules.rules)
        self.matcher = Matcher(list(ids))
        by_pattern: dict[int, list[int]] = {}
        for n, c in enumerate(self.rules):
            for p, _, _ in c.terms:
                by_pattern.setdefault(p, []).append(n)
        self.by_pattern = {k: tuple(v) for k, v in by_pattern.items()}
        self.termless = tuple(n for n, c in enumerate(self.rules) if not c.terms)
        used = {f for c in (*self.rules, *self.relevance) for f, w in c.fields if w}
        if any(c.when_programmes or c.unless_programmes for c in (*self.rules, *self.relevance)):
            used.add("programme")
        self.fields_used = tuple(
            f for f in ("title", "summary", "programme", "source") if f in used
        )


def compiled(rules: RuleSet) -> CompiledRules:
    """The compiled form of ``rules``, built once and kept on the rule set."""
    c = rules.cache.get("compiled")
    if not isinstance(c, CompiledRules):
        c = CompiledRules(rules)
        rules.cache["compiled"] = c
    return c


def _field_texts(item: ClassifiableItem) -> dict[str, str]:
    return {
        "title": item.title or "",
        "summary": item.summary or "",
        "programme": item.programme or "",
        "source": item.source_id or "",
    }


def _value(v: object) -> str | None:
    return None if v is None else str(v)


def _conditions_hold(
    cond: Conditions, programme_ids: tuple[int, ...], item: ClassifiableItem, hits: Hits
) -> list[Evidence] | None:
    """Evidence for each condition that holds, or None when one fails. Empty → no conditions."""
    ev: list[Evidence] = []
    if cond.sources:
        if item.source_id not in cond.sources:
            return None
        ev.append(Evidence("source", item.source_id))
    if cond.kinds:
        kind = _value(item.kind)
        if kind not in cond.kinds:
            return None
        ev.append(Evidence("kind", str(kind)))
    if cond.statuses:
        status = _value(item.status)
        if status not in cond.statuses:
            return None
        ev.append(Evidence("status", str(status)))
    if cond.languages:
        if item.language not in cond.languages:
            return None
        ev.append(Evidence("language", item.language))
    if programme_ids:
        prog = hits.get("programme", {})
        found = [prog[p] for p in programme_ids if p in prog]
        if not found:
            return None
        ev.append(Evidence("programme", found[0].matched))
    return ev


def _any_condition_holds(
    cond: Conditions, programme_ids: tuple[int, ...], item: ClassifiableItem, hits: Hits
) -> bool:
    """For ``unless``: true when every condition given holds (then the rule stays quiet)."""
    if not cond and not programme_ids:
        return False
    return _conditions_hold(cond, programme_ids, item, hits) is not None


def _best_hit(
    pid: int, fields: tuple[tuple[str, float], ...], hits: Hits
) -> tuple[str, Hit, float]:
    """The field with the highest weight in which pattern ``pid`` was found."""
    best: tuple[str, Hit, float] | None = None
    for f, w in fields:
        h = hits[f].get(pid) if f in hits else None
        if h is not None and w and (best is None or w > best[2]):
            best = (f, h, w)
    assert best is not None
    return best


def _found_in(pid: int, fields: tuple[tuple[str, float], ...], hits: Hits) -> bool:
    return any(w and pid in hits.get(f, {}) for f, w in fields)


def evaluate_rule(
    c: _Compiled, item: ClassifiableItem, hits: Hits
) -> tuple[float, tuple[Evidence, ...]] | None:
    """Score and evidence if the compiled rule fires on ``item``, else None."""
    rule = c.rule
    cond_ev = _conditions_hold(rule.when, c.when_programmes, item, hits)
    if cond_ev is None:
        return None
    if _any_condition_holds(rule.unless, c.unless_programmes, item, hits):
        return None
    fields = c.fields
    for p in c.exclude:
        if _found_in(p, fields, hits):
            return None
    req_ev: list[Evidence] = []
    if c.requires:
        for p in c.requires:
            if _found_in(p, fields, hits):
                f, h, _ = _best_hit(p, fields, hits)
                req_ev.append(Evidence(f, h.matched))
                break
        else:
            return None
    if not c.terms:
        return 1.0, (*cond_ev, *req_ev)
    # Each stretch of text counts once, for the most specific term found there: the longest
    # match, then the longest term ("vocational training^-1" over "training", "fourth call"
    # over "call", "mobilitetsprojekt^-1" over "mobilitet" in the same word).
    found: list[tuple[int, int, float, str, float, Hit]] = []
    for p, weight, term_len in c.terms:
        if _found_in(p, fields, hits):
            f, h, fw = _best_hit(p, fields, hits)
            found.append((len(h.matched), term_len, weight, f, fw, h))
    found.sort(key=lambda x: (x[0], x[1], x[2]), reverse=True)
    taken: list[tuple[str, int, int]] = []
    score = 0.0
    contrib: list[tuple[float, Evidence]] = []
    for length, _, weight, f, fw, h in found:
        start, end = h.start, h.start + length
        if any(tf == f and ts < end and start < te for tf, ts, te in taken):
            continue
        taken.append((f, start, end))
        score += weight * fw
        if weight > 0:
            contrib.append((weight * fw, Evidence(f, h.matched)))
    if not contrib or score < c.min_score:
        return None
    contrib.sort(key=lambda x: -x[0])
    return score, (*(e for _, e in contrib), *req_ev, *cond_ev)


def _evidence_text(ev: Iterable[Evidence]) -> str:
    return "; ".join(f"{e.field}: «{e.matched}»" for e in ev)


def classify(
    item: ClassifiableItem,
    rules: RuleSet,
    *,
    source_areas: Sequence[str] = (),
    source_themes: Sequence[str] = (),
) -> Classification:
    """Tag one item with ``rules`` (see the module docstring for the steps)."""
    comp = compiled(rules)
    texts = _field_texts(item)
    find = comp.matcher.find
    hits: Hits = {f: find(texts[f]) for f in comp.fields_used}

    for c in comp.relevance:
        fired = evaluate_rule(c, item, hits)
        if fired is not None:
            return Classification((), False, f"{c.rule.id} ({_evidence_text(fired[1])})")

    candidates: set[int] = set(comp.termless)
    for field_hits in hits.values():
        for p in field_hits:
            candidates.update(comp.by_pattern.get(p, ()))
    best: dict[tuple[str, str], Tag] = {}
    for n in sorted(candidates):
        c = comp.rules[n]
        fired = evaluate_rule(c, item, hits)
        if fired is None:
            continue
        score, evidence = fired
        assert isinstance(c.rule, Rule)
        for t in c.rule.targets:
            key = (t.kind, t.id)
            old = best.get(key)
            if old is None or score > old.score:
                best[key] = Tag(t.kind, t.id, c.rule.id, evidence, round(score, 3))
    rule_id = f"source-default:{item.source_id}"
    src_ev = (Evidence("source", item.source_id),)
    for kind, ids in (("area", source_areas), ("theme", source_themes)):
        for tag_id in ids:
            best.setdefault((kind, tag_id), Tag(kind, tag_id, rule_id, src_ev, 1.0))
    tags = tuple(sorted(best.values(), key=lambda t: _ORDER.get((t.kind, t.tag), 999)))
    if not tags and comp.settings.untagged_not_relevant:
        return Classification((), False, "no rule matched")
    return Classification(tags, True)


def explain(item: ClassifiableItem, rules: RuleSet) -> list[tuple[Matching, float | None]]:
    """Every rule with any hit on ``item`` and its score if it fired (None if it did not):
    for the admin's "why (not)?" view and for tuning rules."""
    comp = compiled(rules)
    texts = _field_texts(item)
    hits: Hits = {f: comp.matcher.find(texts[f]) for f in comp.fields_used}
    out: list[tuple[Matching, float | None]] = []
    for c in (*comp.relevance, *comp.rules):
        touched = any(
            _found_in(p, c.fields, hits) for p in (*(p for p, _, _ in c.terms), *c.requires)
        )
        if not touched and c.terms:
            continue
        fired = evaluate_rule(c, item, hits)
        if fired is None and not touched:
            continue
        out.append((c.rule, None if fired is None else fired[0]))
    return out


__all__ = [
    "ClassifiableItem",
    "CompiledRules",
    "PlainItem",
    "RelevanceRule",
    "classify",
    "compiled",
    "explain",
]
