"""A model learned from labelled items that proposes the tags the rules missed. Pure code.

The model is one-vs-rest naive Bayes over binary features (the log-count ratios of
Wang & Manning's NBSVM baseline, without the SVM): for each area and theme, each feature
weighs ``log(p_f / q_f)``, where ``p`` and ``q`` are the smoothed, normalised counts of the
items with and without the label that have the feature; an item's score for a label is the
prior log-odds plus the weights of its features. Training is counting, so the model is
trained when the rules are loaded (on the labelled sets shipped in ``rules/data/`` and any
labelled JSONL of the network's corrections), and cross-validation costs little.

Features (``features``): Swedish- or English-stemmed words of title and summary, words of
the title again (``t:``), pairs of adjacent stems (``b:``), and for long words their first
and last six letters (``p:``/``s:``, the character n-grams that find the parts of Swedish
compounds: "frukostseminarium" shares ``s:inarium`` with "seminarium").

A model only adds tags (``add_model_tags``): a label the rules did not give whose score
reaches the model's threshold becomes a tag with rule id ``model`` and the features that
weighed most as its evidence; below the threshold (from log-odds ``SUGGEST_AT``) it is
a suggestion ("förslag") for the admin (``suggestions``). The threshold is chosen by
cross-validation (``choose_threshold``), and every figure about the model is
cross-validated (``cross_validate``): no item is scored by a model trained on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rules.evaluate import load_labelled
from watcher.config import AREAS, THEMES
from watcher.types import Classification, Evidence, Tag

LABELS: tuple[tuple[str, str], ...] = tuple(("area", a) for a in AREAS) + tuple(
    ("theme", t) for t in THEMES
)
MODEL_RULE_ID = "model"
DATA_DIR = Path(__file__).parent / "data"
ALPHA = 0.5  # additive smoothing of the feature counts
MIN_DF = 2  # a feature seen in fewer training items is dropped
# Candidate thresholds (log-odds; naive Bayes is over-confident, so they run high). ``inf``:
# the model makes no tags, only suggestions; chosen when no threshold beats the rules alone.
THRESHOLDS: tuple[float, ...] = (*(float(x) for x in range(0, 62, 2)), math.inf)
DEFAULT_THRESHOLD = math.inf
SUGGEST_AT = 0.0  # suggestions: labels the model finds more likely than not
EVIDENCE_TERMS = 3

_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*", re.UNICODE)

STOPWORDS = frozenset(
    [
        "och",
        "att",
        "det",
        "som",
        "en",
        "ett",
        "är",
        "på",
        "av",
        "för",
        "med",
        "till",
        "den",
        "de",
        "om",
        "har",
        "inte",
        "vi",
        "kan",
        "du",
        "ska",
        "från",
        "eller",
        "vid",
        "sig",
        "man",
        "hur",
        "nu",
        "också",
        "så",
        "sin",
        "sitt",
        "sina",
        "där",
        "när",
        "efter",
        "under",
        "mellan",
        "alla",
        "andra",
        "detta",
        "denna",
        "dessa",
        "deras",
        "vara",
        "blir",
        "var",
        "han",
        "hon",
        "vad",
        "mer",
        "nya",
        "ny",
        "nytt",
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "are",
        "was",
        "were",
        "will",
        "have",
        "has",
        "been",
        "their",
        "its",
        "our",
        "your",
        "you",
        "not",
        "but",
        "all",
        "can",
        "may",
        "also",
        "more",
        "new",
        "into",
        "about",
        "which",
        "who",
        "what",
        "when",
        "where",
        "how",
        "than",
        "them",
        "they",
        "these",
        "those",
        "such",
        "other",
        "over",
        "under",
        "out",
        "per",
        "via",
    ]
)

# Snowball's Swedish step-1 endings and a few English ones, longest first.
_SV_ENDINGS = tuple(
    sorted(
        [
            "heterna",
            "hetens",
            "anden",
            "andes",
            "andet",
            "arens",
            "arnas",
            "ernas",
            "heten",
            "heter",
            "ornas",
            "ande",
            "arna",
            "arne",
            "aste",
            "erna",
            "ades",
            "ens",
            "ern",
            "het",
            "ast",
            "are",
            "ad",
            "en",
            "ar",
            "er",
            "or",
            "as",
            "es",
            "at",
            "a",
            "e",
        ],
        key=len,
        reverse=True,
    )
)
_EN_ENDINGS = ("ations", "ation", "ments", "ment", "ings", "ing", "ies", "es", "ed", "ly", "s")
_S_ENDING_OK = frozenset("bcdfghjklmnoprtvy")


def _stem_sv(w: str) -> str:
    for e in _SV_ENDINGS:
        if w.endswith(e) and len(w) - len(e) >= 3:
            return w[: -len(e)]
    if w.endswith("s") and len(w) > 4 and w[-2] in _S_ENDING_OK:
        return w[:-1]
    return w


def _stem_en(w: str) -> str:
    for e in _EN_ENDINGS:
        if w.endswith(e) and len(w) - len(e) >= 3:
            return w[: -len(e)]
    return w


_STEM_CACHE: dict[tuple[str, bool], str] = {}
_STEM_CACHE_MAX = 200_000


def stem(word: str, swedish: bool) -> str:
    """A light stem: Snowball's Swedish step-1 endings, or a few English ones."""
    key = (word, swedish)
    s = _STEM_CACHE.get(key)
    if s is None:
        s = _stem_sv(word) if swedish else _stem_en(word)
        if len(_STEM_CACHE) < _STEM_CACHE_MAX:
            _STEM_CACHE[key] = s
    return s


