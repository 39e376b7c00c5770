"""RawItem → Item: plain text, aware UTC dates, status/kind enums, content hash. Pure.

Status is cross-checked against the dates, since published status lags: a call whose last
deadline has passed is closed, one whose opening is still ahead is forthcoming, whatever the
page says.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import lxml.etree
import lxml.html

from watcher.dates import STOCKHOLM, parse_date
from watcher.types import Item, Kind, RawItem, Status

if TYPE_CHECKING:
    from watcher.config import SourceConfig

_WS_RE = re.compile(r"[ \t\r\f\v\u00a0]+")
_NL_RE = re.compile(r"\n\s*\n+")
# Characters XML 1.0 does not allow; scraped text must never break a feed.
_XML_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
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


def clean_text(text: str) -> str:
    """Collapse white space, drop XML-invalid characters, NFC-normalise."""
    text = unicodedata.normalize("NFC", _XML_INVALID_RE.sub("", text))
    lines = [_WS_RE.sub(" ", line).strip() for line in text.split("\n")]
    return _NL_RE.sub("\n\n", "\n".join(lines)).strip()


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


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment, paragraphs and list items kept apart."""
    if "<" not in markup and "&" not in markup:
        return clean_text(markup)
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


def effective_status(
    status: Status | None,
    opening: datetime | None,
    deadlines: Iterable[datetime],
    now: datetime,
) -> Status | None:
    """The status the dates support. Published status lags, so dates win when they
    disagree; with no dates the published status stands."""
    dl = sorted(deadlines)
    if dl and dl[-1] < now:
        return Status.CLOSED
    if opening and opening > now:
        return Status.FORTHCOMING
    if status is None and (opening or dl):
        return Status.OPEN if (opening is None or opening <= now) else Status.FORTHCOMING
    if status == Status.FORTHCOMING and opening and opening <= now and dl:
        return Status.OPEN
    return status


def _norm_link(link: str, base: str) -> str:
    link = one_line(link)
    if not link:
        return ""
    full = urljoin(base, link)
    return full if urlsplit(full).scheme in ("http", "https") else ""


def content_hash(values: dict[str, Any]) -> str:
    blob = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def tracked_values(item: Item) -> dict[str, Any]:
    """The TRACKED_FIELDS of an item as JSON-ready values (also what storage keeps)."""
    return {
        "title": item.title,
        "link": item.link,
        "summary": item.summary,
        "status": item.status.value if item.status else None,
        "kind": item.kind.value,
        "programme": item.programme,
        "opening": item.opening.isoformat() if item.opening else None,
        "deadlines": [d.isoformat() for d in item.deadlines],
        "budget": item.budget,
        "regions": list(item.regions),
    }


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
    if kind == Kind.CALL and status == Status.FORTHCOMING:
        kind = Kind.FORTHCOMING_CALL
    elif kind == Kind.FORTHCOMING_CALL and status in (Status.OPEN, Status.CLOSED):
        kind = Kind.CALL
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
        identifier=one_line(raw.identifier).upper() if raw.identifier else None,
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
    )
    values = tracked_values(item)
    return _replace_hash(item, content_hash(values))


def _replace_hash(item: Item, h: str) -> Item:
    from dataclasses import replace

    return replace(item, content_hash=h)


_SV_MARKERS = re.compile(r"\b(och|att|för|med|som|är|till|av|på|inom|utlysning)\b|[åäö]", re.I)
_NO_MARKERS = re.compile(r"\b(og|ikke|søknad|frist|utlysning(?:er)?|prosjekt)\b|[æø]", re.I)
_EN_MARKERS = re.compile(r"\b(the|and|of|for|with|call|to|is)\b", re.I)


def _guess_language(text: str) -> str:
    sv = len(_SV_MARKERS.findall(text))
    no = len(_NO_MARKERS.findall(text))
    en = len(_EN_MARKERS.findall(text))
    if max(sv, no, en) == 0:
        return "und"
    if no > sv and no >= en:
        return "no"
    return "sv" if sv >= en else "en"
