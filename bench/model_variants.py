"""Benchmark: model variants with the rules, by nested cross-validation (issue 13, point 3).

    python bench/model_variants.py [--variants PATTERNS] [--folds 5] [--data FILE ...]
    python bench/model_variants.py --nested-select [--variants PATTERNS]
    python bench/model_variants.py --shuffles 9 [--variants PATTERNS]
    python bench/model_variants.py --alone [--variants PATTERNS]
    python bench/model_variants.py --changes --variants lr-stack/one/add

Scores the rules alone and the rules with a learned model over the labelled sets (by
default dev + dev-2 in ``tests/data/classification/``, 185 items) and prints the table of
docs/classification.md ("Trying harder"): every variant's cross-validated areas and themes
macro-F1 and relevance accuracy, with the change against the rules alone and the cut-offs
chosen in each outer fold, then the compact table of changes (areas / themes).

A variant is ``MODEL/CUTOFFS/DECISION``, 7 × 2 × 5 = 70 in all:

- MODEL: ``nb-base`` (naive Bayes over the features of ``rules.learned``, the model in
  force), ``nb-char`` (+ character 3-5-grams within words), ``nb-stack`` (+ what the rules
  said about the item: tags weak or strong, rule ids, relevant or excluded), ``lr-base``,
  ``lr-char``, ``lr-stack``, ``lr-stackchar`` (one-vs-rest logistic regression, pure Python
  SGD with fixed settings, over the same features);
- CUTOFFS: ``one`` (one add and one remove cut-off for all labels) or ``per-label``;
- DECISION: ``add`` (a label the rules did not give becomes a tag at or above the cut-off),
  ``rem`` (a rule's tag is dropped below a cut-off), ``rem-weak`` (only a rule tag of score
  ≤ 1 or ≤ 2), ``add-rem``, ``add-rem-weak``.

``--variants`` takes comma-separated shell-style patterns over these names (``lr-stack/*``,
``*/one/add``, ``nb-base/one/add``). Every figure is nested: in each of ``--folds`` outer
folds (by position, as ``rules.learned.folds``) the cut-offs are chosen on the training
folds' out-of-fold scores (``--folds`` − 1 inner folds), a model is trained on the
training folds, and only then is the held-out fold tagged. The rules themselves are
scored as they stand. Models are trained once per model and outer fold and shared by that
model's variants, so a filter by model saves most of the time.

``--nested-select`` adds a level: in each outer fold the variant itself is chosen, among
the selected ones (default: nb-base, nb-stack, lr-base, lr-stack × one, per-label × add,
rem, add-rem: 24), by a cross-validation of the training folds whose cut-offs come from an
inner-inner split; it prints each fold's pick and the figures of the picks.
``--shuffles N`` repeats the selected variants over N random fold assignments (seeds 1 … N)
besides the one by position and prints the changes against the rules in each.
``--alone`` prints each selected model's own out-of-fold macro-F1 with each label's best
threshold picked in hindsight (an optimistic bound), against the rules'.
``--changes`` lists the items each selected variant tags differently from the rules.

Deterministic: features are iterated in sorted order and the SGD shuffles with a fixed
seed, so the figures do not depend on ``PYTHONHASHSEED``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rules import classify, learned, load_rules  # noqa: E402
from rules.evaluate import LabelledItem, Report, load_labelled, score  # noqa: E402
from rules.learned import LABELS, MODEL_RULE_ID, folds, gold  # noqa: E402
from watcher.types import Classification, Tag  # noqa: E402

DATA_DIR = REPO / "tests" / "data" / "classification"
DEFAULT_DATA = [DATA_DIR / "classification-dev.jsonl", DATA_DIR / "classification-dev-2.jsonl"]

Label = tuple[str, str]
Scores = list[float]
Scorer = Callable[[int], Scores]
Trainer = Callable[[Sequence[int]], Scorer]
# One label's cut-offs: add at or above, remove below, remove only if the rule score ≤.
Params = tuple[float, float, float]
NO_CHANGE: Params = (math.inf, -math.inf, math.inf)
L = len(LABELS)
N_AREAS = sum(1 for kind, _ in LABELS if kind == "area")
N_THEMES = L - N_AREAS


# -- data -------------------------------------------------------------------------------------


@dataclass
class Data:
    """The labelled rows, what the rules say about each, and a cache of features."""

    rows: list[LabelledItem]
    rules: list[Classification]
    train_gold: list[frozenset[Label]]  # what models learn: no labels on a not-relevant row
    score_gold: list[frozenset[Label]]  # what ``score`` counts: the row's labels as given
    rule_tags: list[dict[Label, float]]  # the rules' tags and their scores
    eligible: list[bool]  # the model may act on the row (relevant, or no rule matched)
    _features: dict[tuple[str, int], tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: Sequence[Path]) -> Data:
        rows = [r for p in paths for r in load_labelled(p)]
        ruleset = load_rules()
        results = [classify(r, ruleset) for r in rows]
        return cls(
            rows=rows,
            rules=results,
            train_gold=[gold(r) for r in rows],
            score_gold=[
                frozenset(("area", a) for a in r.areas) | frozenset(("theme", t) for t in r.themes)
                for r in rows
            ],
            rule_tags=[{(t.kind, t.tag): t.score for t in c.tags} for c in results],
            eligible=[c.relevant or c.reason == "no rule matched" for c in results],
        )

    def features(self, kind: str, i: int) -> tuple[str, ...]:
        """Row ``i``'s features of ``kind`` (base, char, stackbase, stackchar), sorted."""
        key = (kind, i)
        cached = self._features.get(key)
        if cached is None:
            row = self.rows[i]
            out = learned.features(row)
            if "char" in kind:
                for w in learned._words(row.title) + learned._words(row.summary):
                    x = "<" + w + ">"
                    for n in (3, 4, 5):
                        for j in range(len(x) - n + 1):
                            out.add("c:" + x[j : j + n])
            if kind.startswith("stack"):
                c = self.rules[i]
                out.add("R:relevant" if c.relevant else "R:excluded")
                for t in c.tags:
                    out.add(f"R:{t.kind}:{t.tag}")
                    out.add(f"R:{t.kind}:{t.tag}:{'weak' if t.score < 2 else 'strong'}")
                    out.add("rid:" + t.rule_id)
            cached = self._features[key] = tuple(sorted(out))
        return cached


