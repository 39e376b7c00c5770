"""Classify one item with a rule set: pure code, no I/O.

``classify(item, rules)`` returns a ``watcher.types.Classification``: area and theme tags,
each naming the rule that gave it and the evidence (field and matched text), or "not
relevant" with the reason. The steps:

1. Every field a rule looks at (title, summary, programme, source) is searched once for
   all terms of the whole rule set (one ``rules.matching.Matcher``).
2. A relevance rule that fires makes the item not relevant; it gets no tags, unless a
   tagging rule with ``keep = true`` fires too (relevance errs toward showing: a call GR
   can apply to is kept even when it also names an ineligible region or programme).
3. Each tagging rule with a term found (or without terms: conditions only) is scored; a
   rule that fires gives its targets. Per tag the best-scoring rule is kept.
4. The source's default areas/themes from ``config.toml`` are added (rule id
   ``source-default:<source id>``).
5. With ``untagged_not_relevant`` (the default), an item with no tags is not relevant.

The compiled form of a rule set is built on first use and cached on the ``RuleSet``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rules.matching import Matcher, Pattern, Scan
from rules.model import Conditions, Matching, Rule, RuleSet
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


# What a rule's pattern is to it.
_TERM, _REQUIRE, _EXCLUDE, _WHEN_PROGRAMME, _UNLESS_PROGRAMME = range(5)


@dataclass(frozen=True)
class _Compiled:
    """One rule (tagging or relevance) with its terms replaced by pattern ids."""

    rule: Matching
    fields: dict[str, float]  # field -> weight (only fields with a weight above 0)
    min_score: float
    has_terms: bool
    when_programmes: bool
    unless_programmes: bool
    has_when: bool
    has_unless: bool
    plain: bool  # terms only: no requires, exclude or conditions


# One found pattern as one rule sees it: role, field, field weight, term weight, term
# length, pattern id, the scan of the field, first word, number of words, "+" after it.
_Entry = tuple[int, str, float, float, int, int, Scan, int, int, bool]


class CompiledRules:
    """A rule set turned into one matcher and an index from patterns to rules."""

    def __init__(self, rules: RuleSet) -> None:
        self.settings = rules.settings
        ids: dict[Pattern, int] = {}
        # pattern id -> (rule number, role, term weight, term length)
        index: dict[int, list[tuple[int, int, float, int]]] = {}
        self.rules: list[_Compiled] = []
        all_rules: list[Matching] = [*rules.relevance, *rules.rules]
        self.n_relevance = len(rules.relevance)
        for n, rule in enumerate(all_rules):
            for role, terms in (
                (_TERM, rule.terms),
                (_REQUIRE, rule.requires),
                (_EXCLUDE, rule.exclude),
                (_WHEN_PROGRAMME, rule.when.programmes),
                (_UNLESS_PROGRAMME, rule.unless.programmes),
            ):
                for t in terms:
                    pid = ids.setdefault(t.pattern, len(ids))
                    index.setdefault(pid, []).append((n, role, t.weight, len(t.text)))
            fields = rule.fields if rule.fields is not None else self.settings.fields
            self.rules.append(
                _Compiled(
                    rule=rule,
                    fields={f: w for f, w in fields if w > 0},
                    min_score=(
                        rule.min_score if rule.min_score is not None else self.settings.min_score
                    ),
                    has_terms=bool(rule.terms),
                    when_programmes=bool(rule.when.programmes),
                    unless_programmes=bool(rule.unless.programmes),
                    has_when=bool(rule.when),
                    has_unless=bool(rule.unless),
                    plain=bool(rule.terms)
                    and not (rule.requires or rule.exclude or rule.when or rule.unless),
                )
            )
        self.matcher = Matcher(list(ids))
        # Per field: pattern id -> (rule number, role, field weight, term weight, term length)
        # for the rules that look at that field (programme conditions: the programme field).
        by_field: dict[str, dict[int, list[tuple[int, int, float, float, int]]]] = {}
        for pid, uses in index.items():
            for n, role, weight, tlen in uses:
                if role >= _WHEN_PROGRAMME:
                    scopes: Iterable[tuple[str, float]] = (("programme", 1.0),)
                else:
                    scopes = self.rules[n].fields.items()
                for f, fw in scopes:
                    by_field.setdefault(f, {}).setdefault(pid, []).append(
                        (n, role, fw, weight, tlen)
                    )
        self.by_field = tuple(
            (f, {pid: tuple(v) for pid, v in by_field[f].items()})
            for f in ("title", "summary", "programme", "source")
            if f in by_field
        )
        # Rules that may fire without any term found: conditions only, or requires only.
        self.always = tuple(n for n, c in enumerate(self.rules) if not c.has_terms)
        # Tagging rules that keep an item relevant when they fire.
        self.keep = frozenset(
            n for n, c in enumerate(self.rules) if isinstance(c.rule, Rule) and c.rule.keep
        )

    def entries(self, item: ClassifiableItem) -> dict[int, list[_Entry]]:
        """Search the item's fields once; what each rule found, by rule number."""
        return self.search(item)[0]

    def search(self, item: ClassifiableItem) -> tuple[dict[int, list[_Entry]], list[int]]:
        """What each rule found, by rule number, and the rules worth evaluating in order:
        those with a term found, and those that can fire without one."""
        texts = {
            "title": item.title,
            "summary": item.summary,
            "programme": item.programme,
            "source": item.source_id,
        }
        out: dict[int, list[_Entry]] = {}
        scored: set[int] = set(self.always)
        scan = self.matcher.scan
        for f, index in self.by_field:
            text = texts[f]
            if not text:
                continue
            sc = scan(text)
            for pid, (word, nwords, plus) in sc.hits.items():
                for n, role, fw, weight, tlen in index.get(pid, ()):
                    entry = (role, f, fw, weight, tlen, pid, sc, word, nwords, plus)
                    got = out.get(n)
                    if got is None:
                        out[n] = [entry]
                    else:
                        got.append(entry)
                    if role == _TERM:
                        scored.add(n)
        return out, sorted(scored)


