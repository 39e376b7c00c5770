"""RawItem → Item: plain text, aware UTC dates, status/kind enums, content hash. Pure.

Status is cross-checked against the dates, since published status lags: a call whose last
deadline has passed is closed, one whose opening is still ahead is forthcoming, whatever the
page says.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

from watcher.calls import effective_status, kind_for
from watcher.dates import STOCKHOLM, parse_date
from watcher.text import clean_text, html_to_text, is_plain_absolute_url, one_line
from watcher.types import Item, Kind, RawItem, Status, tracked_values

if TYPE_CHECKING:
    from watcher.config import SourceConfig

_SUMMARY_MAX = 20000

_STATUS_WORDS: dict[str, Status] = {
    "forthcoming": Status.FORTHCOMING,
    "upcoming": Status.FORTHCOMING,
    "kommande": Status.FORTHCOMING,
    "planerad": Status.FORTHCOMING,
    "öppnar": Status.FORTHCOMING,
    "31094501": Status.FORTHCOMING,
    "open": Status.OPEN,
    "öppen": Status.OPEN,
    "öppet": Status.OPEN,
    "pågående": Status.OPEN,
    "31094502": Status.OPEN,
    "closed": Status.CLOSED,
    "stängd": Status.CLOSED,
    "stängt": Status.CLOSED,
    "avslutad": Status.CLOSED,
    "31094503": Status.CLOSED,
}

_KIND_WORDS: dict[str, Kind] = {k.value: k for k in Kind} | {
    "forthcoming call": Kind.FORTHCOMING_CALL,
    "partner search": Kind.PARTNER_SEARCH,
    "partnersök": Kind.PARTNER_SEARCH,
    "utlysning": Kind.CALL,
    "konsultation": Kind.CONSULTATION,
    "evenemang": Kind.EVENT,
    "nyhet": Kind.NEWS,
}


def parse_status(value: str | None) -> Status | None:
    if not value:
        return None
    v = value.strip().lower()
    if v in _STATUS_WORDS:
        return _STATUS_WORDS[v]
    for word, status in _STATUS_WORDS.items():
        if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", v):
            return status
    return None


def parse_kind(value: str | None, default: Kind = Kind.NEWS) -> Kind:
    if not value:
        return default
    return _KIND_WORDS.get(value.strip().lower().replace("-", "_"), default)


def _norm_link(link: str, base: str) -> str:
    link = one_line(link)
    if not link:
        return ""
    if is_plain_absolute_url(link):  # what urljoin gives back as it is: http(s)
        return link
    full = urljoin(base, link)
    return full if urlsplit(full).scheme in ("http", "https") else ""


def content_hash(values: dict[str, Any]) -> str:
    blob = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def normalise(
    raw: RawItem,
    source: SourceConfig,
    now: datetime,
    tz: ZoneInfo = STOCKHOLM,
) -> Item:
    """Turn what an adapter found into a clean ``Item``."""
    title = one_line(html_to_text(raw.title) if "<" in raw.title else raw.title)
    summary = html_to_text(raw.summary) if raw.summary_is_html else clean_text(raw.summary)
    if len(summary) > _SUMMARY_MAX:
        summary = summary[: _SUMMARY_MAX - 1].rstrip() + "…"
    opening = parse_date(raw.opening, tz) if raw.opening is not None else None
    deadlines = tuple(
        sorted({d for d in (parse_date(v, tz, end_of_day=True) for v in raw.deadlines) if d})
    )
    published = parse_date(raw.published, tz) if raw.published is not None else None
    kind = parse_kind(raw.kind)
    status = effective_status(parse_status(raw.status), opening, deadlines, now)
    kind = kind_for(status, kind)
    language = (raw.language or source.language or _guess_language(title + " " + summary))[:8]
    item = Item(
        source_id=source.id,
        key=raw.key.strip()[:500],
        title=title or "(utan rubrik)",
        link=_norm_link(raw.link, source.url),
        summary=summary,
        language=language.lower(),
        kind=kind,
        status=status,
        programme=one_line(raw.programme) if raw.programme else None,
        # As the source writes it (the portal's "…-two-stage" is part of the topic's link);
        # duplicate matching compares identifiers in any case (track.identifier_key).
        identifier=one_line(raw.identifier) if raw.identifier else None,
        published=published,
        opening=opening,
        deadlines=deadlines,
        budget=one_line(raw.budget) if raw.budget else None,
        budget_amount=raw.budget_amount,
        currency=raw.currency,
        regions=tuple(one_line(r) for r in raw.regions if r.strip()),
        topics=tuple(one_line(t) for t in raw.topics if t.strip()),
        content_hash="",
        extra=dict(raw.extra),
        incomplete=raw.incomplete,
    )
    # Its hash, of the values it was just made with: set in place rather than by
    # ``dataclasses.replace``, which made every item twice. Nothing holds it yet.
    object.__setattr__(item, "content_hash", content_hash(tracked_values(item)))
    return item


_SV_MARKERS = re.compile(r"\b(och|att|för|med|som|är|till|av|på|inom|utlysning)\b|[åäö]", re.I)
_NO_MARKERS = re.compile(r"\b(og|ikke|søknad|frist|utlysning(?:er)?|prosjekt)\b|[æø]", re.I)
_EN_MARKERS = re.compile(r"\b(the|and|of|for|with|call|to|is)\b", re.I)

# The same counts, word by word: a marker word counts once, a letter where it is not part
# of one. Only for text whose letters are all Latin-1, where lower-casing a word matches
# as the expressions' IGNORECASE does; beyond it ("ſ", the Kelvin sign, "İ") it may not.
_SV_WORDS = frozenset(("och", "att", "för", "med", "som", "är", "till", "av", "på", "inom"))
_NO_WORDS = frozenset(("og", "ikke", "søknad", "frist", "utlysninger", "prosjekt"))
_EN_WORDS = frozenset(("the", "and", "of", "for", "with", "call", "to", "is"))
_WORD = re.compile(r"\w+")
_BEYOND_LATIN1 = re.compile(r"[^\W\x00-\xff]")


def _expression_counts(text: str) -> tuple[int, int, int]:
    """Swedish, Norwegian and English markers in ``text``, by the three expressions."""
    return (
        len(_SV_MARKERS.findall(text)),
        len(_NO_MARKERS.findall(text)),
        len(_EN_MARKERS.findall(text)),
    )


def _marker_counts(text: str) -> tuple[int, int, int]:
    """Swedish, Norwegian and English markers in ``text``, as the three expressions
    count them."""
    if not text.isascii() and _BEYOND_LATIN1.search(text):
        return _expression_counts(text)
    sv = no = en = 0
    for word in _WORD.findall(text.lower()):
        if word.isascii():
            if word in _EN_WORDS:
                en += 1
            elif word in _SV_WORDS:
                sv += 1
            elif word in _NO_WORDS:
                no += 1
            elif word == "utlysning":
                sv += 1
                no += 1
            continue
        if word in _SV_WORDS:
            sv += 1
        else:
            sv += word.count("å") + word.count("ä") + word.count("ö")
        if word in _NO_WORDS:
            no += 1
        else:
            no += word.count("æ") + word.count("ø")
    return sv, no, en


def _guess_language(text: str) -> str:
    """ "sv", "no", "en" or "und", by the marker words and letters in ``text``. Counted
    word by word (``_marker_counts``): three expressions over the whole text took a fifth
    of normalising an item."""
    sv, no, en = _marker_counts(text)
    if max(sv, no, en) == 0:
        return "und"
    if no > sv and no >= en:
        return "no"
    return "sv" if sv >= en else "en"