# -- models: a trainer takes training rows and returns a scorer of rows ---------------------


def naive_bayes(
    data: Data, kind: str, alpha: float = learned.ALPHA, min_df: int = learned.MIN_DF
) -> Trainer:
    """One-vs-rest naive Bayes log-count ratios, as ``rules.learned`` (features of ``kind``)."""

    def train(idx: Sequence[int]) -> Scorer:
        df: dict[str, int] = {}
        labels = [[LABELS.index(g) for g in data.train_gold[i]] for i in idx]
        npos = [0] * L
        for i, ls in zip(idx, labels, strict=True):
            for lab in ls:
                npos[lab] += 1
            for f in data.features(kind, i):
                df[f] = df.get(f, 0) + 1
        kept = {f for f, c in df.items() if c >= min_df}
        pos: dict[str, list[int]] = {f: [0] * L for f in kept}
        for i, ls in zip(idx, labels, strict=True):
            for f in data.features(kind, i):
                c = pos.get(f)
                if c is not None:
                    for lab in ls:
                        c[lab] += 1
        tp = [alpha * len(kept)] * L
        tn = [alpha * len(kept)] * L
        for f in kept:
            for lab in range(L):
                tp[lab] += pos[f][lab]
                tn[lab] += df[f] - pos[f][lab]
        weights = {
            f: [
                math.log((pos[f][lab] + alpha) / tp[lab])
                - math.log((df[f] - pos[f][lab] + alpha) / tn[lab])
                for lab in range(L)
            ]
            for f in kept
        }
        n = len(idx)
        bias = [math.log((npos[lab] + alpha) / (n - npos[lab] + alpha)) for lab in range(L)]

        def scores(i: int) -> Scores:
            s = list(bias)
            for f in data.features(kind, i):
                w = weights.get(f)
                if w is not None:
                    for lab in range(L):
                        s[lab] += w[lab]
            return s

        return scores

    return train


