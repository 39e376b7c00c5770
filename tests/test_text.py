"""``watcher.text``: feeds' links joined as ``urllib.parse.urljoin`` joins them, with the
plain absolute ones (most) given back at once (``join_url``), an entry's HTML summary
read as text once (``html_to_text``), and call identifiers found piece by piece as on the
whole text (``identifier_tokens``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import lxml.html
import pytest

from sources.rss import RssAdapter
from watcher.config import SourceConfig
from watcher.pipeline.normalise import normalise
from watcher.text import (
    _IDENTIFIER_RE,
    html_to_text,
    identifier_tokens,
    is_plain_absolute_url,
    join_url,
)
from watcher.types import Page

NOW = datetime(2026, 12, 6, tzinfo=UTC)

BASES = [
    "https://www.esf.se/feed/",
    "http://127.0.0.2:8080/feeds/s1.xml",
    "https://ec.europa.eu/info/funding-tenders/opportunities/data/referenceData/x.json?a=1",
    "",
]

# Pieces of links, good and bad: what urljoin keeps, moves or drops.
STARTS = [
    "http://",
    "https://",
    "HTTP://",
    "Https://",
    "ftp://",
    "mailto:",
    "javascript:",
    "//",
    "/",
    "",
    "./",
    "../",
    "?",
    "#",
    " http://",
    "http:/",
    "http:",
]
HOSTS = [
    "example.org",
    "a.b-c.se",
    "127.0.0.2:8080",
    "user:pw@host",
    "[::1]",
    "[::1",
    "exa mple.org",
    "éxample.se",
    "",
    "host:",
    "xn--r-ela.se",
]
PATHS = [
    "",
    "/",
    "/a",
    "/a/b.html",
    "/a/./b",
    "/a/../b",
    "/a;p=1",
    "/a;",
    "/a b",
    "/å",
    "/%41%7e",
    "/~u/(1)*!$'",
    "/a//b",
    "/a:b@c",
    "/a\tb",
    "/a\nb",
    "/[x]",
    "/a,b=c+d&e",
]
QUERIES = ["", "?", "?q=1", "?q=a b", "?q=ö", "?a=1&b=/c?d", "??", "?q=1;x"]
FRAGMENTS = ["", "#", "#top", "#a?b", "#a#b", "#a b"]


def links(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        start = rng.choice(STARTS)
        host = rng.choice(HOSTS) if start.endswith("//") else ""
        out.append(start + host + rng.choice(PATHS) + rng.choice(QUERIES) + rng.choice(FRAGMENTS))
    return out


def test_join_url_is_urljoin() -> None:
    rng = random.Random(14)
    plain = 0
    for link in links(rng, 20000):
        for base in BASES:
            try:
                expected: str | type[Exception] = urljoin(base, link)
            except ValueError:
                expected = ValueError
            try:
                got: str | type[Exception] = join_url(base, link)
            except ValueError:
                got = ValueError
            assert got == expected, (base, link)
        if is_plain_absolute_url(link):
            plain += 1
            assert urlsplit(link).scheme in ("http", "https")
    assert plain > 200  # the fast path is taken


def test_plain_links_of_real_feeds() -> None:
    for link in (
        "https://www.esf.se/nyheter/2026/utlysning-kompetensforsorjning/",
        "https://ec.europa.eu/info/funding-tenders/opportunities/portal/screen/opportunities/"
        "topic-details/HORIZON-CL5-2027-D4-01-02?keywords=cities#overview",
        "http://127.0.0.2:8080/feeds/s1/item-3",
    ):
        assert is_plain_absolute_url(link)
        assert join_url("https://base.example/", link) == link
    for link in ("/relative/path", "https://host/a;b", "https://host/a b", "https://host/?"):
        assert not is_plain_absolute_url(link)


def test_an_entrys_html_summary_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter reads an HTML summary as text to find its dates, and normalising reads
    it again: the second time is the first one's text, not another parse."""
    entries = "".join(
        f"<item><guid>g{i}</guid><title>Utlysning {i}</title><description><![CDATA[<p>Sista "
        f"ansökningsdag <b>{i + 1} mars 2027</b>.</p><ul><li>ESF+</li></ul>]]></description>"
        "</item>"
        for i in range(20)
    )
    body = f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>{entries}</channel></rss>'
    parse = lxml.html.fragment_fromstring
    parsed: list[str] = []

    def counting(markup: str, **kw: object) -> object:
        parsed.append(markup)
        return parse(markup, **kw)

    monkeypatch.setattr(lxml.html, "fragment_fromstring", counting)
    html_to_text.cache_clear()
    source = SourceConfig(id="s", name="s", kind="rss", url="https://ex.se/feed.xml")
    items = [
        normalise(raw, source, NOW)
        for raw in RssAdapter(source).parse(Page(source.url, body.encode()))
    ]
    assert len(items) == 20
    assert len(parsed) == 20  # once each, not twice
    assert items[3].summary == "Sista ansökningsdag 4 mars 2027.\n\nESF+"
    assert items[3].deadlines


def _identifiers_in_whole_text(text: str) -> set[str]:
    """What ``identifier_tokens`` answered when it ran its pattern over the whole text."""
    return {m.group(0).upper() for m in _IDENTIFIER_RE.finditer(text) if len(m.group(0)) >= 8}


# Pieces of texts around identifiers: boundaries of every kind (whitespace of several
# sorts, punctuation, hyphens, underscores, letters beyond ASCII), dates, short and long.
ID_PIECES = [
    "HORIZON-CL5-2027-01-D3-02",
    "ERASMUS-EDU-2027-PI-ALL-INNO",
    "A-B-C",
    "AB-CD-EF",
    "LIFE-2027-SAP",
    "x-y",
    "2027-03-16",
    "EU-medel",
    "-",
    "--",
    "_",
    "é",
    "Å-B-C-D-E",
    "(",
    ")",
    ",",
    ".",
    ":",
    " ",
    "  ",
    "\n",
    "\t",
    "\u00a0",
    "\u2003",
    "\x1c",
    "\u3000",
    "call",
    "Utlysning",
    "DIGITAL-2027-AI-05",
    "horizon-cl5-2027-01-d3-02",
    "9ABC-DEF-GHI",
]


def test_identifiers_found_piece_by_piece_are_those_of_the_whole_text() -> None:
    """On 20,000 made-up texts and on texts beyond the pieces' alphabet, the identifiers
    found in the whitespace-separated pieces with two hyphens are those the pattern finds
    in the whole text."""
    rng = random.Random(14)
    texts = ["", "-", "--", "A-B", "HORIZON-CL5-2027-01-D3-02", " HORIZON-CL5-2027-01 "]
    for _ in range(20_000):
        texts.append("".join(rng.choice(ID_PIECES) for _ in range(rng.randint(1, 12))))
    found = 0
    for text in texts:
        expected = _identifiers_in_whole_text(text)
        assert identifier_tokens(text) == expected, text
        found += bool(expected)
    assert found > 5_000  # the texts do name identifiers, at every kind of boundary
