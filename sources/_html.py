"""Shared parsing helpers for the native adapters: bodies, HTML text, Swedish dates, budgets.

Pure functions over bytes and strings. They raise ``ParseError`` with a stable code when a
body cannot be read at all (``empty_body``, ``invalid_json``), so an adapter never turns a
broken response into a silent empty list.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from bs4 import BeautifulSoup
from bs4.element import NavigableString, Tag

from watcher.dates import MONTHS
from watcher.exceptions import ParseError
from watcher.types import Page

_MONTH_ALT = "|".join(sorted(MONTHS, key=len, reverse=True))
# A full Swedish/Norwegian/English long date with an optional time: "16 mars 2023",
# "13 januari 2026 kl. 16.00". Only dates with day, month and year count as exact.
LONG_DATE = (
    rf"\d{{1,2}}\.?\s+(?:{_MONTH_ALT})\.?\s+\d{{4}}"
    r"(?:,?\s*(?:kl\.?|klockan)\s*\d{1,2}[.:]\d{2})?"
)
# A month and year without a day ("februari 2026"), used by call plans.
MONTH_YEAR = rf"(?:{_MONTH_ALT})\s+\d{{4}}"
ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?"
# WordPress ACF date pickers store dates as Ymd.
_YMD_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")

_BLOCK_TAGS = (
    "p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
    "section", "article", "header", "footer", "dl", "dt", "dd", "figure", "blockquote",
)  # fmt: skip
_WS_RE = re.compile(r"[ \t\r\f\v\u00a0\u2009\u202f]+")

# "60 miljoner kronor", "57,7 miljoner", "1,5 mnkr", "12 MSEK", "30 milj. kr"
_MILLIONS_RE = re.compile(
    r"(?<![\d,.])(?P<num>\d{1,4}(?:[,.]\d{1,3})?)\s*"
    r"(?P<unit>miljoner|miljon|milj\.?|mnkr|mkr|msek)"
    r"(?:\s*(?P<cur>kronor|kr\.?|sek|euro|eur))?(?![\w])",
    re.IGNORECASE,
)


def decode(page: Page) -> str:
    """The body as text: the declared charset, else UTF-8 (with replacement)."""
    for enc in (page.encoding, "utf-8"):
        if not enc:
            continue
        try:
            return page.content.decode(enc)
        except (LookupError, UnicodeDecodeError):
            continue
    return page.content.decode("utf-8", errors="replace")


def load_json(page: Page, what: str) -> Any:
    """Decode a JSON body; ``what`` names the source in error messages."""
    if not page.content.strip():
        raise ParseError(f"{what}: empty response body from {page.url}", code="empty_body")
    try:
        return json.loads(decode(page).lstrip("\ufeff"))
    except ValueError as e:
        head = decode(page)[:80].strip().replace("\n", " ")
        raise ParseError(
            f"{what}: response from {page.url} is not JSON ({e.__class__.__name__}: {e}); "
            f"it starts with {head!r}",
            code="invalid_json",
        ) from e


def looks_like_json(page: Page) -> bool:
    """True when the body starts like a JSON document (the content type is not trusted)."""
    head = page.content[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"[", b"{")


def soup(page: Page | str) -> BeautifulSoup:
    """Parse HTML (bytes with the declared encoding, or a string) with lxml."""
    if isinstance(page, str):
        return BeautifulSoup(page, "lxml")
    if not page.content.strip():
        raise ParseError(f"empty response body from {page.url}", code="empty_body")
    return BeautifulSoup(page.content, "lxml", from_encoding=page.encoding or None)


def text_lines(node: Tag | BeautifulSoup | None) -> list[str]:
    """Visible text of an element as non-empty lines, one per block element."""
    if node is None:
        return []
    parts: list[str] = []
    _collect(node, parts)
    lines = [_WS_RE.sub(" ", line).strip() for line in "".join(parts).split("\n")]
    return [unicodedata.normalize("NFC", line) for line in lines if line]


def _collect(node: Tag | BeautifulSoup, out: list[str]) -> None:
    for child in node.children:
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # skip comments, CDATA, doctype
                out.append(str(child).replace("\n", " "))
            continue
        if not isinstance(child, Tag) or child.name in ("script", "style", "noscript", "template"):
            continue
        if child.name == "br":
            out.append("\n")
            continue
        block = child.name in _BLOCK_TAGS
        if block:
            out.append("\n")
        _collect(child, out)
        if block:
            out.append("\n")


def node_text(node: Tag | None) -> str:
    """The text of an element on one line."""
    return " ".join(text_lines(node))


def one_line(text: str) -> str:
    return " ".join(_WS_RE.sub(" ", text).split())


def ymd_to_iso(value: str) -> str:
    """ACF's ``20260316`` as ``2026-03-16``; anything else unchanged."""
    m = _YMD_RE.match(value.strip())
    return f"{m[1]}-{m[2]}-{m[3]}" if m else value


def find_budget(text: str) -> tuple[float, str] | None:
    """The first amount in millions ("60 miljoner kronor") as (amount, currency).

    Only millions count: a call's total budget is written that way, while per-project caps
    ("Förstudier max 400 000 kronor") are written in full and must not be taken for it.
    """
    m = _MILLIONS_RE.search(text)
    if not m:
        return None
    amount = float(m["num"].replace(",", ".")) * 1_000_000
    cur = (m["cur"] or "").lower()
    currency = "EUR" if cur.startswith("eur") else "SEK"
    return amount, currency


def sentence_with(text: str, start: int, limit: int = 240) -> str:
    """The sentence of ``text`` around position ``start`` (for budget lines)."""
    left = max(text.rfind(". ", 0, start), text.rfind("\n", 0, start))
    right_candidates = [i for i in (text.find(". ", start), text.find("\n", start)) if i != -1]
    right = min(right_candidates) if right_candidates else len(text)
    out = text[left + 1 : right + 1].strip()
    return out if len(out) <= limit else out[: limit - 1].rstrip() + "…"


def budget_sentence(text: str) -> str | None:
    """The sentence that states a budget in millions, if any."""
    m = _MILLIONS_RE.search(text)
    return sentence_with(text, m.start()) if m else None


def last_path_segment(url: str) -> str:
    """``https://x/utlysningar/abc/`` → ``abc``."""
    path = urlsplit(url).path.rstrip("/")
    return path.rsplit("/", 1)[-1] if path else ""


def slugify(text: str, limit: int = 80) -> str:
    """A stable ASCII slug for keys built from titles ("Västsverige" → "vastsverige")."""
    folded = unicodedata.normalize("NFKD", text.lower())
    ascii_text = "".join(c for c in folded if not unicodedata.combining(c))
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return slug[:limit].rstrip("-")


def first(values: Any, default: Any = None) -> Any:
    """``values[0]`` of a list (SEDIA metadata arrays), or the value itself, or default."""
    if isinstance(values, list):
        return values[0] if values else default
    return default if values is None else values


def unique(values: Iterable[str]) -> tuple[str, ...]:
    """Order-preserving de-duplication (case-sensitive)."""
    seen: set[str] = set()
    out = []
    for v in values:
        if v and v not in seen:
            seen.add(v)
            out.append(v)
    return tuple(out)