def logistic(
    data: Data,
    kind: str,
    lam: float = 1e-3,
    epochs: int = 20,
    min_df: int = 2,
    rate: float = 0.5,
) -> Trainer:
    """One-vs-rest logistic regression by SGD (L2 ``lam``, learning rate ``rate`` decaying),
    binary features scaled to unit length per item. The settings were fixed, not tuned."""

    def train(idx: Sequence[int]) -> Scorer:
        df: dict[str, int] = {}
        for i in idx:
            for f in data.features(kind, i):
                df[f] = df.get(f, 0) + 1
        vocab = {f: j for j, f in enumerate(sorted(f for f, c in df.items() if c >= min_df))}
        xs: list[tuple[list[int], float]] = []
        for i in idx:
            js = [vocab[f] for f in data.features(kind, i) if f in vocab]
            xs.append((js, 1 / math.sqrt(len(js)) if js else 0.0))
        nf = len(vocab)
        per_label: list[list[float]] = []
        biases: list[float] = []
        rnd = random.Random(13)
        order = list(range(len(idx)))
        for lab in LABELS:
            y = [1.0 if lab in data.train_gold[i] else 0.0 for i in idx]
            w = [0.0] * nf
            p = sum(y) / len(y)
            b = math.log((p + 0.01) / (1 - p + 0.01))
            t = 0
            for _ in range(epochs):
                rnd.shuffle(order)
                for k in order:
                    t += 1
                    eta = rate / (1 + lam * rate * t)
                    js, nv = xs[k]
                    z = b + nv * sum(map(w.__getitem__, js))
                    z = max(-30.0, min(30.0, z))
                    g = 1 / (1 + math.exp(-z)) - y[k]
                    b -= eta * g * 0.1
                    decay = 1 - eta * lam
                    step = eta * g * nv
                    if abs(step) < 1e-6:
                        for j in js:
                            w[j] *= decay
                        continue
                    for j in js:
                        w[j] = w[j] * decay - step
            per_label.append(w)
            biases.append(b)
        weights = {f: [per_label[lab][j] for lab in range(L)] for f, j in vocab.items()}

        def scores(i: int) -> Scores:
            ws = [weights[f] for f in data.features(kind, i) if f in weights]
            nv = 1 / math.sqrt(len(ws)) if ws else 0.0
            s = list(biases)
            for w in ws:
                for lab in range(L):
                    s[lab] += nv * w[lab]
            return s

        return scores

    return train


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    family: str  # "nb" (log-odds) or "lr" (logits): sets the grid of cut-offs
    features: str

    def trainer(self, data: Data) -> Trainer:
        make = naive_bayes if self.family == "nb" else logistic
        return make(data, self.features)


MODELS = (
    ModelSpec("nb-base", "NB, existing features", "nb", "base"),
    ModelSpec("nb-char", "NB + char 3–5-grams", "nb", "char"),
    ModelSpec("nb-stack", "NB + rule outputs (stacked)", "nb", "stackbase"),
    ModelSpec("lr-base", "LR, existing features", "lr", "base"),
    ModelSpec("lr-char", "LR + char 3–5-grams", "lr", "char"),
    ModelSpec("lr-stack", "LR + rule outputs (stacked)", "lr", "stackbase"),
    ModelSpec("lr-stackchar", "LR + char + rule outputs", "lr", "stackchar"),
)
DECISIONS = (
    ("add", "adds"),
    ("rem", "removes"),
    ("rem-weak", "removes weak"),
    ("add-rem", "adds and removes"),
    ("add-rem-weak", "adds, removes weak"),
)


# -- decisions and the choice of cut-offs ---------------------------------------------------


