"""The native adapters (ft-portal, esf, tillvaxtverket, haveyoursay) and the generic ``ical``
adapter on the interreg.no calendar: golden files, fetches against ``httpx.MockTransport``,
and layout-change errors.

Golden cases live in ``tests/data/sources/<folder>/`` (the adapter kind, or for a generic
adapter on one site's format a folder named after both, see ``FOLDERS``): the recorded body or bodies of a case
(``<case>.<ext>``, or ``<case>.page1.<ext>``, ``<case>.page2.<ext>`` …) and the normalised
items expected from them (``<case>.expected.json``, made with a fixed ``now``). A case with
several URLs, response headers, detail pages or options has a ``<case>.case.json``
manifest. ``WATCHER_REGEN_GOLDEN=1 pytest tests/test_sources_native.py`` rewrites the
expected files; otherwise they are compared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sources import registry
from sources.base import Adapter, FetchContext
from sources.esf import EsfAdapter
from sources.ft_portal import FtPortalAdapter
from sources.haveyoursay import HaveYourSayAdapter
from sources.tillvaxtverket import (
    DETAIL_ERROR,
    DETAIL_STATE,
    TillvaxtverketAdapter,
    canonical_region,
)
from watcher.config import FetchSection, SourceConfig
from watcher.exceptions import ConfigError, FetchError, ParseError
from watcher.http import HttpClient
from watcher.pipeline.normalise import normalise
from watcher.types import Fetched, FetchStatus, Item, Page, RawItem, Status

DATA = Path(__file__).parent / "data" / "sources"
NOW = datetime(2026, 9, 5, 8, 0, tzinfo=UTC)
REGEN = os.environ.get("WATCHER_REGEN_GOLDEN") == "1"
KINDS = ("ft-portal", "esf", "tillvaxtverket", "haveyoursay")
# Folders of golden cases -> the adapter kind they are read with (the native kinds, and
# generic adapters on a real site's format).
FOLDERS: dict[str, str] = {kind: kind for kind in KINDS} | {"ical-interreg": "ical"}
DEFAULT_URLS = {
    "ft-portal": "https://api.tech.ec.europa.eu/search-api/prod/rest/search",
    "esf": "https://www.esf.se/utlysningar/",
    "tillvaxtverket": (
        "https://tillvaxtverket.se/4.3409dae11877922a04096d8d/12.3409dae11877922a04096da6"
        ".portlet?state=rss&sv.contenttype=text/xml;charset=UTF-8"
    ),
    "haveyoursay": "https://ec.europa.eu/info/law/better-regulation/brpapi/searchInitiatives",
    "ical": "https://interreg.no/kalender/kategori/utlysninger/?ical=1",
}
_SKIP_SUFFIXES = (".expected.json", ".case.json")


# ── golden cases ─────────────────────────────────────────────────────────────────────────


def source_for(kind: str, url: str | None = None, **options: Any) -> SourceConfig:
    return SourceConfig(
        id=kind.replace("-", "_"),
        name=kind,
        kind=kind,
        url=url or DEFAULT_URLS[kind],
        options=options,
    )


def golden_cases() -> list[tuple[str, str]]:
    """(folder, case) for every recorded case (see ``FOLDERS``)."""
    out: list[tuple[str, str]] = []
    for name in FOLDERS:
        names = set()
        for f in (DATA / name).iterdir():
            if f.name.startswith(".") or f.suffix == ".md":
                continue
            if f.name.endswith(".case.json") or not f.name.endswith(_SKIP_SUFFIXES):
                names.add(f.name.split(".", 1)[0])
        out.extend((name, n) for n in sorted(names))
    return out


def load_case(case_folder: str, name: str) -> tuple[SourceConfig, Fetched]:
    """The source config and the ``Fetched`` value a recorded case stands for."""
    kind = FOLDERS[case_folder]
    folder = DATA / case_folder
    manifest_file = folder / f"{name}.case.json"
    manifest: dict[str, Any] = (
        json.loads(manifest_file.read_text(encoding="utf-8")) if manifest_file.exists() else {}
    )
    src = manifest.get("source", {})
    source = source_for(kind, src.get("url"), **src.get("options", {}))
    if "pages" in manifest:
        specs = manifest["pages"]
    else:
        files = sorted(
            f.name
            for f in folder.iterdir()
            if f.name.startswith(name + ".")
            and not f.name.endswith(_SKIP_SUFFIXES)
            and ".detail." not in f.name
        )
        specs = [{"file": f, "url": source.url} for f in files]
    pages = tuple(_page(folder, spec, source.url) for spec in specs)
    details = {
        key: _page(folder, spec, spec["url"]) for key, spec in manifest.get("details", {}).items()
    }
    return source, Fetched(FetchStatus.OK, pages, details=details)


def _page(folder: Path, spec: Mapping[str, Any], default_url: str) -> Page:
    url = spec.get("url", default_url)
    if "state" in spec:  # a detail page the fetch did not read (see sources.tillvaxtverket)
        headers = {DETAIL_STATE: spec["state"]}
        if spec.get("error"):
            headers[DETAIL_ERROR] = spec["error"]
        return Page(
            url=url,
            content=b"",
            headers=headers,
            status_code=304 if spec["state"] == "skipped-closed" else 0,
        )
    content_type = spec.get("content_type", "")
    charset = content_type.partition("charset=")[2] or None
    return Page(
        url=url,
        content=(folder / spec["file"]).read_bytes(),
        content_type=content_type.split(";")[0],
        encoding=charset,
        headers=spec.get("headers", {}),
    )


def item_dict(item: Item) -> dict[str, Any]:
    """The fields a golden file pins down."""
    return {
        "key": item.key,
        "title": item.title,
        "link": item.link,
        "kind": item.kind.value,
        "status": item.status.value if item.status else None,
        "programme": item.programme,
        "identifier": item.identifier,
        "language": item.language,
        "published": item.published.isoformat() if item.published else None,
        "opening": item.opening.isoformat() if item.opening else None,
        "deadlines": [d.isoformat() for d in item.deadlines],
        "budget": item.budget,
        "budget_amount": item.budget_amount,
        "currency": item.currency,
        "regions": list(item.regions),
        "topics": list(item.topics),
        "summary_start": item.summary[:100],
        "extra": dict(item.extra),
    }


def run_case(folder: str, name: str) -> list[dict[str, Any]]:
    source, fetched = load_case(folder, name)
    adapter = registry.get(FOLDERS[folder])(source)
    raws = adapter.parse_fetched(fetched)
    return [item_dict(normalise(raw, source, NOW)) for raw in raws]


@pytest.mark.parametrize(("folder", "name"), golden_cases(), ids=lambda v: v)
def test_golden(folder: str, name: str) -> None:
    got = run_case(folder, name)
    expected_file = DATA / folder / f"{name}.expected.json"
    if REGEN:
        expected_file.write_text(
            json.dumps(got, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    assert expected_file.exists(), f"no {expected_file.name}; run with WATCHER_REGEN_GOLDEN=1"
    expected = json.loads(expected_file.read_text(encoding="utf-8"))
    assert got == expected


def test_every_native_kind_has_golden_cases() -> None:
    kinds = {FOLDERS[f] for f, _ in golden_cases()}
    assert kinds == set(FOLDERS.values())
    assert len(golden_cases()) >= 10


def by_key(folder: str, name: str) -> dict[str, dict[str, Any]]:
    return {i["key"]: i for i in run_case(folder, name)}


# ── what the goldens must say (so a regenerated golden cannot hide a regression) ─────────


def test_ft_portal_sample_statuses_dates_and_links() -> None:
    items = by_key("ft-portal", "sample")
    soil = items["HORIZON-MISS-2027-05-SOIL-01-two-stage"]
    assert soil["status"] == "forthcoming" and soil["kind"] == "forthcoming_call"
    assert len(soil["deadlines"]) == 2  # two-stage call
    assert soil["programme"] == "Horizon Europe"
    # As the portal writes it: the identifier, the key and the link alike.
    assert soil["identifier"] == "HORIZON-MISS-2027-05-SOIL-01-two-stage"
    assert soil["link"].endswith("/topic-details/HORIZON-MISS-2027-05-SOIL-01-two-stage")
    # The published status says forthcoming, but the call opened on 25 August: open.
    gov = items["HORIZON-CL6-2026-04-GOVERNANCE-01"]
    assert gov["status"] == "open" and gov["budget_amount"] == 60_000_000.0
    # The legacy copy still says forthcoming; its deadline passed in 2024.
    legacy = items["HORIZON-CL2-2024-TRANSFORMATIONS-01-08"]
    assert legacy["status"] == "closed"
    # 17:00 Brussels time written as "17:00+0000" (the legacy copy's way): 16:00 UTC (CET).
    assert legacy["deadlines"] == ["2024-02-07T16:00:00+00:00"]
    assert legacy["link"].endswith("/topic-details/HORIZON-CL2-2024-TRANSFORMATIONS-01-08")
    # A budgetOverview cut in the middle gives no budget rather than a wrong one.
    assert items["HORIZON-CL3-2026-02-CS-ECCC-01"]["budget"] is None


def test_ft_portal_older_formats_read_in_brussels_time_or_as_dates() -> None:
    items = by_key("ft-portal", "legacy-formats")
    # The legacy copy (SEDIA_PRD_CENTRICITY) writes the Brussels wall clock as if it were
    # UTC: "17:00+0000" is 17:00 in Brussels, 15:00 UTC in summer and 16:00 in winter.
    legacy = items["HORIZON-CL6-2023-COMMUNITIES-01-2"]
    assert legacy["deadlines"] == ["2023-09-20T15:00:00+00:00"]
    assert legacy["opening"] == "2023-05-03T22:00:00+00:00"  # a date: 4 May, Swedish time
    # Known as legacy by the lower-case ``datasource`` key alone too.
    cut_offs = items["HORIZON-CL2-2026-TRANSFORMATIONS-01-05"]
    assert cut_offs["deadlines"] == ["2026-10-07T15:00:00+00:00", "2027-02-18T16:00:00+00:00"]
    # Older API versions: midnight UTC with a local offset is a date, so the deadline is the
    # end of 7 December (Swedish time), not 01:00, and the call opens on 5 October.
    older = items["CERV-2023-CHAR-LITI"]
    assert older["deadlines"] == ["2023-12-07T22:59:59+00:00"]
    assert older["opening"] == "2023-10-04T22:00:00+00:00"
    # Current records keep today's reading: midnight +0000 is that day.
    current = items["HORIZON-CL6-2027-01-COMMUNITIES-04"]
    assert current["deadlines"] == ["2027-04-15T21:59:59+00:00"]
    assert current["opening"] == "2026-12-14T23:00:00+00:00"


def test_ft_portal_record_without_datasource_is_legacy_by_its_data_url() -> None:
    url = "https://ec.europa.eu/info/funding-tenders/opportunities/data/topicDetails/X-2026-01.json"
    body = {
        "totalResults": 1,
        "results": [
            {
                "reference": "1X",
                "url": url,
                "metadata": {
                    "identifier": ["X-2026-01"],
                    "title": ["A topic"],
                    "type": ["1"],
                    "url": [url],
                    "deadlineDate": ["2026-11-12T17:00:00.000+0000"],
                },
            }
        ],
    }
    adapter = FtPortalAdapter(source_for("ft-portal"))
    [raw] = _parse(adapter, json.dumps(body))
    assert raw.deadlines == (datetime(2026, 11, 12, 16, 0, tzinfo=UTC),)  # 17:00 CET


CASCADE_TOPIC = "HORIZON-CL4-2025-03-DATA-11"
CASCADE_PAGE = (
    "https://ec.europa.eu/info/funding-tenders/opportunities/portal/screen/opportunities/"
    "competitive-calls-cs/"
)


def test_ft_portal_cascade_calls_are_each_their_own_call() -> None:
    """Cascade-funding calls (type 8) share their parent topic's identifier; each is still
    its own call, keyed and linked by its own ``callccm2Id``."""
    items = by_key("ft-portal", "cascade")
    assert set(items) == {CASCADE_TOPIC, "48400841", "48400902", "48401377"}
    topic = items[CASCADE_TOPIC]
    assert topic["identifier"] == CASCADE_TOPIC and topic["link"].endswith(CASCADE_TOPIC)
    first = items["48400841"]
    assert first["title"] == "Restack open call 2026-11R"  # callTitle, not the topic's title
    assert first["link"] == CASCADE_PAGE + "48400841"  # not the topic page the record gives
    # Its own identifier, so duplicate matching never takes it for the topic or a sibling;
    # the topic is kept beside it.
    assert first["identifier"] == "48400841"
    assert first["extra"]["topic_identifier"] == CASCADE_TOPIC
    assert first["extra"]["datasource"] == "SEDIA"  # not the stale legacy copy
    assert first["summary_start"].startswith("Restack funds open-source projects")
    assert first["budget_amount"] == 8_000_000.0  # its own budget, not the topic's
    assert items["48400902"]["title"] == "Restack open call 2027-01R"
    untitled = items["48401377"]  # no callTitle: the record's title
    assert untitled["title"] == "Open Internet Stack: technological commons (RIA)"
    assert untitled["extra"]["project"] == "CodeSupply"


async def test_ft_portal_results_without_metadata_are_a_source_warning() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(200, (DATA / "ft-portal" / "cascade.json").read_bytes())

    adapter = FtPortalAdapter(source_for("ft-portal"))
    async with client(handler) as http:
        fetched = await adapter.fetch(http, FetchContext())
    assert fetched.context["warnings"] == (
        "1 of 6 SEDIA results had no metadata object and could not be read",
    )
    assert len(adapter.parse_fetched(fetched)) == 4  # the readable ones are all kept


async def test_cascade_calls_stay_apart_across_sources_and_the_warning_shows(
    make_app: Any, loopback: Any
) -> None:
    """Two F&T sources giving the same cascade calls: each call is linked to its own stored
    call, never merged with a sibling or the parent topic that shares its identifier."""
    from tests.builders import src
    from tests.conftest import fetch_settings

    body = (DATA / "ft-portal" / "cascade.json").read_bytes()
    loopback.add("/grants", body, content_type="application/json")
    loopback.add("/cascade", body, content_type="application/json")
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [
                src("ft_grants", loopback.url("/grants"), adapter="ft-portal"),
                src("ft_cascade", loopback.url("/cascade"), adapter="ft-portal"),
            ],
        }
    )
    results = {r.source_id: r for r in await app.poll()}
    stored = app.storage.list_items()
    assert sorted(i.title for i in stored) == [
        "Open Internet Stack: technological commons (RIA)",
        "Open Internet Stack: technological commons (RIA)",
        "Restack open call 2026-11R",
        "Restack open call 2027-01R",
    ]
    assert all(len(i.sources) == 2 for i in stored)  # the second source linked, one each
    for source_id, result in results.items():
        assert result.status.value == "ok"
        assert any("no metadata object" in w for w in result.warnings), result.warnings
        assert "no metadata object" in (app.storage.source_state(source_id).warning or "")


def test_ft_portal_paged_keeps_one_record_per_identifier() -> None:
    items = by_key("ft-portal", "paged")
    assert set(items) == {
        "CERV-2026-CITIZENS-TOWN-TT",
        "LIFE-2026-SAP-CLIMA-GOV",
        "ERASMUS-EDU-2027-PI-ALL-INNO-EDU-ENTERP",
        "7712",  # a cascade-funding call: keyed by its own callccm2Id
    }  # the FAQ record is gone, duplicates are merged
    cerv = items["CERV-2026-CITIZENS-TOWN-TT"]
    assert cerv["extra"]["datasource"] == "SEDIA"  # not the stale legacy copy
    assert cerv["link"].endswith("/topic-details/CERV-2026-CITIZENS-TOWN-TT")
    assert cerv["budget_amount"] == 4_400_000.0  # only this topic's action of the call
    life = items["LIFE-2026-SAP-CLIMA-GOV"]
    assert life["summary_start"].startswith("Projects that help")  # not the stub
    assert "2026: 5 000 000" in life["budget"]
    cascade = items["7712"]
    assert cascade["link"].endswith("/competitive-calls-cs/7712")
    assert cascade["extra"]["topic_identifier"] == "SMART-CITIES-OC2-2026"


def test_haveyoursay_statuses_are_checked_against_dates() -> None:
    items = by_key("haveyoursay", "paged")
    assert "15112" in items and items["15112"]["title"].startswith("Digital skills")
    assert items["15380"]["status"] == "forthcoming"  # OPEN, but feedback starts 15 Sep
    assert items["13998"]["status"] == "closed"  # OPEN, but the period ended 31 Aug
    cohesion = items["14270"]
    assert cohesion["status"] == "open" and cohesion["kind"] == "consultation"
    # 20 Oct 23:59:59 Brussels (CEST) is 21:59:59 UTC.
    assert cohesion["deadlines"] == ["2026-10-20T21:59:59+00:00"]
    assert cohesion["link"] == (
        "https://ec.europa.eu/info/law/better-regulation/have-your-say/initiatives/14270"
    )
    assert len(items) == 4  # the row without an id is skipped, the repeated row merged


def test_tillvaxtverket_region_filter_and_failed_detail() -> None:
    items = by_key("tillvaxtverket", "calls")
    # Other regions' calls are dropped, including the 15-region "national" one.
    assert set(items) == {"11681", "11702", "11710", "4708", "3479"}
    assert items["3479"]["regions"] == ["Halland", "Västra Götaland"]
    assert items["3479"]["status"] == "closed"
    assert items["4708"]["budget_amount"] == 60_000_000.0  # status line in paragraphs
    assert items["11702"]["status"] == "forthcoming" and items["11702"]["regions"] == ["Nationell"]
    failed = items["11710"]
    assert failed["title"] == "Digitala verktyg för små företag i Halland"
    assert "HTTP 503" in failed["extra"]["detail_note"]


def test_tillvaxtverket_recheck_drops_closed_and_sees_edited_date() -> None:
    first = by_key("tillvaxtverket", "calls")
    second = by_key("tillvaxtverket", "recheck")
    assert set(second) == {"11681", "11702", "11710"}
    assert first["11681"]["deadlines"] != second["11681"]["deadlines"]
    assert second["11681"]["deadlines"][0].startswith("2026-10-22")
    assert "deferred" in second["11710"]["extra"]["detail_note"]


def test_esf_json_and_html_give_the_same_key_and_dates() -> None:
    json_items = by_key("esf", "wp-json")
    html_items = by_key("esf", "listing")
    key = "kompetensforsorjning-for-omstallning-i-vastsverige"
    for field in ("key", "link", "opening", "deadlines", "regions", "status"):
        assert json_items[key][field] == html_items[key][field], field
    assert json_items[key]["deadlines"] == ["2026-10-15T21:59:00+00:00"]  # kl. 23.59 CEST
    # Stockholm and Sydsverige are filtered out; the call without a region is kept.
    assert "unga-utanfor-arbetsmarknaden-stockholm" not in json_items
    assert "kompetens-i-skane-och-blekinge" not in html_items
    assert json_items["social-innovation-i-civilsamhallet"]["regions"] == []
    acf = json_items["digital-omstallning-i-offentlig-sektor-vastsverige"]
    assert acf["opening"] is not None and acf["budget_amount"] == 25_000_000.0


def test_esf_plan_items_are_forthcoming_calls() -> None:
    plan = by_key("esf", "plan-json")
    assert all(i["kind"] == "forthcoming_call" for i in plan.values())
    assert {tuple(i["regions"]) for i in plan.values()} == {("Västsverige",), ("Nationell",)}
    month_only = plan["plan-vastsverige-kompetensutveckling-for-anstallda-i-offentlig-sektor"]
    assert month_only["deadlines"] == []  # "stänger april 2027" is not a deadline date
    assert month_only["extra"]["deadline_text"] == "april 2027"
    table = by_key("esf", "plan-table")
    assert len(table) == 3 and all(i["programme"] == "ESF+" for i in table.values())


def test_ical_all_day_events_end_on_their_last_day() -> None:
    """RFC 5545: a DATE ``DTEND`` is exclusive, so 28–29 September is the 28th only."""
    items = {
        i["title"].split(":", 1)[0] + i["opening"][:10]: i
        for i in run_case("ical-interreg", "allday")
    }
    one_day = items["Sverige-Norge2023-09-27"]
    # 28 September 23:59:59 in Stockholm (CEST), not the 29th.
    assert one_day["deadlines"] == ["2023-09-28T21:59:59+00:00"]
    assert one_day["opening"] == "2023-09-27T22:00:00+00:00"  # 28 September 00:00
    several = items["ÖKS2026-08-31"]  # 1 September – DTEND 16 October: open until the 15th
    assert several["deadlines"] == ["2026-10-15T21:59:59+00:00"]
    assert several["status"] == "open"
    # No DTEND and no DURATION: a one-day event (RFC 5545 3.6.1).
    assert items["North Sea2026-11-02"]["deadlines"] == ["2026-11-03T22:59:59+00:00"]
    # DURATION:P14D from 20 November: the last day is 3 December.
    assert items["Baltic Sea2026-11-19"]["deadlines"] == ["2026-12-03T22:59:59+00:00"]
    # DTEND on the start day (a zero-length event some exporters write): that day.
    assert items["Sverige-Norge2026-12-09"]["deadlines"] == ["2026-12-10T22:59:59+00:00"]


def test_ical_timed_events_keep_their_exact_deadline() -> None:
    items = by_key("ical-interreg", "calendar")
    assert "21702-1790316000-1795474800@interreg.no" not in items  # Aurora: excluded
    europe = items["18098-1710921600-1717675200@interreg.no"]
    assert europe["deadlines"] == ["2024-06-06T10:00:00+00:00"]  # 12:00 Oslo (CEST)
    assert europe["programme"] == "Interreg Europe"


# ── fetches against MockTransport ────────────────────────────────────────────────────────

Handler = Callable[[httpx.Request], httpx.Response]


async def _resolver(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]  # a public address: no allow_private_networks needed


def client(handler: Handler) -> HttpClient:
    settings = FetchSection.model_validate({"respect_robots_txt": False, "retries": 0})
    return HttpClient(
        settings,
        "EU-bevakning-test/1.0",
        transport=httpx.MockTransport(handler),
        resolver=_resolver,
    )


def reply(
    status: int = 200,
    content: bytes | str = b"",
    *,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """A response whose body is a stream, as from the network (the client streams bodies)."""
    if json_body is not None:
        content = json.dumps(json_body)
        headers = {"content-type": "application/json", **(headers or {})}
    data = content.encode() if isinstance(content, str) else content
    return httpx.Response(
        status,
        headers={"content-length": str(len(data)), **(headers or {})},
        stream=httpx.ByteStream(data),
    )


def host_of(request: httpx.Request) -> str:
    return request.headers["host"]


def form_parts(request: httpx.Request) -> dict[str, tuple[str | None, str, bytes]]:
    """Multipart body → name: (filename, content type, bytes)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    out: dict[str, tuple[str | None, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out[str(name)] = (part.get_filename(), part.get_content_type(), payload)
    return out


def sedia_result(
    identifier: str, status: str = "31094502", datasource: str = "SEDIA"
) -> dict[str, Any]:
    return {
        "reference": f"{identifier}-{datasource}",
        "metadata": {
            "identifier": [identifier],
            "title": [f"Topic {identifier}"],
            "type": ["1"],
            "status": [status],
            "DATASOURCE": [datasource],
            "frameworkProgramme": ["43252405"],
            "deadlineDate": ["2026-12-01T00:00:00.000+0000"],
        },
    }


async def test_ft_portal_posts_json_file_parts_and_pages() -> None:
    seen: list[httpx.Request] = []
    pages = {
        1: [sedia_result("LIFE-A"), sedia_result("LIFE-B")],
        2: [sedia_result("LIFE-C"), sedia_result("LIFE-A", "31094501", "SEDIA_PRD_CENTRICITY")],
        3: [sedia_result("LIFE-D")],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        number = int(parse_qs(urlsplit(str(request.url)).query)["pageNumber"][0])
        body = {"totalResults": 5, "pageNumber": number, "pageSize": 2, "results": pages[number]}
        return reply(200, json_body=body)

    source = source_for("ft-portal", programmes=["LIFE"], page_size=2)
    adapter = FtPortalAdapter(source)
    async with client(handler) as http:
        fetched = await adapter.fetch(http, FetchContext())
    assert len(seen) == 3 and len(fetched.pages) == 3
    first = seen[0]
    assert first.method == "POST" and host_of(first) == "api.tech.ec.europa.eu"
    query = parse_qs(urlsplit(str(first.url)).query)
    assert query == {"apiKey": ["SEDIA"], "text": ["***"], "pageSize": ["2"], "pageNumber": ["1"]}
    assert first.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = form_parts(first)
    assert set(parts) == {"query", "languages"}
    for filename, ctype, _ in parts.values():
        assert filename == "blob" and ctype == "application/json"
    must = json.loads(parts["query"][2])["bool"]["must"]
    assert {"terms": {"frameworkProgramme": ["43252405"]}} in must
    assert {"terms": {"type": ["1", "8"]}} in must
    assert {"terms": {"status": ["31094501", "31094502"]}} in must
    assert json.loads(parts["languages"][2]) == ["en"]
    items = adapter.parse_fetched(fetched)
    assert sorted(i.key for i in items) == ["LIFE-A", "LIFE-B", "LIFE-C", "LIFE-D"]
    assert next(i for i in items if i.key == "LIFE-A").status == "open"  # SEDIA beats legacy


async def test_ft_portal_stops_on_a_short_page() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return reply(200, json_body={"totalResults": 900, "results": [sedia_result("X")]})

    adapter = FtPortalAdapter(source_for("ft-portal", page_size=10))
    async with client(handler) as http:
        await adapter.fetch(http, FetchContext())
    assert calls == 1


async def test_ft_portal_server_error_is_a_fetch_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(500, json_body={"type": "throwable"})

    adapter = FtPortalAdapter(source_for("ft-portal"))
    async with client(handler) as http:
        with pytest.raises(FetchError) as e:
            await adapter.fetch(http, FetchContext())
    assert e.value.code == "http_500"


async def test_identifier_keeps_its_case_and_matches_in_any_case(
    make_app: Any, loopback: Any, clock: Any
) -> None:
    """``…-two-stage`` stays as the portal writes it (record, key, link), and the same call
    from another source in upper case, and a news title naming it, are linked to it."""
    from tests.builders import feed, rss_item, src
    from tests.conftest import fetch_settings

    mixed = "HORIZON-MISS-2027-05-SOIL-01-two-stage"

    def answer(identifier: str) -> str:
        return json.dumps({"totalResults": 1, "results": [sedia_result(identifier)]})

    loopback.add("/a", answer(mixed), content_type="application/json")
    loopback.add("/b", answer(mixed.upper()), content_type="application/json")
    news = feed(rss_item("n1", f"Webbinarium om {mixed.upper()}", "https://nyheter.example/1"))
    loopback.add("/news.xml", news, content_type="application/rss+xml")
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "sources": [
                src("ft_a", loopback.url("/a"), adapter="ft-portal"),
                src("ft_b", loopback.url("/b"), adapter="ft-portal"),
                src("nyheter", loopback.url("/news.xml")),
            ],
        }
    )
    for source_id in ("ft_a", "ft_b", "nyheter"):
        await app.poll([source_id])
        clock.advance(minutes=10)
    [call] = app.storage.list_items()
    assert call.identifier == mixed
    assert call.link.endswith(f"/topic-details/{mixed}")
    assert {(s.source_id, s.key) for s in call.sources} == {
        ("ft_a", mixed),
        ("ft_b", mixed.upper()),
        ("nyheter", "n1"),
    }


def hys_page(ids: list[int], number: int, total_pages: int) -> dict[str, Any]:
    rows = [
        {
            "id": float(i),
            "shortTitle": f"Initiative {i}",
            "currentStatuses": [
                {
                    "receivingFeedbackStatus": "OPEN",
                    "feedbackStartDate": "2026/09/01 00:00:00",
                    "feedbackEndDate": "2026/10/01 23:59:59",
                    "isCurrent": True,
                }
            ],
        }
        for i in ids
    ]
    return {
        "initiativeResultDtoPage": {
            "content": rows,
            "totalPages": total_pages,
            "number": number,
            "last": number + 1 >= total_pages,
        }
    }


async def test_haveyoursay_sends_language_and_page_and_pages_through() -> None:
    seen: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        seen.append(q)
        if "language" not in q or "page" not in q:
            return reply(500)  # what the real API does
        number = int(q["page"][0])
        ids = [[18805, 18806], [18807]][number]
        return reply(200, json_body=hys_page(ids, number, 2))

    adapter = HaveYourSayAdapter(source_for("haveyoursay", page_size=2))
    async with client(handler) as http:
        fetched = await adapter.fetch(http, FetchContext())
    assert [q["page"] for q in seen] == [["0"], ["1"]]
    assert all(q["language"] == ["EN"] and q["feedbackStatus"] == ["OPEN"] for q in seen)
    items = adapter.parse_fetched(fetched)
    assert [i.key for i in items] == ["18805", "18806", "18807"]
    assert items[0].link.endswith("/initiatives/18805")


async def test_haveyoursay_one_listing_per_topic_merged() -> None:
    topics: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        topics.append(q["topic"][0])
        ids = {"REGIO": [1, 2], "EMPL": [2, 3]}[q["topic"][0]]
        return reply(200, json_body=hys_page(ids, 0, 1))

    adapter = HaveYourSayAdapter(source_for("haveyoursay", topics=["regio", "EMPL"]))
    async with client(handler) as http:
        fetched = await adapter.fetch(http, FetchContext())
    assert topics == ["REGIO", "EMPL"]
    assert sorted(i.key for i in adapter.parse_fetched(fetched)) == ["1", "2", "3"]


def esf_file(name: str) -> bytes:
    return (DATA / "esf" / name).read_bytes()


async def test_esf_falls_back_to_html_when_wp_json_404s() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        paths.append(path)
        if path.startswith("/wp-json/"):
            return reply(404, json_body={"code": "rest_no_route", "data": {"status": 404}})
        if path == "/utlysningar/":
            return reply(
                200, esf_file("listing.html"), headers={"content-type": "text/html; charset=UTF-8"}
            )
        if path == "/utlysningar/utlysningsplan/":
            return reply(200, esf_file("plan-table.html"), headers={"content-type": "text/html"})
        return reply(404)

    adapter = EsfAdapter(source_for("esf"))
    async with client(handler) as http:
        fetched = await adapter.fetch(http, FetchContext())
    assert paths == [
        "/wp-json/wp/v2/utlysning",
        "/utlysningar/",
        "/wp-json/wp/v2/pages",
        "/utlysningar/utlysningsplan/",
    ]
    keys = {i.key for i in adapter.parse_fetched(fetched)}
    assert "kompetensforsorjning-for-omstallning-i-vastsverige" in keys
    assert "plan-nationell-digital-kompetens-i-arbetslivet" in keys


async def test_esf_reads_all_wp_json_pages() -> None:
    seen: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        if request.url.path == "/wp-json/wp/v2/pages":
            assert q["slug"] == ["utlysningsplan"]
            return reply(200, esf_file("plan-json.json"))
        seen.append(q)
        page = q["page"][0]
        headers = {"X-WP-Total": "5", "X-WP-TotalPages": "2"}
        return reply(200, esf_file(f"wp-json.page{page}.json"), headers=headers)

    adapter = EsfAdapter(source_for("esf", wp_query={"orderby": "modified"}))
    async with client(handler) as http:
        fetched = await adapter.fetch(http, FetchContext())
    assert [q["page"] for q in seen] == [["1"], ["2"]]
    assert seen[0]["per_page"] == ["100"] and seen[0]["orderby"] == ["modified"]
    assert seen[0]["_embed"] == ["wp:term"]
    items = adapter.parse_fetched(fetched)
    kinds = {i.kind for i in items}
    assert kinds == {"call", "forthcoming_call"}
    assert len(items) == 4 + 3


async def test_esf_json_that_is_not_wordpress_falls_back_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/wp-json/"):
            return reply(200, "<html><body>Sidan finns inte</body></html>")
        return reply(200, esf_file("listing.html"))

    adapter = EsfAdapter(source_for("esf", plan=False))
    async with client(handler) as http:
        fetched = await adapter.fetch(http, FetchContext())
    assert [p.url for p in fetched.pages] == ["https://www.esf.se/utlysningar/"]


async def test_esf_both_routes_failing_is_one_fetch_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(404 if request.url.path.startswith("/wp-json/") else 503)

    adapter = EsfAdapter(source_for("esf", plan=False))
    async with client(handler) as http:
        with pytest.raises(FetchError) as e:
            await adapter.fetch(http, FetchContext())
    assert e.value.code == "http_503" and "JSON route failed" in str(e.value)


TVV_DIR = DATA / "tillvaxtverket"


async def test_tillvaxtverket_fetches_details_only_for_new_and_open_calls() -> None:
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        requested.append(path)
        if path.endswith(".portlet"):
            assert request.url.query == b"state=rss&sv.contenttype=text/xml;charset=UTF-8"
            return reply(200, (TVV_DIR / "calls.rss.xml").read_bytes())
        key = path.rsplit(".", 2)[-2]
        if key == "11710":
            return reply(503)
        return reply(200, (TVV_DIR / f"calls.detail.{key}.html").read_bytes())

    known = {
        "3479": Status.CLOSED,
        "4708": Status.CLOSED,
        "5700": Status.CLOSED,
        "11681": Status.OPEN,
        "11702": None,  # stored without a status (its page failed once): read again
    }
    adapter = TillvaxtverketAdapter(source_for("tillvaxtverket"))
    async with client(handler) as http:
        fetched = await adapter.fetch(http, FetchContext(known=known))
    details = sorted(p.rsplit(".", 2)[-2] for p in requested if p.endswith(".html"))
    assert details == ["10765", "11681", "11702", "11710", "7085"]
    assert requested[0].endswith(".portlet")
    items = {i.key: i for i in adapter.parse_fetched(fetched)}
    assert set(items) == {
        "11681",
        "11702",
        "11710",
    }  # closed ones left alone; others' regions dropped
    assert items["11710"].status is None and "http_503" in items["11710"].extra["detail_note"]
    assert items["11681"].deadlines == ("15 oktober 2026",)


async def test_tillvaxtverket_max_details_defers_the_rest() -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        if request.url.path.endswith(".portlet"):
            return reply(200, (TVV_DIR / "calls.rss.xml").read_bytes())
        count += 1
        key = request.url.path.rsplit(".", 2)[-2]
        return reply(200, (TVV_DIR / f"calls.detail.{key}.html").read_bytes())

    adapter = TillvaxtverketAdapter(source_for("tillvaxtverket", max_details=2, regions=[]))
    async with client(handler) as http:
        fetched = await adapter.fetch(http, FetchContext())
    assert count == 2
    notes = [i.extra.get("detail_note", "") for i in adapter.parse_fetched(fetched)]
    assert sum("deferred" in n for n in notes) == 6


# ── layout changes: a clear ParseError, never a silent empty list ────────────────────────


def _parse(adapter: Adapter, body: bytes | str, url: str | None = None) -> list[RawItem]:
    content = body.encode() if isinstance(body, str) else body
    return adapter.parse(Page(url=url or adapter.source.url, content=content))


LAYOUT_CASES: list[tuple[str, str, bytes | str, str, dict[str, Any]]] = [
    ("ft-portal", "no-results-key", '{"totalResults": 3, "items": []}', "unexpected_structure", {}),
    ("ft-portal", "no-total", '{"results": []}', "unexpected_structure", {}),
    ("ft-portal", "html-error-page", "<html>Service unavailable</html>", "invalid_json", {}),
    ("ft-portal", "empty", "", "empty_body", {}),
    (
        "ft-portal",
        "no-metadata",
        '{"totalResults": 1, "results": [{"reference": "x"}]}',
        "unexpected_structure",
        {},
    ),
    ("haveyoursay", "no-envelope", '{"content": []}', "unexpected_structure", {}),
    ("haveyoursay", "list", "[]", "unexpected_structure", {}),
    (
        "haveyoursay",
        "rows-without-ids",
        '{"initiativeResultDtoPage": {"content": [{"title": "x"}]}}',
        "unexpected_structure",
        {},
    ),
    ("haveyoursay", "truncated", '{"initiativeResultDtoPage": {"content": [', "invalid_json", {}),
    (
        "esf",
        "wp-error-object",
        '{"code": "rest_no_route", "message": "x"}',
        "unexpected_structure",
        {},
    ),
    ("esf", "not-wp-objects", '[{"foo": 1}]', "unexpected_structure", {}),
    (
        "esf",
        "listing-without-calls",
        "<html><body><main><h1>Utlysningar</h1><p>Välkommen</p></main></body></html>",
        "unexpected_structure",
        {},
    ),
    (
        "tillvaxtverket",
        "html-not-rss",
        "<html><body><p>Sidan kunde inte visas</p></body></html>",
        "invalid_feed",
        {},
    ),
    (
        "tillvaxtverket",
        "hostile-xml",
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><rss version="2.0"><channel><item><title>&a;</title></item></channel></rss>',
        "hostile_xml",
        {},
    ),
]


@pytest.mark.parametrize(
    ("kind", "case", "body", "code", "options"),
    LAYOUT_CASES,
    ids=[f"{c[0]}-{c[1]}" for c in LAYOUT_CASES],
)
def test_layout_change_is_a_parse_error(
    kind: str, case: str, body: str, code: str, options: dict[str, Any]
) -> None:
    adapter = registry.get(kind)(source_for(kind, **options))
    with pytest.raises(ParseError) as e:
        _parse(adapter, body)
    assert e.value.code == code
    assert str(e.value)  # a message the admin can read


def test_esf_plan_without_structure_is_a_parse_error() -> None:
    adapter = EsfAdapter(source_for("esf"))
    html = "<html><body><main><h1>Utlysningsplan</h1><p>Planen publiceras snart.</p></main></body></html>"
    with pytest.raises(ParseError, match="call plan") as e:
        _parse(adapter, html, "https://www.esf.se/utlysningar/utlysningsplan/")
    assert e.value.code == "unexpected_structure"


def test_esf_empty_listing_that_says_so_is_not_an_error() -> None:
    adapter = EsfAdapter(source_for("esf"))
    html = "<html><body><main><h1>Utlysningar</h1><p>Just nu finns inga öppna utlysningar.</p></main></body></html>"
    assert _parse(adapter, html) == []


def test_tillvaxtverket_detail_pages_without_status_lines_are_a_layout_change() -> None:
    source, fetched = load_case("tillvaxtverket", "calls")
    blank = b"<html><body><main><h1>Utlysning</h1><p>Ny sidmall utan statusrad.</p></main></body></html>"
    changed = Fetched(
        fetched.status,
        fetched.pages,
        details={
            k: Page(url=p.url, content=blank) if p.content else p
            for k, p in fetched.details.items()
        },
    )
    adapter = TillvaxtverketAdapter(source)
    with pytest.raises(ParseError, match="status line") as e:
        adapter.parse_fetched(changed)
    assert e.value.code == "unexpected_structure"


def test_tillvaxtverket_one_unreadable_detail_keeps_the_item_with_a_note() -> None:
    source, fetched = load_case("tillvaxtverket", "calls")
    details = dict(fetched.details)
    details["11681"] = Page(
        url=details["11681"].url, content=b"<html><body><h1>x</h1></body></html>"
    )
    adapter = TillvaxtverketAdapter(source)
    items = {
        i.key: i
        for i in adapter.parse_fetched(Fetched(fetched.status, fetched.pages, details=details))
    }
    assert "layout changed" in items["11681"].extra["detail_note"]
    assert items["3479"].status == "closed"


# ── options ──────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_option_is_rejected(kind: str) -> None:
    with pytest.raises(ValueError, match="no_such_option"):
        registry.get(kind)(source_for(kind, no_such_option=1))


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("ft-portal", {"programmes": ["NOPE"]}, "unknown programme"),
        ("ft-portal", {"statuses": ["ajar"]}, "unknown status"),
        ("ft-portal", {"page_size": 500}, "less than or equal to 100"),
        ("esf", {"regions": ["Atlantis"]}, "unknown ESF"),
        ("tillvaxtverket", {"regions": ["Atlantis"]}, "unknown region"),
        ("haveyoursay", {"feedback_status": "MAYBE"}, "OPEN, CLOSED or ALL"),
    ],
)
def test_bad_option_values_are_rejected(kind: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        registry.get(kind)(source_for(kind, **options))


def test_options_reach_the_config_check() -> None:
    data = {
        "sources": [
            {
                "id": "ft",
                "name": "F&T",
                "kind": "ft-portal",
                "url": DEFAULT_URLS["ft-portal"],
                "options": {"types": ["lottery"]},
            }
        ]
    }
    with pytest.raises(ConfigError, match=r"sources\[0\]\.options\.types"):
        registry.validate_config(data)


def test_ft_portal_programme_names_and_codes() -> None:
    adapter = FtPortalAdapter(source_for("ft-portal", programmes=["horizon", "43252405", "LIFE"]))
    must = adapter.query()["bool"]["must"]
    assert must[2] == {"terms": {"frameworkProgramme": ["43108390", "43252405"]}}


def test_tillvaxtverket_region_names() -> None:
    assert canonical_region("Västra Götalandsregionen") == "Västra Götaland"
    assert canonical_region("Region Halland") == "Halland"
    assert canonical_region("Hallands län") == "Halland"
    assert canonical_region("Region Jönköpings län") == "Jönköping"
    assert canonical_region("Hela Sverige") == "Nationell"
    assert canonical_region("Vem kan söka?") is None
    adapter = TillvaxtverketAdapter(source_for("tillvaxtverket", regions=["Västsverige"]))
    assert adapter.options.regions == ("Västra Götaland", "Halland")


def test_adapters_have_help_and_are_registered() -> None:
    for kind in KINDS:
        cls = registry.get(kind)
        assert cls.kind == kind
        assert len(cls.help().splitlines()[0]) > 20


def test_each_built_in_kind_is_imported_from_its_own_module() -> None:
    """``get(kind)`` imports only the module the registry's map names for it: the map must
    name the module that registers each kind, and every registered kind must be in it."""
    registered = {kind: cls.__module__ for kind, cls in registry.all_adapters().items()}
    assert registered == registry._BUILTIN_KINDS


def test_a_process_polling_feeds_loads_no_html_or_calendar_library() -> None:
    """A fresh process that validates a config of feeds and gets their adapter imports
    neither BeautifulSoup nor icalendar (each process start paid for both), nor the feed
    parsers until it parses: a poll's main process only fetches, its workers parse."""
    import subprocess
    import sys

    code = (
        "import sys; from sources import registry; "
        "registry.validate_config({'sources': [{'id': 'f', 'name': 'F', 'kind': 'rss', "
        "'url': 'https://example.org/f.xml'}]}); registry.get('rss'); "
        "print(sorted(m for m in ('bs4', 'icalendar', 'sources.esf', 'lxml', 'feedparser') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ── docs and the interreg.no calendar fixture ────────────────────────────────────────────

# (docs/sources.md is checked for every adapter kind in tests/test_docs.py)


def test_interreg_calendar_fixture_has_the_programmes() -> None:
    import icalendar

    raw = (DATA / "ical-interreg" / "calendar.ics").read_bytes()
    events = icalendar.Calendar.from_ical(raw).walk("VEVENT")
    prefixes = [str(e["SUMMARY"]).split(":", 1)[0] for e in events]
    assert prefixes == ["Europe", "ÖKS", "Sverige-Norge", "North Sea", "Baltic Sea", "Aurora"]
    for e in events:
        assert e.decoded("DTSTART") < e.decoded("DTEND")
        assert str(e["UID"]).endswith("@interreg.no")
