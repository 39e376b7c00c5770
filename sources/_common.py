"""Helpers the generic adapters share: decoding bodies whose declared encoding may lie,
refusing hostile XML, keyword filters."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from pydantic import Field, field_validator

from sources.base import Options
from watcher.exceptions import ParseError
from watcher.types import Page

_XML_DECL_RE = re.compile(
    rb"^(\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding=[\"']([A-Za-z0-9._-]+)[\"']", re.I
)
_META_CHARSET_RE = re.compile(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9._-]+)", re.I)
_DOCTYPE_RE = re.compile(rb"<!DOCTYPE[^>\[]*\[(.*?)\]\s*>", re.S | re.I)


def declared_encoding(page: Page) -> str | None:
    head = page.content[:2048]
    m = _XML_DECL_RE.match(head) or _META_CHARSET_RE.search(head)
    if m:
        return m.group(m.lastindex or 1).decode("ascii", "replace")
    return page.encoding


def decode_text(page: Page) -> str:
    """The body as text. UTF-8 wins when the bytes are valid UTF-8, whatever a header or
    declaration claims (Sitevision and WordPress sites often declare one thing and send
    another); otherwise the declared encoding; otherwise Windows-1252."""
    data = page.content
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    enc = declared_encoding(page)
    for candidate in (enc, "cp1252", "latin-1"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("utf-8", "replace")


def require_body(page: Page) -> None:
    if not page.content.strip():
        raise ParseError(f"empty response body from {page.url}", code="empty_body")


def refuse_hostile_xml(page: Page) -> None:
    """Refuse internal DTD subsets with entity declarations: they are how billion-laughs
    and external-entity (XXE) attacks work, and no real feed needs them."""
    m = _DOCTYPE_RE.search(page.content[:65536])
    if m and b"<!ENTITY" in m.group(1).upper():
        raise ParseError(
            "the XML declares entities in its DOCTYPE (billion-laughs or external-entity "
            "attack?); refused",
            code="hostile_xml",
        )


def utf8_xml(text: str) -> bytes:
    """Re-encode decoded XML as UTF-8 and make its declaration say so."""
    text = re.sub(r"^\s*<\?xml[^>]*\?>", '<?xml version="1.0" encoding="utf-8"?>', text, count=1)
    return text.encode("utf-8")


def stable_key(*parts: str) -> str:
    return "h:" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]


class FilterOptions(Options):
    """Keyword filters shared by the listing adapters."""

    include: tuple[str, ...] = Field(
        default=(), description="keep only items whose title or summary contains one of these words"
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="drop items whose title or summary contains one of these words"
    )


def keep(text: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    low = text.lower()
    if include and not any(w.lower() in low for w in include):
        return False
    return not any(w.lower() in low for w in exclude)


DEADLINE_REGEX = (
    r"(?:sista ansökningsdag(?:en)?|sista dag(?: att ansöka)?|ansökan senast|stänger|"
    r"deadline|closing date|closes|frist|søknadsfrist)"
    r"\s*(?:är|er|is|:)?\s*:?\s*(\d{1,2}\.? \w+ \d{4}(?:,? kl\.? \d{1,2}[.:]\d{2})?)"
)
OPENING_REGEX = r"(?:öppnar|opens|opening date|åpner)\s*:?\s*(\d{1,2}\.? \w+ \d{4})"


def check_regex(pattern: str) -> str:
    """Raise ValueError for a regular expression that does not compile."""
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"invalid regular expression {pattern!r}: {e}") from e
    return pattern


class DateTextOptions(Options):
    """Finding a deadline and an opening date in an entry's text."""

    deadline_regex: str | None = Field(
        DEADLINE_REGEX,
        description="regex finding the deadline in the entry's text (group 1 = the date)",
    )
    opening_regex: str | None = Field(
        OPENING_REGEX, description="regex finding the opening date in the entry's text"
    )

    @field_validator("deadline_regex", "opening_regex")
    @classmethod
    def _re(cls, v: str | None) -> str | None:
        return check_regex(v) if v else v


def dates_in_text(text: str, options: DateTextOptions) -> tuple[str | None, str | None]:
    """(deadline, opening) as written in ``text``, found by the options' regexes."""
    deadline = opening = None
    if options.deadline_regex and (m := re.search(options.deadline_regex, text, re.I)):
        deadline = m.group(1) if m.groups() else m.group(0)
    if options.opening_regex and (m := re.search(options.opening_regex, text, re.I)):
        opening = m.group(1) if m.groups() else m.group(0)
    return deadline, opening