def label_counts(
    data: Data, idx: Sequence[int], scores: Sequence[Scores], lab: int, p: Params
) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of label ``lab`` over rows
    ``idx`` (with their model scores) under cut-offs ``p``."""
    label = LABELS[lab]
    add_at, remove_below, weak_cut = p
    rule_tags, eligible, score_gold = data.rule_tags, data.eligible, data.score_gold
    tp = fp = fn = 0
    for i, s in zip(idx, scores, strict=True):
        have = rule_tags[i]
        if label in have:
            got = not (s[lab] < remove_below and have[label] <= weak_cut)
        else:
            got = eligible[i] and s[lab] >= add_at
        g = label in score_gold[i]
        if got and g:
            tp += 1
        elif got:
            fp += 1
        elif g:
            fn += 1
    return tp, fp, fn


def f1(counts: tuple[int, int, int]) -> float:
    tp, fp, fn = counts
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def grid(decision: str, family: str) -> tuple[list[float], list[float], list[float]]:
    """Candidate add cut-offs, remove cut-offs and rule-score limits (each first "none")."""
    if family == "nb":
        ts = [float(x) for x in range(-60, 61, 4)]
    else:
        ts = [x / 2 for x in range(-12, 13)]
    adds = [math.inf] + ([t for t in ts if t >= 0] if "add" in decision else [])
    removes = [-math.inf] + (ts if "rem" in decision else [])
    weak = [math.inf] + ([1.0, 2.0] if "weak" in decision else [])
    return adds, removes, weak


def candidates(decision: str, family: str) -> list[Params]:
    adds, removes, weak = grid(decision, family)
    return [
        (a, r, w)
        for a in adds
        for r in removes
        for w in (weak if r != -math.inf else [math.inf])
        if (a, r, w) != NO_CHANGE
    ]


Chooser = Callable[[Data, Sequence[int], Sequence[Scores], str, str], list[Params]]


def choose_per_label(
    data: Data, idx: Sequence[int], scores: Sequence[Scores], decision: str, family: str
) -> list[Params]:
    """Each label's cut-offs for that label's F1 (ties go to "no change")."""
    out = []
    cands = candidates(decision, family)
    for lab in range(L):
        best = f1(label_counts(data, idx, scores, lab, NO_CHANGE)) + 1e-9
        chosen = NO_CHANGE
        for p in cands:
            v = f1(label_counts(data, idx, scores, lab, p))
            if v > best + 1e-9:
                best, chosen = v, p
        out.append(chosen)
    return out


def choose_one(
    data: Data, idx: Sequence[int], scores: Sequence[Scores], decision: str, family: str
) -> list[Params]:
    """One set of cut-offs for all labels, for the mean of areas' and themes' macro-F1."""
    weights = [1 / N_AREAS if kind == "area" else 1 / N_THEMES for kind, _ in LABELS]

    def total(p: Params) -> float:
        return sum(w * f1(label_counts(data, idx, scores, lab, p)) for lab, w in enumerate(weights))

    best = total(NO_CHANGE) + 1e-9
    chosen = NO_CHANGE
    for p in candidates(decision, family):
        v = total(p)
        if v > best + 1e-9:
            best, chosen = v, p
    return [chosen] * L


CUTOFFS: tuple[tuple[str, str, Chooser], ...] = (
    ("one", "one threshold", choose_one),
    ("per-label", "per label", choose_per_label),
)


def apply(data: Data, i: int, s: Scores, params: Sequence[Params]) -> Classification:
    """Row ``i``'s classification: the rules' with the model's additions and removals."""
    rules = data.rules[i]
    if not data.eligible[i]:
        return rules
    have = data.rule_tags[i]
    labels: set[Label] = set()
    for lab, label in enumerate(LABELS):
        add_at, remove_below, weak_cut = params[lab]
        if label in have:
            if not (s[lab] < remove_below and have[label] <= weak_cut):
                labels.add(label)
        elif s[lab] >= add_at:
            labels.add(label)
    # A removal never makes an item not relevant; an addition makes it relevant.
    relevant = rules.relevant or bool(labels - set(have))
    if not relevant:
        return rules
    return Classification(tuple(Tag(k, t, MODEL_RULE_ID) for k, t in sorted(labels)), relevant)


