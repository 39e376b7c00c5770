"""Cleaning untrusted (scraped) text before it reaches an email, a feed or a calendar.

- characters that XML 1.0 forbids (control characters, lone surrogates, U+FFFE/FFFF) are
  dropped, so one bad title can never break a feed;
- a one-line value (a title, a header, an address) has every CR, LF and other line break
  turned into a space, so nothing scraped can start a new header;
- only http(s) links are passed on (a ``javascript:`` link in a feed reader is an attack).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Everything outside the XML 1.0 Char production.
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Line and paragraph separators that some clients treat as line breaks too.
_LINE_BREAKS = re.compile("[\r\n\u0085\u2028\u2029\u000b\u000c]+")
_SPACES = re.compile(r"[ \t]+")


def xml_safe(value: object) -> str:
    """The text without characters that are invalid in XML (or in an email body)."""
    if value is None:
        return ""
    return _XML_INVALID.sub("", str(value))


def one_line(value: object, limit: int | None = None) -> str:
    """Untrusted text as one clean line: no control characters, no line breaks."""
    text = _SPACES.sub(" ", _LINE_BREAKS.sub(" ", xml_safe(value))).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def multi_line(value: object, limit: int | None = None) -> str:
    """Untrusted text with its paragraphs kept (CR LF folded to LF), control characters gone."""
    text = xml_safe(value).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def safe_link(url: object) -> str:
    """The URL when it is a plain http(s) link, else an empty string."""
    text = one_line(url)
    if not text or any(c in text for c in " <>\"'`"):
        return ""
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return text