def compiled(rules: RuleSet) -> CompiledRules:
    """The compiled form of ``rules``, built once and kept on the rule set."""
    c = rules.cache.get("compiled")
    if not isinstance(c, CompiledRules):
        c = CompiledRules(rules)
        rules.cache["compiled"] = c
    return c


def _value(v: object) -> str | None:
    return None if v is None else str(v)


def _conditions_hold(
    cond: Conditions, item: ClassifiableItem, programme: _Entry | None, needs_programme: bool
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
    if needs_programme:
        if programme is None:
            return None
        ev.append(Evidence("programme", _matched(programme)))
    return ev


def _matched(e: _Entry) -> str:
    return e[6].matched(e[7], e[8], e[9])


def _rank(e: _Entry) -> tuple[int, int, float]:
    """Longest match in the text, then longest term, then highest weight."""
    return (e[6].length(e[7], e[8]), e[4], e[3])


def evaluate_rule(
    c: _Compiled, item: ClassifiableItem, entries: Sequence[_Entry]
) -> tuple[float, tuple[Evidence, ...]] | None:
    """Score and evidence if the compiled rule fires on ``item``, else None."""
    if c.plain and len(entries) == 1:  # the common case: one term of a terms-only rule
        e = entries[0]
        score = e[2] * e[3]
        if score < c.min_score or score <= 0:
            return None
        return score, (Evidence(e[1], _matched(e)),)
    rule = c.rule
    when_prog: _Entry | None = None
    unless_prog: _Entry | None = None
    terms: dict[int, _Entry] = {}  # pattern id -> its entry in the best field
    required: _Entry | None = None
    for e in entries:
        role = e[0]
        if role == _TERM:
            old = terms.get(e[5])
            if old is None or e[2] > old[2]:
                terms[e[5]] = e
        elif role == _EXCLUDE:
            return None
        elif role == _REQUIRE:
            if required is None or e[2] > required[2]:
                required = e
        elif role == _WHEN_PROGRAMME:
            when_prog = when_prog or e
        else:
            unless_prog = unless_prog or e
    cond_ev: list[Evidence] = []
    if c.has_when:
        held = _conditions_hold(rule.when, item, when_prog, c.when_programmes)
        if held is None:
            return None
        cond_ev = held
    if c.has_unless and (
        _conditions_hold(rule.unless, item, unless_prog, c.unless_programmes) is not None
    ):
        return None
    req_ev: tuple[Evidence, ...] = ()
    if rule.requires:
        if required is None:
            return None
        req_ev = (Evidence(required[1], _matched(required)),)
    if not c.has_terms:
        return 1.0, (*cond_ev, *req_ev)
    if len(terms) == 1:
        [e] = terms.values()
        score = e[2] * e[3]
        if score < c.min_score or e[3] <= 0:
            return None
        return score, (Evidence(e[1], _matched(e)), *req_ev, *cond_ev)
    chosen = list(terms.values())
    # Each stretch of text counts once, for the most specific term found there: the longest
    # match, then the longest term ("vocational training^-1" over "training", "fourth call"
    # over "call", "mobilitetsprojekt^-1" over "mobilitet" in the same word). Terms can only
    # overlap where a phrase covers several words or one word carries two terms.
    if any(e[8] > 1 for e in chosen) or len({(e[1], e[7]) for e in chosen}) < len(chosen):
        taken: list[tuple[str, int, int]] = []
        kept: list[_Entry] = []
        for e in sorted(chosen, key=_rank, reverse=True):
            f, start = e[1], e[7]
            end = start + e[8]
            if not any(tf == f and ts < end and start < te for tf, ts, te in taken):
                taken.append((f, start, end))
                kept.append(e)
        chosen = kept
    score = sum(e[2] * e[3] for e in chosen)
    if score < c.min_score:
        return None
    positive = sorted((e for e in chosen if e[3] > 0), key=_points, reverse=True)
    if not positive:
        return None
    return score, (*(Evidence(e[1], _matched(e)) for e in positive), *req_ev, *cond_ev)


def _points(e: _Entry) -> float:
    return e[2] * e[3]


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
    found, candidates = comp.search(item)
    nrel = comp.n_relevance
    for n in candidates:
        if n >= nrel:
            break
        fired = evaluate_rule(comp.rules[n], item, found.get(n, ()))
        if fired is not None:
            if any(
                evaluate_rule(comp.rules[k], item, found.get(k, ())) is not None
                for k in candidates
                if k in comp.keep
            ):
                break  # a keep rule holds the item: tag it as if no relevance rule fired
            return Classification(
                (), False, f"{comp.rules[n].rule.id} ({_evidence_text(fired[1])})"
            )

    best: dict[tuple[str, str], Tag] = {}
    for n in candidates:
        if n < nrel:
            continue
        c = comp.rules[n]
        fired = evaluate_rule(c, item, found.get(n, ()))
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
    """Every rule with a term or required term found in ``item``, and its score if it fired
    (None if it did not); rules on conditions alone appear when they fire. For the admin's
    "why (not)?" view and for tuning rules."""
    comp = compiled(rules)
    found = comp.entries(item)
    out: list[tuple[Matching, float | None]] = []
    for n, c in enumerate(comp.rules):
        entries = found.get(n, ())
        touched = any(e[0] in (_TERM, _REQUIRE) for e in entries)
        fired = evaluate_rule(c, item, entries)
        if touched or fired is not None:
            out.append((c.rule, None if fired is None else fired[0]))
    return out


__all__ = [
    "ClassifiableItem",
    "CompiledRules",
    "PlainItem",
    "classify",
    "compiled",
    "explain",
]