# -- nested cross-validation ----------------------------------------------------------------


@dataclass(frozen=True)
class OuterFold:
    held: list[int]  # the held-out rows
    train: list[int]  # the training rows
    scores: dict[int, Scores]  # held-out rows' scores from a model on ``train``
    oof: dict[int, Scores]  # training rows' out-of-fold scores from inner models


def precompute(trainer: Trainer, idx: Sequence[int], k: int, inner_k: int) -> list[OuterFold]:
    """``k`` folds over the positions of ``idx``, each with its models' scores."""
    out = []
    for f in folds(len(idx), k):
        held = [idx[j] for j in f]
        held_set = set(held)
        train = [i for i in idx if i not in held_set]
        scorer = trainer(train)
        oof: dict[int, Scores] = {}
        for inner in folds(len(train), inner_k):
            inner_held = {train[j] for j in inner}
            inner_scorer = trainer([i for i in train if i not in inner_held])
            for i in inner_held:
                oof[i] = inner_scorer(i)
        out.append(OuterFold(held, train, {i: scorer(i) for i in held}, oof))
    return out


def run(
    data: Data, pre: Sequence[OuterFold], chooser: Chooser, decision: str, family: str
) -> tuple[dict[int, Classification], list[list[Params]]]:
    """Every held-out row's classification, and the cut-offs chosen in each fold."""
    results: dict[int, Classification] = {}
    chosen = []
    for fold in pre:
        params = chooser(data, fold.train, [fold.oof[i] for i in fold.train], decision, family)
        chosen.append(params)
        for i in fold.held:
            results[i] = apply(data, i, fold.scores[i], params)
    return results, chosen


def report(data: Data, idx: Sequence[int], results: dict[int, Classification]) -> Report:
    return score([data.rows[i] for i in idx], [results[i] for i in idx])


def mean_macro(rep: Report) -> float:
    return (rep.areas.macro_f1 + rep.themes.macro_f1) / 2


# -- variants and output --------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    model: ModelSpec
    cutoffs: str
    cutoffs_title: str
    chooser: Chooser
    decision: str
    decision_title: str

    @property
    def name(self) -> str:
        return f"{self.model.name}/{self.cutoffs}/{self.decision}"

    @property
    def title(self) -> str:
        return f"{self.model.title}, {self.cutoffs_title}, {self.decision_title}"


VARIANTS = [
    Variant(m, c, ct, ch, d, dt) for m in MODELS for c, ct, ch in CUTOFFS for d, dt in DECISIONS
]
NESTED_DEFAULT = [
    v.name
    for v in VARIANTS
    if v.model.name in ("nb-base", "nb-stack", "lr-base", "lr-stack")
    and v.decision in ("add", "rem", "add-rem")
]


def select(patterns: str | None, default: Sequence[str] | None = None) -> list[Variant]:
    if patterns is None:
        names = set(default) if default is not None else {v.name for v in VARIANTS}
        return [v for v in VARIANTS if v.name in names]
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    return [v for v in VARIANTS if any(fnmatchcase(v.name, p) for p in pats)]


def num(x: float, digits: int = 3, sign: bool = False) -> str:
    """A figure as in the docs: a real minus sign."""
    return format(x, f"{'+' if sign else ''}.{digits}f").replace("-", "−")


def cut(x: float) -> str:
    return format(x, "g").replace("-", "−")


def with_change(x: float, base: float) -> str:
    return f"{num(x)} ({num(x - base, sign=True)})"


def change(x: float, base: float) -> str:
    """The compact table's change: "0" when it is nothing to three decimals."""
    s = num(x - base, sign=True)
    return "0" if s in ("+0.000", "−0.000") else s


