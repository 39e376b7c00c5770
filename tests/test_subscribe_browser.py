"""Sign-up in a real browser (Playwright driving Debian's Chromium, headless, as in
``test_browser.py``): fill in /prenumerera, read the confirmation email from a real SMTP
server on loopback, open its link, confirm, and land on the preferences page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.digest_builders import RunningSmtp, SmtpSink, start_smtp
from tests.web_builders import BASE_CONFIG, PASSWORD, LiveServer
from watcher.app import App

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
    ),
]


@pytest.fixture
def smtp() -> Iterator[RunningSmtp]:
    g = start_smtp(SmtpSink())
    try:
        yield next(g)
    finally:
        g.close()


@pytest.fixture
def live(make_app: Any, smtp: RunningSmtp, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    app: App = make_app(
        {
            **BASE_CONFIG,
            "email": {"backend": "smtp", "smtp": dict(smtp.settings())},
            "subscriptions": {"allowed_domains": ["kommun.se"]},
        }
    )
    with LiveServer(app) as server:
        yield server


def test_sign_up_from_the_form_to_the_preferences_page(live: LiveServer, smtp: RunningSmtp) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(base_url=live.url, locale="sv-SE")
            page.set_default_timeout(15_000)
            page.goto("/subscribe")
            page.click("a[href='/prenumerera']")
            page.fill("#email", "fel@gmail.com")
            page.check("input[name=kind][value=topics]")
            page.check("input[name=areas][value=kompetens]")
            page.click("button[type=submit]")
            assert "gmail.com" in page.inner_text("[role=alert]")
            page.fill("#email", "ny@kommun.se")
            page.click("button[type=submit]")
            assert "Kolla din e-post" in page.inner_text("h1")

            [mail] = [a.message for a in smtp.sink.accepted]
            text = str(mail.get_body(preferencelist=("plain",)).get_content())
            m = re.search(r"https?://\S+(/prenumerera/bekrafta/\S+)", text)
            assert m is not None
            page.goto(m.group(1))
            assert "Bekräfta prenumerationen" in page.inner_text("h1")
            page.click("button[type=submit]")
            assert "Din prenumeration" in page.inner_text("h1")
            assert "Prenumerationen är bekräftad" in page.inner_text("main")
            page.select_option("#frequency", "daily")
            page.click("form:has(#frequency) button[type=submit]")
            assert page.input_value("#frequency") == "daily"
        finally:
            browser.close()
