"""Everything a person reads on the web is in the interface's language: every HTML page of
the routers (as ``test_read_only`` finds them, as a logged-in admin, on the demo's sample
data, which has every kind, status and poll outcome), rendered in Swedish, holds no English
word of the interface, and rendered in English, no Swedish one.

Only the interface counts, not the data: the visible text is read with lxml after dropping
what is marked as data or as another language (``<code>``, ``<pre>``, ``<textarea>``,
``translate="no"``, ``lang="…"`` other than the page's), and the stored data people typed or
sources gave (titles, summaries, names, addresses) is taken out of the text before looking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import lxml.html
import pytest

from notifications.unsubscribe import Unsubscriber
from sources import registry
from tests.conftest import Clock
from tests.test_read_only import get_routes
from tests.web_builders import LiveServer, login
from watcher import demo
from watcher.app import App
from watcher.storage.items import ItemFilter
from watcher.types import PollResult, PollStatus
from watcher.web import adapter_labels
from watcher.web.admin.forms import option_specs
from watcher.web.auth import hash_password

PASSWORD = "demo-lösenord-för-test"

# Words of an English interface, matched as whole words (case-sensitive where a capital
# marks a label). "Status", "Budget", "Program" and "Admin" are Swedish words too.
ENGLISH = [
    "Save", "Cancel", "Delete", "Edit", "Search", "Sources", "Source", "Networks",
    "Deadline", "Deadlines", "Opens", "Forthcoming", "Closed", "Kind", "Type", "Title",
    "Summary", "Link", "Identifier", "Language", "Swedish", "Subscribe", "Settings",
    "error", "failed", "sent", "pending", "cancelled", "never", "today", "tomorrow",
    "days", "items", "item", "layout", "changed", "selector", "regex", "entry",
    "ok", "partial", "not_modified", "skipped", "forthcoming_call", "call", "news",
    "event", "consultation", "partner_search", "page_change", "forthcoming", "open",
    "closed", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "daily", "weekdays",
    "true", "false", "None",
]  # fmt: skip
# Words of a Swedish interface.
SWEDISH = [
    "och", "eller", "för", "med", "inte", "Spara", "Ändra", "Källor", "Källa", "Nätverk",
    "Utskick", "Sista", "dagar", "Öppen", "Stängd", "Kommande", "Utlysning", "Nyhet",
    "Samråd", "Typ", "Sök", "Visa", "Alla", "nya", "fel", "hämtningar", "mån", "tis", "ons",
    "tors", "fre", "dagligen", "vardagar", "svenska", "engelska", "oktober", "november",
    "december", "januari", "februari", "maj", "juni", "juli", "augusti", "kl",
]  # fmt: skip
# A raw key in running text (``not_modified``, ``http_500``, ``forthcoming_call``).
SNAKE = re.compile(r"\b[a-z]+_[a-z0-9_]+\b")


def data_strings(app: App) -> list[str]:
    """What people typed or sources gave: shown as it is in either language."""
    out: list[str] = []
    for it in app.storage.list_items(ItemFilter(limit=10_000)):
        out += [it.title, it.summary or "", it.programme or "", it.identifier or ""]
        out += [s.link for s in it.sources]
    for s in app.config.sources:
        out += [s.name, s.url]
    for n in app.config.networks:
        out += [n.name, *n.members]
    return sorted((s for s in out if s and len(s) > 2), key=len, reverse=True)


def visible_text(html: str, page_lang: str, data: list[str]) -> str:
    doc = lxml.html.fromstring(html)
    drop = (
        "//script | //style | //code | //pre | //textarea | //*[@translate='no']"
        f" | //body//*[@lang and @lang!='{page_lang}']"
    )
    for el in doc.xpath(drop):
        if el.getparent() is not None:
            el.drop_tree()
    text = " ".join(doc.text_content().split())
    for s in data:
        text = text.replace(" ".join(s.split()), " ")
    return text


def hits(text: str, words: list[str]) -> list[str]:
    """Each word of ``words`` (and each raw key) found, with the text around it."""
    pattern = "|".join(rf"(?<![\w-]){re.escape(w)}(?![\w-])" for w in words)
    found = re.finditer(rf"{pattern}|{SNAKE.pattern}", text)
    return sorted({f"{m.group()}: …{text[max(0, m.start() - 40) : m.end() + 40]}…" for m in found})


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp: Path = tmp_path_factory.mktemp("demo")
    data = demo.config_data(
        tmp, "http://127.0.0.1:9", "127.0.0.1:9", "http://127.0.0.1:8000", hash_password(PASSWORD)
    )
    app = App.from_path(demo.write_config(tmp / "config.toml", data), clock=Clock())
    app.storage.ensure_schema()
    demo.seed(app)
    # A poll the server answered 304: the poll log shows every outcome.
    src = app.config.sources[0]
    result = PollResult(src.id, PollStatus.NOT_MODIFIED)
    app.storage.record_not_modified(src.id, result, app.now(), ("etag", None), app.now())
    try:
        yield app
    finally:
        app.close()


def page_urls(app: App) -> list[str]:
    """Every HTML page of the routers, with examples for the path parameters."""
    net = app.config.networks[0]
    src = app.config.sources[0].id
    ids = [str(i) for i in app.storage.all_item_ids()]
    examples = {
        "/items/{item_id}": [f"/items/{i}" for i in ids],
        "/admin/items/{item_id}": [f"/admin/items/{i}" for i in ids[:8]],
        "/admin/sources/{source_id}": [f"/admin/sources/{s.id}" for s in app.config.sources],
        "/admin/sources/{source_id}/delete": [f"/admin/sources/{src}/delete"],
        "/admin/networks/{network_id}": [f"/admin/networks/{n.id}" for n in app.config.networks],
        "/admin/networks/{network_id}/delete": [f"/admin/networks/{net.id}/delete"],
        "/admin/networks/{network_id}/digest": [f"/admin/networks/{net.id}/digest"],
        "/unsubscribe/{token}": [
            "/unsubscribe/" + Unsubscriber.for_app(app).token(net.id, net.members[0]),
            "/unsubscribe/forged",
        ],
        "/prenumerera/bekrafta/{token}": ["/prenumerera/bekrafta/1.abcdefghijklmnopqrstuvwx"],
        "/prenumerera/installningar/{token}": ["/prenumerera/installningar/1.forged"],
    }
    skip = ("/api", "/feeds", "/calendar", "/healthz", "/static", "/lang", "/admin/logout")
    out: list[str] = []
    for path in get_routes():
        if path.startswith(skip) or path.endswith(".html") or path.endswith("/digest.html"):
            continue
        if "{" in path:
            out += examples.get(path, [])
        else:
            out.append(path)
    out += [f"/admin/sources/new?kind={k}" for k in registry.kinds()]
    out += ["/admin/rules/default?name=areas.toml", "/?status=closed&all=1"]
    return out


@pytest.fixture(scope="module")
def pages(demo_app: App) -> dict[str, dict[str, str]]:
    """Every page's visible interface text, per language."""
    data = data_strings(demo_app)
    out: dict[str, dict[str, str]] = {"sv": {}, "en": {}}
    with LiveServer(demo_app) as live:
        for lang in ("sv", "en"):
            with httpx.Client(base_url=live.url, timeout=30) as client:
                assert login(client, PASSWORD).status_code == 303
                client.cookies.set("lang", lang)
                for url in page_urls(demo_app):
                    r = client.get(url)
                    assert r.status_code < 500, url
                    if "text/html" in r.headers.get("content-type", ""):
                        out[lang][url] = visible_text(r.text, lang, data)
    return out