def describe_cutoffs(variant: Variant, chosen: Sequence[Sequence[Params]]) -> str:
    if variant.cutoffs == "per-label":
        changed = (str(sum(p != NO_CHANGE for p in params)) for params in chosen)
        return "labels changed: " + ", ".join(changed)
    parts = []
    for params in chosen:
        add_at, remove_below, weak_cut = params[0]
        s = []
        if add_at != math.inf:
            s.append(f"add ≥ {cut(add_at)}")
        if remove_below != -math.inf:
            only = "" if weak_cut == math.inf else f" if rule score ≤ {cut(weak_cut)}"
            s.append(f"remove < {cut(remove_below)}{only}")
        parts.append(" & ".join(s) or "none")
    return "; ".join(parts)


def by_model(variants: Sequence[Variant]) -> list[tuple[ModelSpec, list[Variant]]]:
    return [
        (m, [v for v in variants if v.model == m])
        for m in MODELS
        if any(v.model == m for v in variants)
    ]


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def print_changes(data: Data, results: dict[int, Classification]) -> None:
    for i in sorted(results):
        c, r = results[i], data.rules[i]
        now = sorted((t.kind, t.tag) for t in c.tags)
        if now != sorted(data.rule_tags[i]) or c.relevant != r.relevant:
            row = data.rows[i]
            print(
                f"    {i} {row.title[:70]!r}: rules {sorted(data.rule_tags[i])}"
                f"{'' if r.relevant else ' (' + r.reason + ')'}; now {now}"
                f"{'' if c.relevant else ' (not relevant)'}; labelled {sorted(data.score_gold[i])}"
                f"{'' if row.relevant else ' (not relevant)'}"
            )


def table(data: Data, variants: Sequence[Variant], k: int, changes: bool) -> None:
    n = len(data.rows)
    base = score(data.rows, data.rules)
    a0, t0, v0 = base.areas.macro_f1, base.themes.macro_f1, base.relevance_accuracy
    print("| variant | areas | themes | relevance | thresholds chosen per fold |")
    print("|---|---|---|---|---|")
    print(f"| rules alone | {num(a0)} | {num(t0)} | {num(v0)} | – |", flush=True)
    reps: dict[str, Report] = {}
    changed: dict[str, dict[int, Classification]] = {}
    for model, vs in by_model(variants):
        t = time.perf_counter()
        pre = precompute(model.trainer(data), range(n), k, k - 1)
        progress(f"{model.name}: models trained in {time.perf_counter() - t:.1f} s")
        for v in vs:
            results, chosen = run(data, pre, v.chooser, v.decision, model.family)
            rep = reps[v.name] = report(data, range(n), results)
            print(
                f"| {v.title} | {with_change(rep.areas.macro_f1, a0)} | "
                f"{with_change(rep.themes.macro_f1, t0)} | "
                f"{with_change(rep.relevance_accuracy, v0)} | {describe_cutoffs(v, chosen)} |",
                flush=True,
            )
            if changes:
                changed[v.title] = results
        progress(f"{model.name}: done in {time.perf_counter() - t:.1f} s")
    print()
    print(
        f"Change against the rules alone (areas / themes; rules alone {num(a0)} / {num(t0)}, "
        f"relevance {num(v0)}):"
    )
    print()
    print("| model, cut-offs | " + " | ".join(dt for _, dt in DECISIONS) + " |")
    print("|---|" + "---|" * len(DECISIONS))
    for model in MODELS:
        for c, ct, _ in CUTOFFS:
            cells = []
            for d, _ in DECISIONS:
                got = reps.get(f"{model.name}/{c}/{d}")
                cells.append(
                    ""
                    if got is None
                    else f"{change(got.areas.macro_f1, a0)} / {change(got.themes.macro_f1, t0)}"
                )
            if any(cells):
                print(f"| {model.title}, {ct} | " + " | ".join(cells) + " |")
    for title, results in changed.items():
        print()
        print(f"Items {title} tags differently from the rules:")
        print_changes(data, results)


