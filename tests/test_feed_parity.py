"""The fast lxml feed reader and feedparser give the same items."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import sources._feed as feed_mod
from sources.rss import RssAdapter
from watcher.config import SourceConfig
from watcher.pipeline.normalise import normalise
from watcher.types import Page

NOW = datetime(2026, 11, 2, tzinfo=UTC)
SRC = SourceConfig(id="f", name="f", kind="rss", url="https://ex.se/feed.xml")

RSS2 = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel><title>Nyheter</title><link>https://ex.se/</link><language>sv</language>
<item><title>Utlysning &lt;b&gt;kompetens&lt;/b&gt; &amp; inkludering</title><link>/nyhet/1</link>
<guid isPermaLink="false">g-1</guid><description><![CDATA[<p>Sista dag <a href="/x">16 mars 2027</a>.</p><script>evil()</script>]]></description>
<pubDate>Wed, 25 Feb 2026 13:41:04 +0100</pubDate><category>REGIO</category><dc:subject>EU</dc:subject></item>
<item><title>Utan guid</title><link>https://ex.se/2</link><dc:date>2026-01-02T10:00:00Z</dc:date>
<content:encoded><![CDATA[<p>Bara innehåll</p>]]></content:encoded></item>
<item><title>Permalänk som guid</title><guid>https://ex.se/perma/3</guid></item>
</channel></rss>"""

RSS1 = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://ex.se/"><title>RDF</title><link>https://ex.se/</link><dc:language>en</dc:language></channel>
<item rdf:about="https://ex.se/r/1"><title>Call for proposals</title><link>https://ex.se/r/1</link>
<description>Deadline 7 June 2027</description><dc:date>2026-03-01T08:00:00+01:00</dc:date></item>
</rdf:RDF>"""

RSS091 = """<?xml version="1.0" encoding="ISO-8859-1"?>
<rss version="0.91"><channel><title>Old</title><link>https://ex.se/</link>
<item><title>Äldre format för Västsverige</title><link>https://ex.se/o/1</link><description>Text</description></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en"><title>Atom</title><id>urn:f</id><updated>2026-10-01T10:00:00Z</updated>
<entry><id>urn:e:1</id><title type="html">Call &lt;i&gt;Horizon&lt;/i&gt;</title>
<link rel="enclosure" href="https://ex.se/file.pdf"/><link rel="alternate" href="https://ex.se/a/1"/>
<published>2026-09-30T10:00:00Z</published><updated>2026-10-01T10:00:00Z</updated>
<summary>Short</summary><category term="cities"/></entry>
<entry><id>urn:e:2</id><title>Plain</title><link href="/a/2"/><updated>2026-10-02T10:00:00Z</updated>
<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Rich <b>content</b></p></div></content></entry>
<entry><id>urn:e:3</id><title type="text">Text &amp; more</title><link href="https://ex.se/a/3"/>
<updated>2026-10-03T10:00:00Z</updated><content type="html">&lt;p&gt;Escaped&lt;/p&gt;</content></entry>
</feed>"""

# Comments and processing instructions among an entry's children, several categories and
# subjects: the fast path reads an entry's children in one pass and must skip the former.
ODD = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Udda</title>
<item><!-- a note --><title>Utlysning med kommentarer</title><?pi data?><link>/u/1</link>
<category>REGIO</category><!-- x --><category>ESF</category><dc:subject>EU</dc:subject>
<dc:subject>Västsverige</dc:subject><description>Sista dag 16 mars 2027</description>
<pubDate>Wed, 25 Feb 2026 13:41:04 +0100</pubDate><guid isPermaLink="false">u-1</guid></item>
</channel></rss>"""

ODD_ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Udda</title><id>urn:u</id>
<updated>2026-10-01T10:00:00Z</updated>
<entry><!-- c --><id>urn:u:1</id><?pi x?><title>Call with comments</title>
<link rel="related" href="https://ex.se/rel"/><!-- c --><link href="https://ex.se/u/1"/>
<category term="a"/><category term="b"/><updated>2026-10-02T10:00:00Z</updated></entry>
</feed>"""

FEEDS = {
    "rss2": RSS2,
    "rss1": RSS1,
    "rss091": RSS091,
    "atom": ATOM,
    "odd": ODD,
    "odd-atom": ODD_ATOM,
}


def items(body: str, *, slow: bool, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    if slow:
        monkeypatch.setattr(feed_mod, "_fast", lambda root, url: None)
    raws = RssAdapter(SRC).parse(
        Page(SRC.url, body.encode("latin-1" if "ISO-8859-1" in body else "utf-8"))
    )
    monkeypatch.undo()
    out = []
    for raw in raws:
        it = normalise(raw, SRC, NOW)
        out.append(
            {
                "key": it.key,
                "title": it.title,
                "link": it.link,
                "summary": it.summary,
                "published": it.published,
                "topics": it.topics,
                "language": it.language,
            }
        )
    return out


@pytest.mark.parametrize("name", FEEDS)
def test_fast_and_feedparser_paths_agree(name: str, monkeypatch: pytest.MonkeyPatch):
    fast = items(FEEDS[name], slow=False, monkeypatch=monkeypatch)
    slow = items(FEEDS[name], slow=True, monkeypatch=monkeypatch)
    assert fast and fast == slow


def test_fast_path_is_taken_for_well_formed_feeds(monkeypatch: pytest.MonkeyPatch):
    def boom(*_a, **_k):
        raise AssertionError("feedparser used for a well-formed feed")

    monkeypatch.setattr(feed_mod, "_slow", boom)
    for body in FEEDS.values():
        feed_mod.parse_feed(
            Page(SRC.url, body.encode("latin-1" if "ISO-8859-1" in body else "utf-8"))
        )


def test_malformed_feeds_fall_back_to_feedparser():
    broken = RSS2.replace("</channel>", "")  # not well-formed: lxml refuses, feedparser copes
    got = RssAdapter(SRC).parse(Page(SRC.url, broken.encode()))
    assert [r.key for r in got] == ["g-1", "https://ex.se/2", "https://ex.se/perma/3"]


def test_a_cut_off_feed_is_an_error_but_an_empty_one_is_not():
    from watcher.exceptions import ParseError

    with pytest.raises(ParseError) as exc:
        RssAdapter(SRC).parse(Page(SRC.url, b"<rss><channel><item><title>cut off"))
    assert exc.value.code == "invalid_feed"
    empty = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
    assert RssAdapter(SRC).parse(Page(SRC.url, empty)) == []
