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
                            only a short gap of spaces, hyphens or the like may stand between
                            them in the text (never . , ; ! ?), so "EU-projekt" and
                            "EU projekt" both match the phrase ``EU-projekt``
==========================  ==============================================================

The matcher is built once per rule set. ``Matcher.scan`` splits a text into words with one
regex pass and looks each word up in dictionaries (whole words, prefixes of growing length
while they are still the start of some term, in-word parts); what a word fits is cached, as
texts share most of their words. Phrases are checked only where their first word fits and
the next word is the one they need. So the cost grows with the length of the text, not with
the number of terms. Every term that occurs is reported, even where terms overlap
("arbetsmarknad" and "arbetsmarknadspolitik" in the same word), with the text it matched,
as written, for the evidence.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, repeat
from operator import add, is_not
from typing import NamedTuple

# A word is a run of letters and digits ("EU4Health", "2028", "kompetensförsörjning").
WORD_RE = re.compile(r"[^\W_]+")
# A word and the non-word characters after it: the words and separators of a text tile it.
_TOKEN_RE = re.compile(r"([^\W_]+)([\W_]*)")
_LEAD_RE = re.compile(r"[\W_]*")
# Characters a rule term may contain besides letters, digits and spaces. Anything else
# (regex syntax, brackets, "?") is refused so that nobody writes a regex and expects it to work.
_TERM_PUNCT = set("-‐‑‒–—/'’+*=#&:.,()")
# Between the words of a phrase the text may have spaces and hyphens, nothing that ends a
# clause: a phrase must not match across "." or ",".
_BAD_SEPARATOR = re.compile(r"[.,;!?\n\r]")
_MAX_SEPARATOR = 4  # " - " and " – " are fine; a longer gap means the words are not a phrase
SHORT_WORD = 3  # words of this length or shorter match as whole words
_CACHE_SIZE = 100_000  # distinct text words remembered per matcher
_NOTHING: tuple[tuple[int, ...], tuple[_Group, ...]] = ((), ())  # a word no pattern starts with


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
        shown = " ".join(bad)
        raise TermSyntaxError(
            f"it uses {shown}, which a term cannot have (terms are words, not regular expressions)"
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


class Hit(NamedTuple):
    """Where a term was found: the text as written (whole words), the index of its first
    word among the text's words, and how many words it covers."""

    matched: str
    word: int
    words: int = 1


class Scan:
    """One text split into words and the separators after them, and the patterns found in
    it: ``hits`` maps a pattern id to (first word index, number of words, "+" after it).
    Offsets and the matched text are worked out only when asked for (evidence)."""

    __slots__ = ("_starts", "hits", "lead", "low", "seps", "text", "words")

    def __init__(self, text: str) -> None:
        low = text.lower()
        if len(low) != len(text):
            # A few characters change length when lower-cased; keep offsets aligned.
            low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        self.text = text
        self.low = low
        pairs = _TOKEN_RE.findall(low)
        self.words: list[str] = [w for w, _ in pairs]
        self.seps: list[str] = [sep for _, sep in pairs]
        lead = _LEAD_RE.match(low)
        self.lead = lead.end() if lead else 0
        self._starts: list[int] | None = None
        self.hits: dict[int, tuple[int, int, bool]] = {}

    @property
    def starts(self) -> list[int]:
        """The offset of each word in the text."""
        if self._starts is None:
            lens = map(add, map(len, self.words), map(len, self.seps))
            self._starts = list(accumulate(lens, initial=self.lead))
        return self._starts

    def orig(self, i: int, n: int = 1) -> str:
        """Words ``i`` to ``i + n - 1`` as written in the text."""
        starts = self.starts
        return self.text[starts[i] : starts[i + n - 1] + len(self.words[i + n - 1])]

    def matched(self, i: int, n: int = 1, plus: bool = False) -> str:
        """The text a hit covers, as written (whole words, and the "+" it required)."""
        return self.orig(i, n) + ("+" if plus else "")

    def length(self, i: int, n: int = 1) -> int:
        """How many characters the hit at word ``i`` covering ``n`` words spans."""
        if n == 1:
            return len(self.words[i])
        return self.starts[i + n - 1] + len(self.words[i + n - 1]) - self.starts[i]


@dataclass(frozen=True)
class _Group:
    """The patterns whose first word a dictionary lookup found, sorted by what is left to
    check. Phrases are filed by their second word so that the next word of the text picks
    the few worth checking."""

    simple: tuple[int, ...]  # one word, found by the lookup itself
    checked: tuple[tuple[int, str | None, bool], ...]  # one word: (id, acronym, "+" needed)
    by_next: Mapping[str, tuple[int, ...]]  # the next word, whole (exact second word)
    by_next_start: Mapping[str, tuple[int, ...]]  # its first 4 letters (prefix second word)
    phrases_any: tuple[int, ...]  # any other second word: always checked
    has_phrases: bool


_NEXT_START = 4


def _group(pids: Sequence[int], patterns: Sequence[Pattern]) -> _Group:
    simple: list[int] = []
    checked: list[tuple[int, str | None, bool]] = []
    by_next: dict[str, list[int]] = {}
    by_next_start: dict[str, list[int]] = {}
    phrases_any: list[int] = []
    for pid in pids:
        words = patterns[pid].words
        if len(words) == 1:
            w = words[0]
            if w.case is None and not w.plus:
                simple.append(pid)
            else:
                checked.append((pid, w.case, w.plus))
            continue
        second = words[1]
        if second.mode is Mode.EXACT:
            by_next.setdefault(second.text, []).append(pid)
            if second.case is not None:
                by_next.setdefault(second.text + "s", []).append(pid)
        elif second.mode is Mode.PREFIX and len(second.text) >= _NEXT_START:
            by_next_start.setdefault(second.text[:_NEXT_START], []).append(pid)
        else:
            phrases_any.append(pid)
    return _Group(
        tuple(simple),
        tuple(checked),
        {k: tuple(v) for k, v in by_next.items()},
        {k: tuple(v) for k, v in by_next_start.items()},
        tuple(phrases_any),
        bool(by_next or by_next_start or phrases_any),
    )


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
        pats = self.patterns
        self._exact = {k: _group(v, pats) for k, v in exact.items()}
        self._prefix = {k: _group(v, pats) for k, v in prefix.items()}
        # Every beginning of every prefix term (from the shortest term's length on): a word is
        # looked up at growing lengths only while its beginning is still one of these, so
        # most words cost one set lookup.
        self._min_len = min((len(k) for k in prefix), default=0)
        self._stems = frozenset(k[:n] for k in prefix for n in range(self._min_len, len(k) + 1))
        self._infix = tuple((k, _group(v, pats)) for k, v in infix.items())
        # Word -> the one-word patterns it is (found by the lookup alone) and the groups of
        # patterns that need more checks. Texts share most of their words, so
        # each distinct word is looked up once; the cache is bounded.
        self._cache: dict[str, tuple[tuple[int, ...], tuple[_Group, ...]]] = {}

    def _lookup(self, w: str) -> tuple[tuple[int, ...], tuple[_Group, ...]]:
        """For the (lower-cased) text word ``w``: the one-word patterns it matches outright,
        and the groups of patterns whose first word fits it but need more checks."""
        out: list[_Group] = []
        group = self._exact.get(w)
        if group is not None:
            out.append(group)
        length = self._min_len
        while length and length <= len(w):
            stem = w[:length]
            if stem not in self._stems:
                break
            group = self._prefix.get(stem)
            if group is not None:
                out.append(group)
            length += 1
        out.extend(g for key, g in self._infix if key in w)
        simple = tuple(dict.fromkeys(pid for g in out for pid in g.simple))
        rest = tuple(g for g in out if g.checked or g.has_phrases)
        return (simple, rest) if simple or rest else _NOTHING

    def find(self, text: str) -> dict[int, Hit]:
        """Every pattern that occurs in ``text``, with its first occurrence."""
        scan = self.scan(text)
        return {pid: Hit(scan.matched(*h), h[0], h[1]) for pid, h in scan.hits.items()}

    def scan(self, text: str) -> Scan:
        """Split ``text`` into words and find every pattern in it (first occurrences)."""
        t = Scan(text)
        words = t.words
        if not words:
            return t
        found = t.hits
        cache = self._cache
        try_ = self._try
        setdefault = found.setdefault
        entries = list(map(cache.get, words))
        # Only words some pattern may start at (or not yet seen) are visited, picked out in C.
        for i in compress(range(len(words)), map(is_not, entries, repeat(_NOTHING))):
            entry = entries[i]
            if entry is None:
                w = words[i]
                entry = self._lookup(w)
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cache[w] = entry
                if entry is _NOTHING:
                    continue
            simple, groups = entry
            if simple:
                hit = (i, 1, False)
                for pid in simple:
                    setdefault(pid, hit)
            for group in groups:
                try_(group, i, t, found)
        return t

    def _try(self, group: _Group, i: int, t: Scan, found: dict[int, tuple[int, int, bool]]) -> None:
        """Check the patterns whose first word fits word ``i`` (one-word patterns without
        checks are recorded by ``scan``); record the ones that match."""
        for pid, case, plus in group.checked:
            if pid in found:
                continue
            if case is not None:
                orig = t.orig(i)
                if orig != case and orig != case + "s":
                    continue
            if plus and not t.seps[i].startswith("+"):
                continue
            found[pid] = (i, 1, plus)
        if group.has_phrases and i + 1 < len(t.words):
            nxt = t.words[i + 1]
            for pids in (
                group.by_next.get(nxt, ()),
                group.by_next_start.get(nxt[:_NEXT_START], ()),
                group.phrases_any,
            ):
                for pid in pids:
                    if pid not in found:
                        self._check(pid, i, t, found)

    def _check(self, pid: int, i: int, t: Scan, found: dict[int, tuple[int, int, bool]]) -> None:
        specs = self.patterns[pid].words
        if self._fit(specs, i, t):
            found[pid] = (i, len(specs), specs[-1].plus)

    @staticmethod
    def _fit(specs: tuple[WordSpec, ...], i: int, t: Scan) -> bool:
        """Whether the phrase ``specs`` starts at word ``i``."""
        words, seps = t.words, t.seps
        if i + len(specs) > len(words):
            return False
        for k, spec in enumerate(specs):
            j = i + k
            if k > 0:
                sep = seps[j - 1]
                if len(sep) > _MAX_SEPARATOR or _BAD_SEPARATOR.search(sep):
                    return False
            w = words[j]
            mode = spec.mode
            if mode is Mode.EXACT:
                if spec.case is not None:
                    orig = t.orig(j)
                    if orig != spec.case and orig != spec.case + "s":
                        return False
                elif w != spec.text:
                    return False
            elif mode is Mode.PREFIX:
                if not w.startswith(spec.text):
                    return False
            elif spec.text not in w:
                return False
            if spec.plus and not seps[j].startswith("+"):
                return False
        return True