def nested_select(data: Data, variants: Sequence[Variant], k: int) -> None:
    """Choose the variant inside each outer fold by a cross-validation of its training rows
    (``k`` − 1 folds, cut-offs from ``k`` − 2 inner-inner folds); score the picks."""
    n = len(data.rows)
    final: dict[int, Classification] = {}
    picks: list[str] = []
    trainers = {m.name: m.trainer(data) for m, _ in by_model(variants)}
    print(f"choosing among {len(variants)} variants: {', '.join(v.name for v in variants)}")
    t = time.perf_counter()
    for j, fold in enumerate(folds(n, k), 1):
        held = set(fold)
        train = [i for i in range(n) if i not in held]
        base = mean_macro(report(data, train, dict(enumerate(data.rules))))
        best, pick = base + 1e-9, None
        log: list[tuple[float, str]] = []
        for model, vs in by_model(variants):
            pre = precompute(trainers[model.name], train, k - 1, k - 2)
            for v in vs:
                results, _ = run(data, pre, v.chooser, v.decision, model.family)
                value = mean_macro(report(data, train, results))
                log.append((value, v.name))
                if value > best + 1e-9:
                    best, pick = value, v
        top = ", ".join(f"{name} {value:.4f}" for value, name in sorted(log, reverse=True)[:3])
        print(
            f"fold {j}: rules {base:.4f}; pick {pick.name if pick else 'rules alone'}; "
            f"top {top} ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
        if pick is None:
            picks.append("rules alone")
            for i in fold:
                final[i] = data.rules[i]
            continue
        picks.append(pick.name)
        trainer = trainers[pick.model.name]
        oof: dict[int, Scores] = {}
        for inner in folds(len(train), k - 1):
            inner_held = {train[j] for j in inner}
            scorer = trainer([i for i in train if i not in inner_held])
            for i in inner_held:
                oof[i] = scorer(i)
        params = pick.chooser(
            data, train, [oof[i] for i in train], pick.decision, pick.model.family
        )
        scorer = trainer(train)
        for i in fold:
            final[i] = apply(data, i, scorer(i), params)
    rep = report(data, range(n), final)
    base_rep = score(data.rows, data.rules)
    print(
        f"variant chosen inside each fold: areas "
        f"{with_change(rep.areas.macro_f1, base_rep.areas.macro_f1)}, themes "
        f"{with_change(rep.themes.macro_f1, base_rep.themes.macro_f1)}, relevance "
        f"{with_change(rep.relevance_accuracy, base_rep.relevance_accuracy)}; picks: "
        + "; ".join(picks)
    )


def shuffles(data: Data, variants: Sequence[Variant], k: int, count: int) -> None:
    """The selected variants over the fold assignment by position and ``count`` shuffles."""
    n = len(data.rows)
    base = score(data.rows, data.rules)
    a0, t0, v0 = base.areas.macro_f1, base.themes.macro_f1, base.relevance_accuracy
    seeds: list[int | None] = [None, *range(1, count + 1)]
    print(
        f"Change against the rules alone over {len(seeds)} fold assignments "
        f"(by position, then seeds 1 … {count}):"
    )
    print()
    print("| variant | areas | themes | relevance | mean areas / themes / relevance |")
    print("|---|---|---|---|---|")
    for model, vs in by_model(variants):
        t = time.perf_counter()
        trainer = model.trainer(data)
        reps: dict[str, list[Report]] = {v.name: [] for v in vs}
        for seed in seeds:
            order = list(range(n))
            if seed is not None:
                random.Random(seed).shuffle(order)
            pre = precompute(trainer, order, k, k - 1)
            for v in vs:
                results, _ = run(data, pre, v.chooser, v.decision, model.family)
                reps[v.name].append(report(data, range(n), results))
            progress(f"{model.name}: {len(reps[vs[0].name])} of {len(seeds)} assignments")
        for v in vs:
            rs = reps[v.name]
            cols = [
                [r.areas.macro_f1 - a0 for r in rs],
                [r.themes.macro_f1 - t0 for r in rs],
                [r.relevance_accuracy - v0 for r in rs],
            ]
            means = " / ".join(num(sum(c) / len(c), sign=True) for c in cols)
            print(
                f"| {v.title} | "
                + " | ".join(", ".join(change(x, 0.0) for x in c) for c in cols)
                + f" | {means} |",
                flush=True,
            )
        progress(f"{model.name}: done in {time.perf_counter() - t:.1f} s")


def alone(data: Data, variants: Sequence[Variant], k: int) -> None:
    """Each model by itself, out of fold, with each label's best threshold in hindsight."""
    n = len(data.rows)
    everything = range(n)
    names = [f"{kind}:{label}" for kind, label in LABELS]
    print(f"Model alone, out of fold ({k} folds), each label's best threshold in hindsight:")
    print()
    print("| model | areas | themes | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * L)
    zero: list[Scores] = [[0.0] * L] * n
    rule_f1 = [f1(label_counts(data, everything, zero, lab, NO_CHANGE)) for lab in range(L)]
    rows: list[tuple[str, list[float]]] = [("rules alone", rule_f1)]
    for model, _ in by_model(variants):
        trainer = model.trainer(data)
        oof: list[Scores] = [[] for _ in everything]
        for fold in folds(n, k):
            held = set(fold)
            scorer = trainer([i for i in everything if i not in held])
            for i in fold:
                oof[i] = scorer(i)
        best = []
        for lab in range(L):
            label = LABELS[lab]
            ranked = sorted(((s[lab], label in data.score_gold[i]) for i, s in enumerate(oof)))
            positives = sum(g for _, g in ranked)
            top = 0.0
            for j, (value, _) in enumerate(ranked):
                if j and ranked[j - 1][0] == value:
                    continue  # the threshold ``value`` takes every score ≥ value
                tp = sum(g for _, g in ranked[j:])
                top = max(top, f1((tp, n - j - tp, positives - tp)))
            best.append(top)
        rows.append((model.title, best))
    for title, f in rows:
        areas = sum(f[:N_AREAS]) / N_AREAS
        themes = sum(f[N_AREAS:]) / N_THEMES
        print(
            f"| {title} | {areas:.2f} | {themes:.2f} | " + " | ".join(f"{x:.2f}" for x in f) + " |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, action="append", help="labelled JSONL (repeat; default dev + dev-2)"
    )
    ap.add_argument("--variants", help="comma-separated patterns: lr-stack/*, */one/add, …")
    ap.add_argument("--folds", type=int, default=5, help="outer folds (inner: one fewer)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--nested-select", action="store_true", help="also choose the variant inside each fold"
    )
    mode.add_argument("--shuffles", type=int, metavar="N", help="N random fold assignments too")
    mode.add_argument("--alone", action="store_true", help="each model alone, best thresholds")
    ap.add_argument("--changes", action="store_true", help="list the items each variant changes")
    args = ap.parse_args(argv)
    paths: list[Path] = args.data or DEFAULT_DATA
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"no data at {missing[0]}; pass --data FILE", file=sys.stderr)
        return 2
    min_folds = 4 if args.nested_select else 3
    if args.folds < min_folds:
        print(f"--folds must be at least {min_folds}", file=sys.stderr)
        return 2
    variants = select(args.variants, NESTED_DEFAULT if args.nested_select else None)
    if not variants:
        print(
            f"no variant matches {args.variants!r}; names look like lr-stack/one/add",
            file=sys.stderr,
        )
        return 2
    t = time.perf_counter()
    data = Data.load(paths)
    print(
        f"data: {len(data.rows)} items from {', '.join(p.name for p in paths)}; {args.folds} folds"
    )
    print()
    if args.nested_select:
        nested_select(data, variants, args.folds)
    elif args.shuffles is not None:
        shuffles(data, variants, args.folds, args.shuffles)
    elif args.alone:
        alone(data, variants, args.folds)
    else:
        table(data, variants, args.folds, args.changes)
    print()
    counted = f"{len(by_model(variants))} models" if args.alone else f"{len(variants)} variants"
    print(f"{counted} in {time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
