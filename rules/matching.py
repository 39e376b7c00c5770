"""Swedish-aware term matching: the vocabulary of a rule, found in a text, fast.

A *term* is a word or a phrase written the way a person would write it in a rule file; its
spelling says how it matches (``docs/rules.md`` has the full table):

==========================  ==============================================================
``kompetensförsörjning``    prefix: at the start of a word, so Swedish compounds and
                            inflections match ("kompetensförsörjningsprojekt", "-en")
``*fond``                   also inside a word: a compound part ("socialfonden",
                            "regionalfonden")
``=kurs``                   the whole word only ("kurs", not "kursen" or "kursiv")
``ESF``, ``CoR``            two or more capitals make an acronym: whole word, case-sensitive,
                            an English plural "s" allowed ("SMEs"); "LIFE" never matches "life"
``eu``, ``sme``             three letters or fewer: whole word (case-insensitive)
``Erasmus+``                a trailing "+" must follow the word in the text
``call for proposals``      several words: a phrase; each word follows the rules above and
                            only spaces or hyphens may stand between them in the text
                            (never sentence punctuation), so "EU-projekt" and "EU projekt"
                            both match the phrase ``EU-projekt``
==========================  ==============================================================

The matcher is built once per rule set. ``Matcher.find`` splits a text into words once and
looks each word up in dictionaries (whole words, prefixes by length) — a regular expression
over the whole text is used only for the few in-word terms — so the cost grows with the
length of the text, not with the number of terms. Every term that occurs is reported, even
where terms overlap ("arbetsmarknad" and "arbetsmarknadspolitik" in the same word), with the
text it matched, as found, for the evidence.
"""

from __future__ import annotations

import enum
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A word is a run of letters and digits ("EU4Health", "2028", "kompetensförsörjning").
WORD_RE = re.compile(r"[^\W_]+")
# Characters a rule term may contain besides letters, digits and spaces. Anything else
# (regex syntax, brackets, "?") is refused so that nobody writes a regex and expects it to work.
_TERM_PUNCT = set("-‐‑‒–—/'’+*=#&:.,()")
# Between the words of a phrase the text may have spaces and hyphens, nothing that ends a
# clause: a phrase must not match across "." or ",".
_BAD_SEPARATOR = re.compile(r"[.,;!?\n\r]")
_MAX_SEPARATOR = 4  # " - " and " – " are fine; a longer gap means the words are not a phrase
SHORT_WORD = 3  # words of this length or shorter match as whole words


class Mode(enum.Enum):
    """How one word of a term meets one word of the text."""

    PREFIX = "prefix"  # the text word starts with it
    EXACT = "exact"  # the text word is it
    INFIX = "infix"  # the text word contains it


class TermSyntaxError(ValueError):
    """A term that cannot be matched as written (the message says why)."""


@dataclass(frozen=True)
class WordSpec:
    """One word of a term, lower-cased, with its matching mode.

    ``case`` holds the exact spelling for acronyms (matched case-sensitively); ``plus`` says
    that a "+" must follow the word in the text ("ESF+", "Erasmus+")."""

    text: str
    mode: Mode
    case: str | None = None
    plus: bool = False

    def matches(self, low: str, orig: str) -> bool:
        """Whether the text word ``low`` (lower-cased; ``orig`` as written) fits this spec."""
        if self.mode is Mode.EXACT:
            if self.case is not None:
                return orig == self.case or orig == self.case + "s"
            return low == self.text
        if self.mode is Mode.PREFIX:
            return low.startswith(self.text)
        return self.text in low


@dataclass(frozen=True)
class Pattern:
    """A parsed term: its words in order. ``source`` is the term as written (no boost)."""

    source: str
    words: tuple[WordSpec, ...]


def _is_acronym(word: str) -> bool:
    return sum(1 for c in word if c.isupper()) >= 2


def parse_term(raw: str) -> tuple[Pattern, float]:
    """Parse one term as written in a rule file into its pattern and its weight.

    A weight is written after a caret: ``"call for proposals^2"``, ``"webinar^0.5"``,
    ``"vocational training^-1"`` (a negative weight is a penalty). Raises
    ``TermSyntaxError`` for a term that is empty or uses characters a term cannot have."""
    text = raw.strip()
    weight = 1.0
    if "^" in text:
        text, _, boost = text.rpartition("^")
        try:
            weight = float(boost)
        except ValueError:
            raise TermSyntaxError(f"the weight after '^' must be a number, not {boost!r}") from None
        if weight == 0:
            raise TermSyntaxError("a weight of 0 would make the term do nothing")
        text = text.strip()
    if not text:
        raise TermSyntaxError("empty term")
    bad = sorted({c for c in text if not (c.isalnum() or c.isspace() or c in _TERM_PUNCT)})
    if bad:
        raise TermSyntaxError(
            f"characters {''.join(bad)!r} cannot be used in a term (terms are words, not regexes)"
        )
    words: list[WordSpec] = []
    for chunk in text.split():
        words.extend(_parse_chunk(chunk, raw))
    if not words:
        raise TermSyntaxError(f"{raw!r} has no letters or digits to match")
    return Pattern(" ".join(text.split()), tuple(words)), weight


