"""The admin in a real browser: Playwright driving Debian's Chromium, headless.

Log in, add an ``html`` source, test-fetch it against a loopback server, save it and find it
in ``config.toml`` and the source list; a wrong selector shows a form error on its field;
edit a network and preview its digest. Playwright never downloads a browser here: it
launches ``/usr/bin/chromium`` (``.ci/run`` installs it), and the tests are skipped with a
reason when it is missing.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fetch_settings
from tests.loopback import LoopbackServer
from tests.web_builders import BASE_CONFIG, PASSWORD, LiveServer, raw, seed
from watcher.app import App

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
    ),
]

LISTING = """<html><body><h1>Utlysningar</h1><ul>
<li class="call"><h3><a href="/c/1">Utlysning: kompetensförsörjning 2027</a></h3>
  <p>Sista ansökningsdag: 16 mars 2027</p></li>
<li class="call"><h3><a href="/c/2">Utlysning: hållbar stadsutveckling</a></h3>
  <p>Sista ansökningsdag: 1 april 2027</p></li>
</ul></body></html>"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def live(
    make_app: Any, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveServer]:
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    loopback.add("/listing", LISTING, content_type="text/html; charset=utf-8")
    app: App = make_app({**BASE_CONFIG, "fetch": fetch_settings(loopback)})
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=live.url, locale="sv-SE")
    context.set_default_timeout(15_000)
    p = context.new_page()
    yield p
    context.close()


def log_in(page: Any) -> None:
    page.goto("/admin/sources")  # not logged in: the login page, remembering where to go
    assert "/admin/login" in page.url
    page.get_by_label("Användarnamn").fill("admin")
    page.get_by_label("Lösenord").fill(PASSWORD)
    page.get_by_role("button", name="Logga in").click()
    page.wait_for_url("**/admin/sources")


def fill_html_source(page: Any, loopback: LoopbackServer, selector: str) -> None:
    page.goto("/admin/sources")
    page.get_by_label("Ny källa av typen").select_option("html")
    page.get_by_role("button", name="Lägg till källa").click()
    page.wait_for_url("**/admin/sources/new?kind=html")
    page.fill('[name="id"]', "lokal-sida")
    page.fill('[name="name"]', "Lokal sida med utlysningar")
    page.fill('[name="url"]', loopback.url("/listing"))
    page.get_by_label("EU:s fonder och program").check()
    page.fill('[name="opt.item"]', selector)
    page.fill('[name="opt.title"]', "h3")


def test_add_an_html_source_test_fetch_it_and_save_it(
    page: Any, live: LiveServer, loopback: LoopbackServer
) -> None:
    log_in(page)
    fill_html_source(page, loopback, "li.call")
    page.get_by_role("button", name="Provhämta").click()
    preview = page.locator("#preview")
    preview.wait_for()
    assert "2 poster hittades." in preview.inner_text()
    assert preview.get_by_role("cell", name="Utlysning: kompetensförsörjning 2027").count() == 1
    assert "16 mars 2027" in preview.inner_text()
    config = Path(str(live.app.config.path))
    assert "lokal-sida" not in config.read_text(encoding="utf-8")  # a test fetch saves nothing
    # The form kept what was typed; now save it.
    assert page.input_value('[name="opt.item"]') == "li.call"
    page.get_by_role("button", name="Spara", exact=True).click()
    page.wait_for_url("**/admin/sources")
    assert "Källan Lokal sida med utlysningar sparades." in page.locator(".flash").inner_text()
    row = page.locator("#source-lokal-sida")
    assert "Lokal sida med utlysningar" in row.inner_text()
    saved = tomllib.loads(config.read_text(encoding="utf-8"))["sources"][-1]
    assert saved["id"] == "lokal-sida" and saved["options"]["item"] == "li.call"
    assert saved["areas"] == ["fonder-program"]
    # Poll it now from the list.
    row.get_by_role("button", name="Hämta nu").click()
    page.wait_for_url("**/admin/sources")
    assert "lokal-sida: 2 nya" in page.locator(".flash").first.inner_text()


def test_a_wrong_selector_shows_an_error_on_its_field(
    page: Any, live: LiveServer, loopback: LoopbackServer
) -> None:
    log_in(page)
    fill_html_source(page, loopback, "li[[[")
    page.get_by_role("button", name="Spara", exact=True).click()
    summary = page.locator("#error-summary")
    summary.wait_for()
    assert "ogiltig CSS-väljare" in summary.inner_text()
    field = page.locator('[name="opt.item"]')
    assert field.get_attribute("aria-invalid") == "true"
    assert "ogiltig CSS-väljare" in page.locator("#e-f-opt-item").inner_text()
    # The error summary takes the focus (app.js), and its link leads to the field.
    assert page.evaluate("document.activeElement.id") == "error-summary"
    summary.get_by_role("link").first.click()
    assert page.url.endswith("#f-opt-item")
    assert "lokal-sida" not in Path(str(live.app.config.path)).read_text(encoding="utf-8")


def test_edit_a_network_and_preview_its_digest(page: Any, live: LiveServer) -> None:
    seed(live.app, "esf", [raw("u1", "Utlysning om arbetsmarknad och kompetens", status="open")])
    log_in(page)
    page.goto("/admin/networks")
    page.get_by_role("link", name="GR:s EU-nätverk").click()
    page.wait_for_url("**/admin/networks/gr-eu")
    page.fill('[name="members"]', "anna@example.se\nbo@example.se")
    page.fill('[name="schedule"]', "weekdays 07:30")
    page.get_by_role("button", name="Spara").click()
    page.wait_for_url("**/admin/networks/gr-eu/digest")
    assert page.get_by_role("heading", name="Nästa utskick till GR:s EU-nätverk").count() == 1
    assert "2 mottagare" in page.locator(".stats").inner_text()
    frame = page.frame_locator("iframe.digest-frame")
    assert "Utlysning om arbetsmarknad och kompetens" in frame.locator("body").inner_text()
    net = live.app.config.network("gr-eu")
    assert net.members == ("anna@example.se", "bo@example.se") and net.schedule == "weekdays 07:30"


def test_every_form_control_has_a_label_and_the_skip_link_works(
    page: Any, live: LiveServer
) -> None:
    log_in(page)
    for url in ("/admin/sources/new?kind=html", "/admin/networks/gr-eu", "/"):
        page.goto(url)
        unlabeled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter(el => el.type !== 'hidden')
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                .map(el => el.name)"""
        )
        assert unlabeled == [], (url, unlabeled)
    page.goto("/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Hoppa till innehållet"
    page.keyboard.press("Enter")
    # The fragment is set as the browser follows the link, after the key press returns:
    # wait for that event (a loaded host was slower than the next line), then check.
    page.wait_for_url("**#main", timeout=10_000)
    assert page.url.endswith("#main")
