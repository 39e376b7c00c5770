"""Every page fits a phone: at 360 px wide no page, public or admin, scrolls sideways.

Headless Chromium (Debian's, as in ``test_browser.py``) opens every HTML page of the
routers at 360 px and checks that neither the document nor the body is wider than the
screen. The pages come from the routers themselves (``test_read_only.urls``), so a new page
is checked too. The data is made to stretch a page: a title with a 60-letter word, a link
of 300 characters without a break, a failing source with a long error, a digest sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from notifications.delivery import run_digests
from tests.test_browser import ARGS, CHROMIUM, log_in
from tests.test_read_only import urls
from tests.web_builders import BASE_CONFIG, PASSWORD, LiveServer, raw, seed
from watcher.app import App
from watcher.types import PollResult, PollStatus, SourceError

WIDTH = 360

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
    ),
]

LONG_WORD = "Kompetensförsörjningsutvecklingsprogrammets" + "samverkansprojekt" * 2
LONG_URL = "https://ec.europa.eu/info/funding-tenders/opportunities/portal/screen/" + (
    "opportunities/topic-details/HORIZON-CL2-2027-TRANSFORMATIONS-01-" * 4
)

# What the widest elements are, to say why a page is too wide.
WIDEST = """(limit) => [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > limit + 1)
    .slice(-3)
    .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
         + ' ' + Math.round(e.getBoundingClientRect().right) + 'px')"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def stretched(make_app: Any, clock: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """A service whose pages hold long words, long links and every kind of row."""
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    app: App = make_app(BASE_CONFIG)
    seed(
        app,
        "esf",
        [
            raw(
                "long",
                f"Utlysning: {LONG_WORD} i Västra Götaland",
                link=LONG_URL,
                summary=f"Se {LONG_URL} och {LONG_WORD}.",
                opening="2026-01-10",
                deadlines=("2026-11-03", "2027-02-11"),
                status="open",
                programme=f"ESF+ {LONG_WORD}",
                identifier="ESF-2026-" + "X" * 40,
            ),
            raw(
                "k2",
                "Erasmus+ call for proposals: school education",
                deadlines=("2026-12-01",),
                status="forthcoming",
            ),
        ],
    )
    run_digests(app, ["gr-eu"])
    clock.advance(hours=3)
    error = SourceError("http_500", f"Server error at {LONG_URL}: {LONG_WORD}")
    app.storage.record_failure(
        "nyheter", error, PollResult("nyheter", PollStatus.ERROR, error=error), app.now(), None
    )
    with LiveServer(app) as server:
        yield server


def too_wide(page: Any) -> tuple[int, int] | None:
    doc, body = page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth]")
    return None if doc <= WIDTH and body <= WIDTH else (doc, body)


def test_no_page_scrolls_sideways_at_360_px(browser: Any, stretched: LiveServer) -> None:
    context = browser.new_context(
        base_url=stretched.url, locale="sv-SE", viewport={"width": WIDTH, "height": 740}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        log_in(page)
        seen: list[str] = []
        wide: list[tuple[str, tuple[int, int], list[str]]] = []
        for url in urls(stretched.app):
            # Feeds, calendars and JSON are not pages (and a calendar is a download).
            answer = context.request.get(url, max_redirects=0)
            assert answer.status < 500, (url, answer.status)
            if not answer.headers.get("content-type", "").startswith("text/html"):
                continue
            page.goto(url)
            seen.append(url.split("?")[0])
            if size := too_wide(page):
                wide.append((url, size, page.evaluate(WIDEST, WIDTH)))
        # The English interface too, on the pages with the most text.
        for url in ("/items/1?lang=en", "/subscribe?lang=en", "/admin/sources/nyheter"):
            page.goto(url)
            if size := too_wide(page):
                wide.append((url, size, page.evaluate(WIDEST, WIDTH)))
        # Not logged in: the login page.
        context.clear_cookies()
        page.goto("/admin/login")
        if size := too_wide(page):
            wide.append(("/admin/login (logged out)", size, page.evaluate(WIDEST, WIDTH)))
    finally:
        context.close()
    assert wide == [], "\n".join(f"{u}: {s[0]} px (body {s[1]}): {w}" for u, s, w in wide)
    expected = {
        "/",
        "/items/1",
        "/deadlines",
        "/subscribe",
        "/admin",
        "/admin/sources",
        "/admin/sources/new",
        "/admin/sources/esf",
        "/admin/networks",
        "/admin/networks/new",
        "/admin/networks/gr-eu",
        "/admin/networks/gr-eu/digest",
        "/admin/deliveries",
        "/admin/rules",
        "/admin/audit",
    }
    assert expected <= set(seen), expected - set(seen)
