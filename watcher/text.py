"""Text helpers at the bottom of the layers: clean text, HTML to text, titles as words,
call identifiers named in a text, and what search scans. Pure."""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import urljoin

_WS_RE = re.compile(r"[ \t\r\f\v\u00a0]+")
_NL_RE = re.compile(r"\n\s*\n+")
# Characters XML 1.0 does not allow; scraped text must never break a feed.
_XML_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Collapse white space, drop XML-invalid characters, NFC-normalise."""
    text = unicodedata.normalize("NFC", _XML_INVALID_RE.sub("", text))
    lines = [_WS_RE.sub(" ", line).strip() for line in text.split("\n")]
    return _NL_RE.sub("\n\n", "\n".join(lines)).strip()


# An absolute http(s) URL that ``urllib.parse.urljoin`` gives back as it is, whatever the
# base: a lower-case scheme, a host, then only characters it neither drops nor moves (no
# ";" parameters, no empty "?" or "#", no white space, no brackets, ASCII).
_URL_CHARS = r"[A-Za-z0-9\-._~%!$&'()*+,=:@]"
_PLAIN_ABSOLUTE_URL = re.compile(
    rf"https?://{_URL_CHARS}+(?:/(?:{_URL_CHARS}|/)*)?"
    rf"(?:\?(?:{_URL_CHARS}|[/?])+)?(?:#(?:{_URL_CHARS}|[/?#])+)?"
)


def join_url(base: str, link: str) -> str:
    """``urljoin(base, link)``: a link that is already a plain absolute http(s) URL (most
    links in feeds) comes back at once, as urljoin would give it; ``tests/test_text.py``
    holds the two equal."""
    return link if is_plain_absolute_url(link) else urljoin(base, link)


def is_plain_absolute_url(link: str) -> bool:
    """Whether ``link`` is an absolute http(s) URL that ``join_url`` gives back as it is."""
    return _PLAIN_ABSOLUTE_URL.fullmatch(link) is not None


def one_line(text: str) -> str:
    """A single line: titles never carry CR/LF (they end up in email headers)."""
    return " ".join(clean_text(text).split())


_BLOCK_TAGS = (
    "p",
    "div",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "section",
    "article",
    "ul",
    "ol",
    "table",
    "blockquote",
)


@functools.lru_cache(maxsize=512)
def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment, paragraphs and list items kept apart. Kept for
    the last fragments asked for: an adapter reads an entry's summary as text to find its
    dates, and normalising the entry reads it again."""
    if "<" not in markup and "&" not in markup:
        return clean_text(markup)
    # Imported on first use: a polling process whose workers parse never loads lxml (6 MiB
    # of its peak memory).
    import lxml.etree
    import lxml.html

    try:
        root = lxml.html.fragment_fromstring(markup, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return clean_text(html.unescape(re.sub(r"<[^>]*>", " ", markup)))
    for bad in list(root.iter("script", "style", "noscript", "template")):
        bad.drop_tree()
    for el in root.iter("br"):
        el.tail = "\n" + (el.tail or "")
    for el in root.iter(*_BLOCK_TAGS):
        el.tail = "\n" + (el.tail or "")
        if el.tag not in ("li", "tr") and (el.text is not None or len(el)):
            el.text = "\n" + (el.text or "")
    return clean_text(root.text_content())


_IDENTIFIER_RE = re.compile(r"(?<![\w-])[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+){2,}(?![\w-])")


def identifier_tokens(text: str) -> set[str]:
    """Words in a text that look like call identifiers (``HORIZON-CL5-2027-01-D3-02``,
    ``ERASMUS-EDU-2027-PI-ALL-INNO``), upper-cased: a national page naming a call.

    The pattern runs only on the text's whitespace-separated pieces with two hyphens or
    more, which finds what it finds on the whole text: a match holds no whitespace and has
    two hyphens, and whitespace is a boundary for it as the start and end of a piece are.
    A poll's write looks at every new item's title and summary (its first 2,000
    characters), and running the pattern over all of it took three times as long."""
    if text.count("-") < 2:
        return set()
    return {
        m.group(0).upper()
        for piece in text.split()
        if piece.count("-") >= 2
        for m in _IDENTIFIER_RE.finditer(piece)
        if len(m.group(0)) >= 8
    }


_STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "for",
        "and",
        "to",
        "in",
        "on",
        "call",
        "calls",
        "proposals",
        "proposal",
        "för",
        "och",
        "av",
        "till",
        "i",
        "på",
        "utlysning",
        "utlysningen",
        "inom",
        "med",
    ]
)


