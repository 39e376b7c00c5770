"""Helpers the generic adapters share: decoding bodies whose declared encoding may lie,
refusing hostile XML, keyword filters."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from pydantic import Field

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