class Text(Protocol):
    """What the model reads from an item."""

    @property
    def title(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def language(self) -> str: ...


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


def features(item: Text) -> set[str]:
    """The item's features (see the module docstring)."""
    return set(_features(item))


def _features(item: Text, shown: dict[str, str] | None = None) -> Iterable[str]:
    swedish = item.language != "en"
    title = _words(item.title)
    words = title + _words(item.summary)
    stems = [stem(w, swedish) for w in words]
    out: list[str] = []
    add = out.append
    for w, s in zip(words, stems, strict=True):
        add("w:" + s)
        if len(w) >= 9:
            add("p:" + w[:6])
            add("s:" + w[-6:])
            if shown is not None:
                shown.setdefault("p:" + w[:6], w)
                shown.setdefault("s:" + w[-6:], w)
        if shown is not None:
            shown.setdefault("w:" + s, w)
    for w, s in zip(title, stems, strict=False):
        add("t:" + s)
        if shown is not None:
            shown.setdefault("t:" + s, w)
    for i in range(len(stems) - 1):
        f = "b:" + stems[i] + "_" + stems[i + 1]
        add(f)
        if shown is not None:
            shown.setdefault(f, words[i] + " " + words[i + 1])
    return out


def words(item: Text) -> set[str]:
    """The item's words as written (lower case, no stop words), for people to read."""
    return set(_words(item.title)) | set(_words(item.summary))


class Labelled(Text, Protocol):
    """A labelled item (``rules.evaluate.LabelledItem``)."""

    @property
    def areas(self) -> frozenset[str]: ...
    @property
    def themes(self) -> frozenset[str]: ...
    @property
    def relevant(self) -> bool: ...


def gold(row: Labelled) -> frozenset[tuple[str, str]]:
    """The row's labels as (kind, id); a row marked not relevant has none."""
    if not row.relevant:
        return frozenset()
    return frozenset(("area", a) for a in row.areas) | frozenset(("theme", t) for t in row.themes)


@dataclass(frozen=True)
class Proposal:
    """A label the model proposes, its score and the terms that weighed most."""

    kind: str
    tag: str
    score: float
    terms: tuple[str, ...]

    def as_tag(self) -> Tag:
        return Tag(
            self.kind,
            self.tag,
            MODEL_RULE_ID,
            tuple(Evidence("modell", t) for t in self.terms),
            round(self.score, 3),
        )


@dataclass
class Model:
    """Per feature, its weight for each label (in ``LABELS`` order); per label a bias."""

    weights: dict[str, tuple[float, ...]]
    bias: tuple[float, ...]
    threshold: float = DEFAULT_THRESHOLD
    items: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def scores(self, item: Text) -> list[float]:
        """The item's score (log-odds) for each label, in ``LABELS`` order."""
        get = self.weights.get
        vecs = [v for f in set(_features(item)) if (v := get(f)) is not None]
        if not vecs:
            return list(self.bias)
        return [b + sum(col) for b, col in zip(self.bias, zip(*vecs, strict=True), strict=True)]

    def explain(self, item: Text, label: int, n: int = EVIDENCE_TERMS) -> tuple[str, ...]:
        """The terms that weighed most for ``label`` (as written in the item)."""
        shown: dict[str, str] = {}
        feats = set(_features(item, shown))
        ranked = sorted(
            ((ws[label], f) for f in feats if (ws := self.weights.get(f)) is not None),
            reverse=True,
        )
        out: list[str] = []
        for weight, f in ranked:
            if weight <= 0 or len(out) >= n:
                break
            term = shown.get(f, f[2:])
            if term not in out:
                out.append(term)
        return tuple(out)

    def proposals(self, item: Text, minimum: float) -> list[Proposal]:
        """Labels scoring at least ``minimum``, best first, each with its evidence."""
        scores = self.scores(item)
        found = [(s, i) for i, s in enumerate(scores) if s >= minimum]
        found.sort(reverse=True)
        return [Proposal(*LABELS[i], s, self.explain(item, i)) for s, i in found]


def train(rows: Sequence[Labelled], threshold: float = DEFAULT_THRESHOLD) -> Model:
    """Count the rows' features per label and turn the counts into weights."""
    n_labels = len(LABELS)
    index = {lab: i for i, lab in enumerate(LABELS)}
    docs = [(features(r), [index[g] for g in gold(r) if g in index]) for r in rows]
    df: dict[str, int] = {}
    for feats, _labs in docs:
        for f in feats:
            df[f] = df.get(f, 0) + 1
    kept = {f for f, c in df.items() if c >= MIN_DF}
    pos: dict[str, list[int]] = {f: [0] * n_labels for f in kept}
    n_pos = [0] * n_labels
    for feats, labs in docs:
        for i in labs:
            n_pos[i] += 1
        for f in feats:
            counts = pos.get(f)
            if counts is not None:
                for i in labs:
                    counts[i] += 1
    n = len(docs)
    # Normalisers: the smoothed total count of features of items with and without each label.
    tot_pos = [ALPHA * len(kept)] * n_labels
    tot_neg = [ALPHA * len(kept)] * n_labels
    for f in kept:
        c = pos[f]
        for i in range(n_labels):
            tot_pos[i] += c[i]
            tot_neg[i] += df[f] - c[i]
    weights: dict[str, tuple[float, ...]] = {}
    for f in kept:
        c = pos[f]
        weights[f] = tuple(
            math.log((c[i] + ALPHA) / tot_pos[i]) - math.log((df[f] - c[i] + ALPHA) / tot_neg[i])
            for i in range(n_labels)
        )
    bias = tuple(math.log((n_pos[i] + ALPHA) / (n - n_pos[i] + ALPHA)) for i in range(n_labels))
    return Model(weights, bias, threshold, n)


def shipped_rows() -> list[Any]:
    """The labelled sets shipped with the package (``rules/data/*.jsonl``)."""
    return [row for p in sorted(DATA_DIR.glob("*.jsonl")) for row in load_labelled(p)]


# -- the model with the rules ----------------------------------------------------------------


def add_model_tags(result: Classification, item: Text, model: Model) -> Classification:
    """The rules' result with the labels the model scores at or above its threshold
    added (tags the rules gave are kept as they are). An item a relevance rule excluded
    stays excluded; one no rule matched becomes relevant when the model tags it."""
    if not result.relevant and result.reason != "no rule matched":
        return result
    have = {(t.kind, t.tag) for t in result.tags}
    scores = model.scores(item)
    added = [
        Proposal(*LABELS[i], s, model.explain(item, i)).as_tag()
        for i, s in enumerate(scores)
        if s >= model.threshold and LABELS[i] not in have
    ]
    if not added:
        return result
    order = {lab: i for i, lab in enumerate(LABELS)}
    tags = sorted((*result.tags, *added), key=lambda t: order.get((t.kind, t.tag), 999))
    return Classification(tuple(tags), True)


def suggestions(result: Classification, item: Text, model: Model) -> list[Proposal]:
    """Labels the model scores from ``SUGGEST_AT`` up to its threshold that the item does
    not have: "förslag" for the admin, never tags."""
    have = {(t.kind, t.tag) for t in result.tags}
    return [
        p
        for p in model.proposals(item, SUGGEST_AT)
        if (p.kind, p.tag) not in have and p.score < model.threshold
    ]


# -- cross-validation -------------------------------------------------------------------------


def folds(n: int, k: int) -> list[list[int]]:
    """``k`` folds of ``range(n)``, by position modulo ``k`` (deterministic, no shuffling:
    the labelled sets are not sorted by label)."""
    return [[i for i in range(n) if i % k == j] for j in range(k)]


Scorer = Callable[[Sequence[Labelled], Sequence[Classification]], float]


def out_of_fold_scores(rows: Sequence[Labelled], k: int) -> list[list[float]]:
    """Each row's label scores from a model trained on the other folds only."""
    out: list[list[float]] = [[] for _ in rows]
    for fold in folds(len(rows), k):
        held = set(fold)
        model = train([r for i, r in enumerate(rows) if i not in held])
        for i in fold:
            out[i] = model.scores(rows[i])
    return out


def _with_scores(
    result: Classification, scores: Sequence[float], threshold: float
) -> Classification:
    if not result.relevant and result.reason != "no rule matched":
        return result
    have = {(t.kind, t.tag) for t in result.tags}
    added = [
        Tag(*LABELS[i], MODEL_RULE_ID)
        for i, s in enumerate(scores)
        if s >= threshold and LABELS[i] not in have
    ]
    if not added:
        return result
    return Classification((*result.tags, *added), True)


def choose_threshold(
    rows: Sequence[Labelled],
    rules_results: Sequence[Classification],
    k: int,
    scorer: Scorer,
) -> float:
    """The threshold that scores best (``scorer``: the mean of the areas' and themes'
    macro-F1) over ``rows`` with out-of-fold model scores; ties go to the higher one, so
    ``inf`` (no model tags) wins unless a threshold beats the rules alone."""
    oof = out_of_fold_scores(rows, k)
    best, best_t = -1.0, THRESHOLDS[-1]
    for t in sorted(THRESHOLDS, reverse=True):
        combined = [_with_scores(r, s, t) for r, s in zip(rules_results, oof, strict=True)]
        score = scorer(rows, combined)
        if score > best + 1e-9:
            best, best_t = score, t
    return best_t


@dataclass(frozen=True)
class CrossValidated:
    """Rules alone and rules with the model, each row scored by a model that never saw it;
    the threshold of each outer fold chosen by an inner cross-validation of its training
    rows only (nested)."""

    rules_alone: list[Classification]
    with_model: list[Classification]
    thresholds: tuple[float, ...]


def cross_validate(
    rows: Sequence[Labelled],
    rules_results: Sequence[Classification],
    scorer: Scorer,
    k: int = 5,
    inner_k: int = 4,
) -> CrossValidated:
    """Nested cross-validation of the rules with the model over ``rows``: for each of
    ``k`` folds, a threshold is chosen on the other folds (``choose_threshold`` with
    ``inner_k`` folds), a model is trained on them, and the fold is tagged with both."""
    combined: list[Classification | None] = [None] * len(rows)
    thresholds: list[float] = []
    for fold in folds(len(rows), k):
        held = set(fold)
        train_idx = [i for i in range(len(rows)) if i not in held]
        train_rows = [rows[i] for i in train_idx]
        t = choose_threshold(train_rows, [rules_results[i] for i in train_idx], inner_k, scorer)
        thresholds.append(t)
        model = train(train_rows, t)
        for i in fold:
            combined[i] = add_model_tags(rules_results[i], rows[i], model)
    return CrossValidated(
        list(rules_results), [c for c in combined if c is not None], tuple(thresholds)
    )


__all__ = [
    "DATA_DIR",
    "LABELS",
    "MODEL_RULE_ID",
    "CrossValidated",
    "Model",
    "Proposal",
    "add_model_tags",
    "choose_threshold",
    "cross_validate",
    "features",
    "folds",
    "gold",
    "out_of_fold_scores",
    "stem",
    "suggestions",
    "train",
]