_WORD_RE = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=4096)
def title_words(title: str) -> tuple[str, ...]:
    """A title's words as duplicate matching compares them: lower case, without accents
    and stop words ("Förändring" → "forandring"). Kept for the last titles asked for: a
    poll's write asks for each new title's words three times (its lookup keys, its
    duplicate check, its entry in the duplicate index)."""
    text = unicodedata.normalize("NFKD", title.lower()).encode("ascii", "ignore").decode("ascii")
    return tuple(w for w in _WORD_RE.findall(text) if w not in _STOP)


def title_numbers(words: Iterable[str]) -> tuple[str, ...]:
    """The numbers among a title's words (``title_words``) in the order they come:
    "Utlysning 14 från källa 0" is ("14", "0"), not the same as "Utlysning 0 från källa 14".
    Two titles with numbers are one call only with the same numbers in the same order."""
    return tuple(dict.fromkeys(w for w in words if w.isdigit()))


def search_text(title: str, summary: str, identifier: str | None, programme: str | None) -> str:
    """What search scans: the searchable fields, case-folded (Unicode-aware)."""
    return " \n".join(x for x in (title, identifier, programme, summary) if x).casefold()


# -- search terms ------------------------------------------------------------------------------

_SV_VOWELS = frozenset("aeiouyäåö")
_SV_S_ENDING = frozenset("bcdfghjklmnoprtvy")
# Snowball's Swedish stemmer, step 1 (longest first): suffixes of inflection.
_SV_STEP1 = sorted(
    [
        "a",
        "arna",
        "erna",
        "heterna",
        "orna",
        "ad",
        "e",
        "ade",
        "ande",
        "arne",
        "are",
        "aste",
        "en",
        "anden",
        "aren",
        "heten",
        "ern",
        "ar",
        "er",
        "heter",
        "or",
        "as",
        "arnas",
        "ernas",
        "ornas",
        "es",
        "ades",
        "andes",
        "ens",
        "arens",
        "hetens",
        "erns",
        "at",
        "andet",
        "het",
        "ast",
    ],
    key=len,
    reverse=True,
)
_SV_STEP2 = ("dd", "gd", "nn", "dt", "gt", "kt", "tt")


def _sv_r1(word: str) -> int:
    """Snowball's R1: after the first non-vowel that follows a vowel, and at least 3 in."""
    for i in range(1, len(word)):
        if word[i] not in _SV_VOWELS and word[i - 1] in _SV_VOWELS:
            return max(i + 1, 3)
    return len(word)


def swedish_stem(word: str) -> str:
    """The Snowball Swedish stem of a case-folded word ("kompetensförsörjningen" →
    "kompetensförsörjning", "utlysningar" → "utlysning"). It only strips suffixes, so the
    stem is always a prefix of the word: a text containing the word contains its stem."""
    return _stem_steps(word)[-1]


def _stem_steps(word: str) -> list[str]:
    """The word after each of Snowball's three steps."""
    r1 = _sv_r1(word)
    for suffix in _SV_STEP1:
        if word.endswith(suffix) and len(word) - len(suffix) >= r1:
            word = word[: -len(suffix)]
            break
    else:
        if word.endswith("s") and len(word) - 1 >= r1 and word[-2:-1] in _SV_S_ENDING:
            word = word[:-1]
    steps = [word]
    if word.endswith(_SV_STEP2) and len(word) - 2 >= r1:
        word = word[:-1]
    steps.append(word)
    for suffix, keep in (("fullt", "full"), ("löst", "lös"), ("lig", ""), ("els", ""), ("ig", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= r1:
            word = word[: -len(suffix)] + keep
            break
    steps.append(word)
    return steps


MAX_SEARCH_WORDS = 8
_MIN_STEM = 4  # shorter stems ("ek" of "eken") would find far too much


def search_terms(query: str) -> list[str]:
    """What a search looks for: each word of the query (at most ``MAX_SEARCH_WORDS``),
    case-folded, cut to its Swedish stem when it is a word of letters (as far as the stem
    keeps four letters). An item matches when its search text contains every term anywhere (inside
    a compound, too): "kompetens" finds "kompetensförsörjning", "utlysningar" finds
    "utlysningen", "försörjning" finds "kompetensförsörjning"."""
    terms: list[str] = []
    for word in query.casefold().split()[:MAX_SEARCH_WORDS]:
        term = word
        if word.isalpha():
            # The shortest stem that keeps four letters ("möjligheter" → "möjlig", not "möj").
            term = next((s for s in reversed(_stem_steps(word)) if len(s) >= _MIN_STEM), word)
        if term not in terms:
            terms.append(term)
    return terms