def test_every_page_is_checked(pages: dict[str, dict[str, str]]) -> None:
    urls = {u.split("?")[0] for u in pages["sv"]}
    assert {"/", "/deadlines", "/admin/sources", "/admin/networks", "/admin/events"} <= urls
    assert len(pages["sv"]) > 40 and len(pages["sv"]) == len(pages["en"])


def test_swedish_pages_hold_no_english(pages: dict[str, dict[str, str]]) -> None:
    report = [f"{u}: {w}" for u, t in pages["sv"].items() for w in hits(t, ENGLISH)]
    assert not report, "English in the Swedish interface:\n" + "\n".join(report)


def test_english_pages_hold_no_swedish(pages: dict[str, dict[str, str]]) -> None:
    report = [f"{u}: {w}" for u, t in pages["en"].items() for w in hits(t, SWEDISH)]
    assert not report, "Swedish in the English interface:\n" + "\n".join(report)


def test_every_adapter_option_and_kind_has_a_swedish_label() -> None:
    missing = [
        f"{kind}.{spec.name}"
        for kind in registry.kinds()
        for spec in option_specs(kind)
        if adapter_labels.option_label(kind, spec.name) is None
    ]
    missing += [k for k in registry.kinds() if adapter_labels.kind_help(k) is None]
    assert missing == []
