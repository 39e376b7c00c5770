"""Public pages: the item list (search, filters, sort, pages), the item page, the deadline
timeline, the subscription page, the language switch, and the English catalogue."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from tests.web_builders import BASE_CONFIG, PASSWORD, LiveServer, item, raw, seed, store
from watcher.app import App
from watcher.storage import ItemFilter
from watcher.types import (
    FieldChange,
    Incomplete,
    Kind,
    PollResult,
    PollStatus,
    Status,
    Updated,
)
from watcher.web.public import TimelineCache
from watcher.web.render import LOCALE_DIR, PO_FILE, TEMPLATES_DIR, local_path, safe_url

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # the clock fixture's time: Monday, week 45


def titles(html: str) -> list[str]:
    """Item titles on a list page, in order."""
    return [
        re.sub(r"<[^>]+>", "", m)
        for m in re.findall(r'<h2><a href="/items/\d+">(.*?)</a></h2>', html, re.S)
    ]


# The open ESF+ call every stocked page shows.
K1 = raw(
    "k1",
    "Utlysning: kompetensförsörjning i Västsverige",
    summary="ESF+ stöd för arbetsmarknad och kompetens.",
    deadlines=("2026-11-20",),
    status="open",
    programme="ESF+",
)


@pytest.fixture
def stocked(web_app: App) -> App:
    seed(
        web_app,
        "esf",
        [
            K1,
            raw(
                "k2",
                "Interreg ÖKS: tredje utlysningen",
                summary="Samhällsbyggnad och innovation över gränsen.",
                deadlines=("2026-12-04",),
                status="open",
                programme="Interreg ÖKS",
            ),
            raw(
                "k3",
                "Erasmus+ call for proposals: school education",
                summary="Call for proposals for schools and adult education.",
                deadlines=("2027-02-11",),
                status="forthcoming",
                programme="Erasmus+",
            ),
            raw(
                "k4",
                "Stängd utlysning om social välfärd",
                summary="Utlysning för äldreomsorg.",
                deadlines=("2026-09-01",),
                status="closed",
            ),
        ],
    )
    return web_app


def test_the_list_shows_items_newest_first_and_searches_title_and_summary(
    stocked: App, client: httpx.Client
) -> None:
    # Untagged (so not relevant to the networks): shown with "all".
    seed(stocked, "nyheter", [raw("n1", "Nyhet från Bryssel")], now=T0 + timedelta(hours=1))
    assert "Nyhet från Bryssel" not in titles(client.get("/").text)
    r = client.get("/", params={"all": "1"})
    assert r.status_code == 200
    assert titles(r.text)[0] == "Nyhet från Bryssel"
    assert "5 träffar" in r.text
    r = client.get("/", params={"q": "kompetens"})
    assert titles(r.text) == ["Utlysning: kompetensförsörjning i Västsverige"]
    r = client.get("/", params={"q": "gränsen"})  # only in the summary
    assert titles(r.text) == ["Interreg ÖKS: tredje utlysningen"]
    r = client.get("/", params={"q": "utlysning social"})  # every word must match
    assert titles(r.text) == ["Stängd utlysning om social välfärd"]


def test_the_list_filters_by_area_theme_source_programme_status_and_deadline(
    stocked: App, client: httpx.Client
) -> None:
    def shown(**params: str) -> list[str]:
        r = client.get("/", params=params)
        assert r.status_code == 200
        return sorted(titles(r.text))

    assert shown(theme="arbetsmarknad") == ["Utlysning: kompetensförsörjning i Västsverige"]
    assert "Interreg ÖKS: tredje utlysningen" in shown(area="fonder-program")
    assert shown(source="nyheter") == []
    assert shown(programme="erasmus") == ["Erasmus+ call for proposals: school education"]
    assert shown(status="closed") == ["Stängd utlysning om social välfärd"]
    assert shown(within="30") == ["Utlysning: kompetensförsörjning i Västsverige"]
    assert shown(within="90") == [  # not the one closing in 101 days, nor the closed one
        "Interreg ÖKS: tredje utlysningen",
        "Utlysning: kompetensförsörjning i Västsverige",
    ]
    assert shown(**{"from": "2026-12-01", "to": "2026-12-04"}) == [
        "Interreg ÖKS: tredje utlysningen"
    ]
    # Unknown filter values are ignored, not errors.
    assert len(shown(area="<nope>", status="whatever", page="x")) == 4


def test_sorting_by_deadline_lists_upcoming_deadlines_nearest_first(
    stocked: App, client: httpx.Client
) -> None:
    r = client.get("/", params={"sort": "deadline"})
    assert titles(r.text) == [
        "Utlysning: kompetensförsörjning i Västsverige",
        "Interreg ÖKS: tredje utlysningen",
        "Erasmus+ call for proposals: school education",
    ]
    assert "om 18 dagar" in r.text  # 2 → 20 November


def test_pages_of_fifty_with_links_that_keep_the_filters(
    web_app: App, client: httpx.Client
) -> None:
    store(web_app, "esf", [item(f"p{i:02d}", f"Utlysning nummer {i:02d}") for i in range(60)])
    r = client.get("/", params={"q": "nummer", "all": "1"})
    assert len(titles(r.text)) == 50 and "sida 1 av 2" in r.text
    nxt = re.search(r'rel="next" href="([^"]+)"', r.text)
    assert nxt is not None
    href = nxt.group(1).replace("&amp;", "&")
    assert "q=nummer" in href and "page=2" in href and "all=1" in href
    r2 = client.get(href)
    assert len(titles(r2.text)) == 10
    assert set(titles(r.text)).isdisjoint(titles(r2.text))


def test_a_broad_search_is_counted_up_to_a_cap_and_paged_on(
    web_app: App, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A count reads every match: past COUNT_LIMIT results beyond the page's start, the list
    # says "n+" and still links the next page.
    monkeypatch.setattr("watcher.web.public.COUNT_LIMIT", 100)
    store(web_app, "esf", [item(f"p{i:03d}", f"Utlysning nummer {i:03d}") for i in range(160)])
    r = client.get("/", params={"q": "nummer", "all": "1"})
    assert "100+ träffar" in r.text and "sida 1 av 2+" in r.text
    assert 'rel="next"' in r.text
    r = client.get("/", params={"q": "nummer", "all": "1", "page": "2"})
    assert len(titles(r.text)) == 50 and "150+ träffar" in r.text  # 50 + 100
    assert 'rel="next"' in r.text
    r = client.get("/", params={"q": "nummer", "all": "1", "page": "3"})  # 110 left: counted
    assert "160 träffar" in r.text and "sida 3 av 4" in r.text
    r = client.get("/", params={"q": "nummer", "all": "1", "page": "4"})
    assert len(titles(r.text)) == 10 and 'rel="next"' not in r.text


def test_an_incomplete_item_says_what_it_lacks_and_why(web_app: App, client: httpx.Client) -> None:
    failed = Incomplete("detail page failed: http_503", ("status", "deadlines"), "http_503")
    [item_id] = store(web_app, "esf", [item("x", "Utlysning X", incomplete=failed)])
    page = client.get(f"/items/{item_id}").text
    assert "Ofullständig: detail page failed: http_503 (saknar status, sista dagar)" in page


def test_the_item_page_shows_the_record_sources_history_and_tags_with_why(
    stocked: App, client: httpx.Client, clock: object
) -> None:
    found = stocked.storage.list_items()
    it = next(i for i in found if i.title.startswith("Utlysning: kompetens"))
    updated = item(
        "k1",
        it.title,
        link=it.link,
        summary=it.summary,
        deadlines=(datetime(2026, 11, 27, 15, 0, tzinfo=UTC),),
        status=Status.OPEN,
    )
    stocked.storage.apply(
        "esf",
        [
            Updated(
                updated,
                it.id,
                (
                    FieldChange(
                        "deadlines", ["2026-11-20T22:59:00+00:00"], ["2026-11-27T15:00:00+00:00"]
                    ),
                ),
            )
        ],
        PollResult("esf", PollStatus.OK, updated=1),
        T0 + timedelta(days=1),
    )
    r = client.get(f"/items/{it.id}")
    assert r.status_code == 200
    page = r.text
    assert "<h1>Utlysning: kompetensförsörjning i Västsverige</h1>" in page
    assert '<a href="https://esf.example/k1" rel="noopener noreferrer nofollow">' in page
    assert "27 november 2026 kl. 16:00" in page  # the new deadline, in Stockholm time
    assert "ESF-rådet" in page  # the source by name
    assert "uppdaterad" in page  # the history row, said as a person would
    assert "Sista ansökningsdag flyttad: 20 november 2026 → 27 november 2026 kl. 16:00" in page
    assert "2026-11-20T22:59" not in page  # no raw stored values
    # Tags with the rule that gave them and what it matched.
    assert "Arbetsmarknad" in page and "arbetsmarknad" in page
    tag = next(t for t in it.tags if t.tag == "arbetsmarknad")
    assert f"<code>{tag.rule_id}</code>" in page
    assert "/feeds/theme/arbetsmarknad.xml" in page and "/calendar/theme/arbetsmarknad.ics" in page
    assert client.get("/items/999999").status_code == 404
    assert client.get("/items/abc").status_code == 404


def test_the_timeline_groups_upcoming_deadlines_by_week(stocked: App, client: httpx.Client) -> None:
    r = client.get("/deadlines")
    assert r.status_code == 200
    weeks = re.findall(r'<h2 id="w(\d+)-(\d+)">', r.text)
    assert weeks == [("2026", "47"), ("2026", "49")]  # 20 Nov, 4 Dec; Feb is > 12 weeks
    assert r.text.index("kompetensförsörjning") < r.text.index("Interreg ÖKS")
    assert "Stängd utlysning" not in r.text
    r = client.get("/deadlines", params={"weeks": "26", "theme": "utbildning"})
    assert re.findall(r'<h2 id="w(\d+)-(\d+)">', r.text) == [("2027", "6")]
    assert "/calendar/theme/utbildning.ics" in r.text


def test_the_subscription_page_links_feeds_and_calendars_that_exist(
    web_app: App, client: httpx.Client
) -> None:
    r = client.get("/subscribe")
    assert r.status_code == 200
    links = re.findall(r'href="(/(?:feeds|calendar)/[^"]+)"', r.text)
    assert len(links) == 3 + 3 * (6 + 5 + 1)  # all, then areas, themes, the network
    for link in links:
        assert client.get(link).status_code == 200, link
    for url in (
        "/feeds/all.xml",
        "/feeds/all.atom",
        "/calendar/all.ics",
        "/feeds/area/kompetens.xml",
        "/feeds/area/kompetens.atom",
        "/calendar/area/kompetens.ics",
        "/feeds/theme/utbildning.atom",
        "/feeds/network/gr-eu.xml",
        "/calendar/network/gr-eu.ics",
    ):
        assert f'href="{url}"' in r.text, url
    assert "anna@example.se" not in r.text  # members are not public


def test_the_language_switch_remembers_english_and_only_redirects_locally(
    stocked: App, client: httpx.Client
) -> None:
    r = client.get("/lang/en", params={"next": "/deadlines?weeks=4"})
    assert r.status_code == 303 and r.headers["location"] == "/deadlines?weeks=4"
    assert "lang=en" in r.headers["set-cookie"]
    page = client.get("/").text
    assert '<html lang="en">' in page and "Calls and news" in page and "Search" in page
    assert client.get("/", params={"lang": "sv"}).text.count("Utlysningar och nyheter") >= 1
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = client.get("/lang/sv", params={"next": evil})
        assert r.headers["location"] == "/"


def test_english_dates_and_labels(stocked: App, client: httpx.Client) -> None:
    page = client.get("/", params={"lang": "en", "sort": "deadline"}).text
    assert "20 November 2026" in page and "in 18 days" in page and "Open" in page


def test_the_search_form_keeps_its_values_and_the_feed_links_follow_the_filter(
    stocked: App, client: httpx.Client
) -> None:
    r = client.get("/", params={"q": "Interreg", "area": "fonder-program", "sort": "deadline"})
    assert 'value="Interreg"' in r.text
    assert '<option value="fonder-program" selected>' in r.text
    assert '<option value="deadline" selected>' in r.text
    assert 'href="/feeds/area/fonder-program.xml"' in r.text


def extracted() -> set[str]:
    """Every interface string, found as ``pybabel extract -F watcher/web/babel.cfg`` finds
    them (``_`` in the templates, ``t`` and ``_`` in the code)."""
    web = Path(TEMPLATES_DIR).parent
    with (web / "babel.cfg").open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = extract_from_dir(
        web, method_map, options_map, keywords={**DEFAULT_KEYWORDS, "t": None}, comment_tags=()
    )
    return {str(msgid) for _file, _line, msgid, _comments, _context in found}


def test_every_interface_text_has_an_english_translation() -> None:
    """The message catalogue (Babel's .po) translates every extracted string, and the
    template (messages.pot) is what extraction gives today."""
    wanted = extracted()
    assert len(wanted) > 200
    with PO_FILE.open("rb") as f:
        po = read_po(f, locale="en")
    translated = {str(m.id): str(m.string) for m in po if m.id and m.string and not m.fuzzy}
    assert sorted(w for w in wanted if w not in translated) == []
    for sv, en in translated.items():  # placeholders survive translation
        assert set(re.findall(r"{\w+}", sv)) == set(re.findall(r"{\w+}", en)), sv
    with (LOCALE_DIR / "messages.pot").open("rb") as f:
        pot = {str(m.id) for m in read_po(f) if m.id}
    assert pot == wanted, "run pybabel extract (see watcher/web/babel.cfg)"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://ec.europa.eu/x", True),
        ("http://esf.se/", True),
        ("HTTPS://EXAMPLE.ORG/", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        (" javascript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("vbscript:msgbox", False),
        ("//evil.example/", False),
        ("/relative/path", False),
        ("mailto:a@b.se", False),
        ("https://", False),
        ("", False),
    ],
)
def test_safe_url(url: str, ok: bool) -> None:
    assert (safe_url(url) == url) is ok


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/items/3", "/items/3"),
        ("/?q=a&b=c", "/?q=a&b=c"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        (None, "/"),
    ],
)
def test_local_path(target: str | None, expected: str) -> None:
    assert local_path(target) == expected


def test_kinds_and_statuses_have_labels() -> None:
    from watcher.web.render import KIND_LABELS, STATUS_LABELS

    assert set(KIND_LABELS) == {k.value for k in Kind}
    assert set(STATUS_LABELS) == {s.value for s in Status}


def test_the_timeline_is_read_once_until_items_change(
    stocked: App, client: httpx.Client, clock: Any
) -> None:
    """Reading and laying out the timeline's calls is most of its time: it is kept until
    this process changes items (the app's hooks) or a minute passes (another process)."""
    [cache] = [
        h.__self__ for h in stocked.hooks.items_changed if isinstance(h.__self__, TimelineCache)
    ]
    assert "kompetensförsörjning" in client.get("/deadlines").text
    client.get("/deadlines")
    assert cache.builds == 1
    seed(stocked, "esf", [raw("k9", "Utlysning om vätgas", deadlines=("2026-11-25",))])
    assert "vätgas" not in client.get("/deadlines").text  # written behind the app's back
    for hook in stocked.hooks.items_changed:  # as a poll of this process tells
        hook("esf", [])
    assert "vätgas" in client.get("/deadlines").text and cache.builds == 2
    client.get("/deadlines", params={"weeks": "26"})
    assert cache.builds == 3  # each set of filters is its own
    clock.advance(seconds=61)
    client.get("/deadlines")
    assert cache.builds == 4


def test_pages_read_on_the_event_loop_on_sqlite_and_in_threads_on_postgresql(
    make_app: Any, any_storage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of short reads (an item, the API's item, a plain list) read on the server's
    event loop on SQLite, where a hand-off to a thread only adds waits for the GIL. Long
    reads go to a thread: a full-text search, a filter that scans, the deadline timeline
    when it must be built, the sources' health (most of that is SQLite's own work, which
    lets go of the GIL, so two run at once and the loop goes on). On PostgreSQL every read
    does (its reads wait for the network)."""
    monkeypatch.setenv("WATCHER_ADMIN_PASSWORD", PASSWORD)
    app = make_app(BASE_CONFIG, storage=any_storage)
    seed(
        app,
        "esf",
        [K1],
    )
    item_id = app.storage.list_items(ItemFilter())[0].id
    on_loop: list[bool] = []

    def watched(name: str) -> None:
        read = getattr(app.storage, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop.append(True)
            except RuntimeError:  # a thread of the pool runs no loop
                on_loop.append(False)
            return read(*args, **kwargs)

        monkeypatch.setattr(app.storage, name, spy)

    for name in ("list_items", "list_counted", "get_item", "source_states"):
        watched(name)
    here = any_storage.dialect == "sqlite"
    pages = {
        "/": here,
        "/?sort=deadline": here,
        "/?q=kompetens": False,
        "/?programme=ESF": False,
        "/?page=500": False,
        f"/items/{item_id}": here,
        "/api/items": here,
        "/api/items?q=kompetens": False,
        "/api/items?kind=call": False,
        f"/api/items/{item_id}": here,
        "/api/sources": False,
        "/deadlines": False,  # the timeline is built
    }
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=20) as client:
        for path, expected in pages.items():
            on_loop.clear()
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert on_loop and set(on_loop) == {expected}, (path, on_loop)
            if path not in ("/api/sources", "/?page=500", "/api/items?kind=call"):
                assert "kompetensförsörjning" in r.text, path
        on_loop.clear()
        again = client.get("/deadlines")  # kept: rendered without a read
        assert again.status_code == 200 and "kompetensförsörjning" in again.text
        assert on_loop == []