def _parse_chunk(chunk: str, raw: str) -> list[WordSpec]:
    """One space-separated part of a term: optional marker, words split at hyphens etc."""
    mode: Mode | None = None
    if chunk[0] in "=*":
        mode = Mode.EXACT if chunk[0] == "=" else Mode.INFIX
        chunk = chunk[1:]
    plus = chunk.endswith("+")
    chunk = chunk.rstrip("+")
    explicit_prefix = chunk.endswith("*")
    chunk = chunk.rstrip("*")
    parts = WORD_RE.findall(chunk)
    if not parts:
        if mode is not None or plus or explicit_prefix:
            raise TermSyntaxError(f"{raw!r}: a marker needs a word after it")
        return []  # a lone "&" or "–" between words of a phrase
    specs: list[WordSpec] = []
    for i, part in enumerate(parts):
        first, last = i == 0, i == len(parts) - 1
        low = part.lower()
        if _is_acronym(part) and not (first and mode is Mode.INFIX):
            spec = WordSpec(low, Mode.EXACT, case=part)
        elif first and mode is Mode.INFIX:
            spec = WordSpec(low, Mode.INFIX)
        elif mode is Mode.EXACT:
            spec = WordSpec(low, Mode.EXACT)
        elif last and explicit_prefix:
            spec = WordSpec(low, Mode.PREFIX)
        elif len(part) <= SHORT_WORD:
            spec = WordSpec(low, Mode.EXACT)
        else:
            spec = WordSpec(low, Mode.PREFIX)
        if last and plus:
            spec = WordSpec(spec.text, spec.mode, spec.case, plus=True)
        specs.append(spec)
    return specs


@dataclass(frozen=True)
class Hit:
    """Where a term was found: the text as written (whole words) and its offset."""

    matched: str
    start: int


class Matcher:
    """Finds every one of a fixed list of patterns in a text; patterns are named by index."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self.patterns = tuple(patterns)
        exact: dict[str, list[int]] = {}
        prefix: dict[str, list[int]] = {}
        infix: dict[str, list[int]] = {}
        for i, pat in enumerate(self.patterns):
            head = pat.words[0]
            if head.mode is Mode.EXACT:
                exact.setdefault(head.text, []).append(i)
                if head.case is not None:  # acronym plural: "SMEs"
                    exact.setdefault(head.text + "s", []).append(i)
            elif head.mode is Mode.PREFIX:
                prefix.setdefault(head.text, []).append(i)
            else:
                infix.setdefault(head.text, []).append(i)
        self._exact = {k: tuple(v) for k, v in exact.items()}
        self._prefix = {k: tuple(v) for k, v in prefix.items()}
        self._prefix_lengths = tuple(sorted({len(k) for k in prefix}))
        # A cheap first test: most words of a text start with no known prefix at all.
        self._head_len = self._prefix_lengths[0] if self._prefix_lengths else 0
        self._heads = frozenset(k[: self._head_len] for k in prefix)
        self._infix = {k: tuple(v) for k, v in infix.items()}
        self._infix_re = (
            re.compile("(?=(?:" + "|".join(re.escape(k) for k in sorted(infix, key=len)) + "))")
            if infix
            else None
        )
        self._infix_words = tuple(sorted(infix, key=len, reverse=True))

    def find(self, text: str) -> dict[int, Hit]:
        """Every pattern that occurs in ``text``, with its first occurrence."""
        if not text:
            return {}
        low = text.lower()
        if len(low) != len(text):
            # A few characters change length when lower-cased; keep offsets aligned.
            low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        spans: list[tuple[int, int]] = []
        words: list[str] = []
        for m in WORD_RE.finditer(low):
            spans.append(m.span())
            words.append(m.group())
        found: dict[int, Hit] = {}
        exact, prefix, heads, head_len = self._exact, self._prefix, self._heads, self._head_len
        lengths = self._prefix_lengths
        for i, w in enumerate(words):
            ids = exact.get(w)
            if ids is not None:
                self._try(ids, i, words, spans, text, low, found)
            if head_len and w[:head_len] in heads:
                n = len(w)
                for length in lengths:
                    if length > n:
                        break
                    ids = prefix.get(w[:length])
                    if ids is not None:
                        self._try(ids, i, words, spans, text, low, found)
        if self._infix_re is not None and words:
            starts = [s for s, _ in spans]
            for m in self._infix_re.finditer(low):
                pos = m.start()
                i = bisect_right(starts, pos) - 1
                if i < 0:
                    continue
                for key in self._infix_words:
                    if low.startswith(key, pos) and pos + len(key) <= spans[i][1]:
                        self._try(self._infix[key], i, words, spans, text, low, found)
        return found

    def _try(
        self,
        ids: Iterable[int],
        i: int,
        words: list[str],
        spans: list[tuple[int, int]],
        text: str,
        low: str,
        found: dict[int, Hit],
    ) -> None:
        """Check candidates whose first word may sit at word ``i``; record the ones that fit."""
        for pid in ids:
            if pid in found:
                continue
            specs = self.patterns[pid].words
            end = self._fit(specs, i, words, spans, text, low)
            if end is not None:
                start = spans[i][0]
                found[pid] = Hit(text[start:end], start)

    @staticmethod
    def _fit(
        specs: tuple[WordSpec, ...],
        i: int,
        words: list[str],
        spans: list[tuple[int, int]],
        text: str,
        low: str,
    ) -> int | None:
        """The end offset of the phrase ``specs`` starting at word ``i``, or None."""
        n = len(words)
        for k, spec in enumerate(specs):
            j = i + k
            if j >= n:
                return None
            s, e = spans[j]
            if k > 0:
                sep = low[spans[j - 1][1] : s]
                if len(sep) > _MAX_SEPARATOR or _BAD_SEPARATOR.search(sep):
                    return None
            if not spec.matches(words[j], text[s:e]):
                return None
            if spec.plus and text[e : e + 1] != "+":
                return None
        end = spans[i + len(specs) - 1][1]
        if specs[-1].plus:
            end += 1
        return end
