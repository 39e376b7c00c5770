"""The EU Funding & Tenders Portal search API (SEDIA): centrally managed EU calls.

The API wants a POST whose ``query`` and ``languages`` are multipart *file* parts of type
``application/json``: sent as plain form fields they give HTTP 500, put in the URL they are
silently ignored. Results come in pages of at most 100 (``pageNumber`` from 1) until
``totalResults``. Every topic can appear several times (a current ``SEDIA`` record, a stale
legacy ``SEDIA_PRD_CENTRICITY`` copy, stubs, FAQ pages); one record per identifier is kept.
Cascade-funding calls (type 8, open calls run by EU-funded projects) share their parent
topic's identifier, so each is keyed by its own ``callccm2Id`` instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from sources import _html
from sources.base import Adapter, FetchContext, Options
from sources.registry import register
from watcher.exceptions import ParseError
from watcher.types import CacheState, Fetched, FetchStatus, Page, RawItem

if TYPE_CHECKING:
    from watcher.http import HttpClient

TOPIC_URL = (
    "https://ec.europa.eu/info/funding-tenders/opportunities/portal/screen/opportunities/"
    "topic-details/{identifier}"
)
CASCADE_URL = (
    "https://ec.europa.eu/info/funding-tenders/opportunities/portal/screen/opportunities/"
    "competitive-calls-cs/{call_id}"
)
TENDER_URL = (
    "https://ec.europa.eu/info/funding-tenders/opportunities/portal/screen/opportunities/"
    "tender-details/{procedure}"
)

# metadata.frameworkProgramme code -> (abbreviation, readable name); the code table agreed by
# several public clients (data/sources/sedia_programme_ids.tsv).
PROGRAMMES: dict[str, tuple[str, str]] = {
    "43108390": ("HORIZON", "Horizon Europe"),
    "43152860": ("DIGITAL", "Digital Europe Programme"),
    "43252405": ("LIFE", "Programme for the Environment and Climate Action (LIFE)"),
    "43353764": ("ERASMUS", "Erasmus+"),
    "43254019": ("ESF", "European Social Fund+ (direct-management strands)"),
    "43251589": ("CERV", "Citizens, Equality, Rights and Values (CERV)"),
    "43251814": ("CREA", "Creative Europe"),
    "43251567": ("CEF", "Connecting Europe Facility"),
    "43332642": ("EU4H", "EU4Health"),
    "43254037": ("ESC", "European Solidarity Corps"),
    "44416173": ("I3", "Interregional Innovation Investments (I3)"),
    "44773066": ("JTM", "Just Transition Mechanism"),
    "43089234": ("INNOVFUND", "Innovation Fund"),
    "43392145": ("EMFAF", "European Maritime, Fisheries and Aquaculture Fund"),
    "43252476": ("SMP", "Single Market Programme"),
    "43637601": ("PPPA", "Pilot Projects & Preparatory Actions"),
    "43252386": ("JUST", "Justice Programme"),
    "43252368": ("ISF", "Internal Security Fund"),
    "43251447": ("AMIF", "Asylum, Migration and Integration Fund"),
    "43298203": ("UCPM", "Union Civil Protection Mechanism"),
    "43298916": ("EURATOM", "Euratom Research and Training"),
    "44181033": ("EDF", "European Defence Fund"),
    "43252449": ("RFCS", "Research Fund for Coal & Steel"),
    "45532249": ("EUBA", "EU Bodies and Agencies"),
    "45876777": ("NDICI", "Global Europe (NDICI)"),
    "111111": ("RELEX", "EU External Action (PROSPECT)"),
}
_PROGRAMME_BY_ABBR = {abbr.lower(): code for code, (abbr, _) in PROGRAMMES.items()}

# The programmes municipalities apply to (the recommended GR query in the sources README).
DEFAULT_PROGRAMMES: tuple[str, ...] = (
    "43108390",  # Horizon Europe
    "43252405",  # LIFE
    "43353764",  # Erasmus+
    "43251589",  # CERV
    "43152860",  # Digital Europe
    "43332642",  # EU4Health
    "44416173",  # I3
    "43251567",  # CEF
    "43254037",  # European Solidarity Corps
    "43251447",  # AMIF
    "43254019",  # ESF+ direct management
)

TYPES: dict[str, str] = {"tender": "0", "grant": "1", "proposals": "2", "cascade": "8"}
STATUSES: dict[str, str] = {"forthcoming": "31094501", "open": "31094502", "closed": "31094503"}
_STATUS_WORD = {code: word for word, code in STATUSES.items()}

_SEDIA_DATE_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d")
BRUSSELS = ZoneInfo("Europe/Brussels")
# The legacy copy of the data, and where its records point instead of a page.
LEGACY_DATASOURCE = "SEDIA_PRD_CENTRICITY"
_LEGACY_URL_PART = "/opportunities/data/topicDetails/"


class FtPortalOptions(Options):
    """Options of the ``ft-portal`` adapter."""

    programmes: tuple[str, ...] = Field(
        DEFAULT_PROGRAMMES,
        description="frameworkProgramme codes or abbreviations (HORIZON, LIFE, ERASMUS, …)",
    )
    types: tuple[str, ...] = Field(
        ("grant", "cascade"),
        validate_default=True,
        description="tender, grant, proposals, cascade (or codes 0/1/2/8)",
    )
    statuses: tuple[str, ...] = Field(
        ("forthcoming", "open"),
        validate_default=True,
        description="forthcoming, open, closed (or SEDIA codes)",
    )
    text: str = Field("***", min_length=1, description="free-text search; *** means none")
    languages: tuple[str, ...] = ("en",)
    page_size: int = Field(100, ge=1, le=100)
    max_pages: int = Field(20, ge=1, le=200)

    @field_validator("programmes")
    @classmethod
    def _programmes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for p in v:
            key = p.strip()
            if key.isdigit():
                out.append(key)
            elif key.lower() in _PROGRAMME_BY_ABBR:
                out.append(_PROGRAMME_BY_ABBR[key.lower()])
            else:
                known = ", ".join(sorted(a for a, _ in PROGRAMMES.values()))
                raise ValueError(f"unknown programme {p!r}; use a numeric code or one of {known}")
        return tuple(dict.fromkeys(out))

    @field_validator("types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _codes(v, TYPES, "type")

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _codes(v, STATUSES, "status")


def _codes(values: tuple[str, ...], table: Mapping[str, str], what: str) -> tuple[str, ...]:
    out = []
    for v in values:
        key = v.strip().lower()
        if key in table:
            out.append(table[key])
        elif key in table.values():
            out.append(key)
        else:
            raise ValueError(f"unknown {what} {v!r}; use one of {', '.join(table)}")
    if not out:
        raise ValueError(f"at least one {what} is needed")
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class _Candidate:
    """One usable result record, with how much to trust it among duplicates."""

    key: str
    rank: tuple[int, int, int, str]
    item: RawItem


@register
class FtPortalAdapter(Adapter):
    """EU Funding & Tenders Portal (SEDIA search API).

    Reads the calls of the Funding & Tenders Portal through its public search API: one
    POST per page of 100 results with the query as a JSON file part, paged until
    ``totalResults``. By default: grants and cascade-funding calls that are forthcoming or
    open, in the programmes municipalities use (Horizon Europe, LIFE, Erasmus+, CERV,
    Digital Europe, EU4Health, I3, CEF, European Solidarity Corps, AMIF, ESF+ direct
    management). Each topic becomes one item keyed by its identifier
    (HORIZON-CL3-2026-02-CS-ECCC-01), linked to its topic page, with status, opening date,
    every deadline (two-stage calls have two), programme and budget. Each cascade-funding
    call is its own item, keyed and linked by its own call id, titled by its call title.
    Legacy duplicates and FAQ records are dropped; results the API sends without metadata
    are counted in a warning on the source's health.
    """

    kind: ClassVar[str] = "ft-portal"
    Options: ClassVar[type[Options]] = FtPortalOptions
    expected_fields: ClassVar[tuple[str, ...]] = ("title", "link", "deadlines", "status")

    options: FtPortalOptions

    def query(self) -> dict[str, Any]:
        """The Elasticsearch-style query SEDIA accepts (only bool/must/terms)."""
        must: list[dict[str, Any]] = [
            {"terms": {"type": list(self.options.types)}},
            {"terms": {"status": list(self.options.statuses)}},
        ]
        if self.options.programmes:
            must.append({"terms": {"frameworkProgramme": list(self.options.programmes)}})
        return {"bool": {"must": must}}

    def page_url(self, page_number: int) -> str:
        """The search URL for one page; the query itself never goes in the URL."""
        parts = urlsplit(self.source.url)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        params.setdefault("apiKey", "SEDIA")
        params["text"] = self.options.text
        params["pageSize"] = str(self.options.page_size)
        params["pageNumber"] = str(page_number)
        # "***" is the API's "no free text"; keep it literal as the portal sends it.
        query = urlencode(params, quote_via=quote, safe="*")
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    async def fetch(self, http: HttpClient, ctx: FetchContext) -> Fetched:
        # File parts (bytes, so a retry can resend them): plain form fields give HTTP 500.
        files = {
            "query": ("blob", json.dumps(self.query()).encode(), "application/json"),
            "languages": (
                "blob",
                json.dumps(list(self.options.languages)).encode(),
                "application/json",
            ),
        }
        pages: list[Page] = []
        seen = unreadable = 0
        for number in range(1, self.options.max_pages + 1):
            resp = await http.post(self.page_url(number), files=files)
            page = resp.page
            pages.append(page)
            envelope = _envelope(page)
            total = _int(envelope.get("totalResults"))
            got = len(envelope["results"])
            seen += got
            unreadable += sum(1 for r in envelope["results"] if not _readable(r))
            if got == 0 or got < self.options.page_size:
                break
            if total is not None and number * self.options.page_size >= total:
                break
        # A result without metadata cannot be read; it is reported, never silently skipped
        # (the poll adds ``context["warnings"]`` to the source's health). A page with nothing
        # readable at all is a ParseError in ``parse``.
        warnings = (
            (f"{unreadable} of {seen} SEDIA results had no metadata object and could not be read",)
            if unreadable
            else ()
        )
        # POST responses are not cacheable: every poll reads the whole result set.
        return Fetched(FetchStatus.OK, tuple(pages), CacheState(), context={"warnings": warnings})

    def parse(self, page: Page) -> list[RawItem]:
        return _choose(self._candidates(page))

    def parse_fetched(self, fetched: Fetched) -> list[RawItem]:
        # Result order can shift between pages, so duplicates are resolved over all pages.
        candidates: list[_Candidate] = []
        for page in fetched.pages:
            candidates.extend(self._candidates(page))
        return _choose(candidates)

    def _candidates(self, page: Page) -> list[_Candidate]:
        envelope = _envelope(page)
        out: list[_Candidate] = []
        unreadable = 0
        for result in envelope["results"]:
            if not _readable(result):
                unreadable += 1
                continue
            cand = _candidate(result)
            if cand is not None:
                out.append(cand)
        if envelope["results"] and unreadable == len(envelope["results"]):
            raise ParseError(
                f"SEDIA: none of the {unreadable} results on {page.url} has a metadata object",
                code="unexpected_structure",
            )
        return out


def _envelope(page: Page) -> dict[str, Any]:
    data = _html.load_json(page, "SEDIA search")
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        keys = ", ".join(sorted(data)[:12]) if isinstance(data, dict) else type(data).__name__
        raise ParseError(
            f"SEDIA search: no 'results' list in the response from {page.url} (found: {keys})",
            code="unexpected_structure",
        )
    if "totalResults" not in data:
        raise ParseError(
            f"SEDIA search: no 'totalResults' in the response from {page.url}",
            code="unexpected_structure",
        )
    return data


def _readable(result: Any) -> bool:
    return isinstance(result, dict) and isinstance(result.get("metadata"), dict)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _choose(candidates: Iterable[_Candidate]) -> list[RawItem]:
    best: dict[str, _Candidate] = {}
    for c in candidates:
        held = best.get(c.key)
        if held is None or c.rank > held.rank:
            best[c.key] = c
    return [c.item for c in best.values()]


def _meta(md: Mapping[str, Any], name: str) -> str | None:
    value = _html.first(md.get(name))
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _list(md: Mapping[str, Any], name: str) -> list[str]:
    value = md.get(name)
    if isinstance(value, list):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [str(value).strip()] if value not in (None, "") else []


def _candidate(result: Mapping[str, Any]) -> _Candidate | None:
    md: Mapping[str, Any] = result["metadata"]
    datasource = (_meta(md, "DATASOURCE") or _meta(md, "datasource") or "").upper()
    if datasource == "SEDIA_FAQ":
        return None
    legacy = _is_legacy(result, md, datasource)
    topic = _meta(md, "identifier")
    reference = str(result.get("reference") or _meta(md, "REFERENCE") or "")
    type_code = _meta(md, "type") or ""
    call_id = _meta(md, "callccm2Id")
    cascade = type_code == TYPES["cascade"]
    if cascade:
        # A cascade-funding call (an open call run by a funded project) carries the
        # identifier, title and URL of the EU topic that pays for the project, shared by
        # every call under it (one public report counts 29 under one identifier). Its own
        # id is ``callccm2Id`` (the number in its portal page), its own name ``callTitle``.
        # That id is also its identifier, so cross-source duplicate matching never takes
        # one cascade call for a sibling or for the topic; the topic is kept in ``extra``.
        identifier = call_id or reference or None
        title = _meta(md, "callTitle") or _meta(md, "title") or ""
        description = _meta(md, "description") or _meta(md, "descriptionByte") or ""
        summary_html = description
    else:
        identifier = topic
        title = _meta(md, "title") or ""
        description = _meta(md, "descriptionByte") or ""
        summary_html = (
            description or _meta(md, "destinationDescription") or _meta(md, "callTitle") or ""
        )
    title = title or str(result.get("summary") or "").strip()
    if not title or not (identifier or reference):
        return None
    status_code = _meta(md, "status")
    programme_code = _meta(md, "frameworkProgramme")
    programme = PROGRAMMES[programme_code][1] if programme_code in PROGRAMMES else programme_code
    actions = _json_list(_meta(md, "actions"))
    action0 = actions[0] if actions and isinstance(actions[0], dict) else {}

    opening = _sedia_date(_meta(md, "startDate"), legacy=legacy) or _sedia_date(
        action0.get("plannedOpeningDate"), legacy=legacy
    )
    deadlines = tuple(
        d for d in (_sedia_date(v, legacy=legacy) for v in _list(md, "deadlineDate")) if d
    )
    if not deadlines:
        deadlines = tuple(
            d
            for d in (_sedia_date(v, legacy=legacy) for v in action0.get("deadlineDates") or [])
            if d
        )
    status = _STATUS_WORD.get(status_code or "")
    if status is None and isinstance(action0.get("status"), dict):
        status = _STATUS_WORD.get(str(action0["status"].get("id")))

    # A cascade call's budget is its own ``budget``; the budgetOverview is the topic's.
    budget, amount, currency = _budget(md, None if cascade else identifier)
    key = identifier or reference
    extra: dict[str, Any] = {
        "reference": reference,
        "datasource": datasource or None,
        "type": type_code or None,
        "status_code": status_code,
        "programme_code": programme_code,
        "topic_identifier": topic if cascade else None,
        "project": _meta(md, "projectAcronym") if cascade else None,
        "project_name": _meta(md, "projectName") if cascade else None,
        "call_identifier": _meta(md, "callIdentifier"),
        "call_title": _meta(md, "callTitle"),
        "deadline_model": _meta(md, "deadlineModel"),
        "types_of_action": _list(md, "typesOfAction"),
        "cross_cutting_priorities": _list(md, "crossCuttingPriorities"),
    }
    item = RawItem(
        key=key,
        title=title,
        link=_link(result, md, type_code, topic, call_id if cascade else None),
        summary=summary_html,
        summary_is_html=True,
        language=str(result.get("language") or _meta(md, "language") or "en"),
        kind="call",
        programme=programme,
        identifier=identifier,
        status=status,
        opening=opening,
        deadlines=deadlines,
        budget=budget,
        budget_amount=amount,
        currency=currency,
        regions=tuple(_list(md, "geographicalZones")),
        topics=_html.unique(t for t in _list(md, "tags") if not t.startswith("...")),
        extra={k: v for k, v in extra.items() if v not in (None, [], "")},
    )
    # Among records of one identifier: the current SEDIA record first, then one with a
    # status and a description (stubs have neither), then the latest ingest.
    rank = (
        1 if datasource == "SEDIA" else 0,
        1 if status_code else 0,
        1 if description else 0,
        _meta(md, "esDA_IngestDate") or _meta(md, "es_SortDate") or "",
    )
    return _Candidate(key, rank, item)


def _link(
    result: Mapping[str, Any],
    md: Mapping[str, Any],
    type_code: str,
    ident: str | None,
    call_id: str | None = None,
) -> str:
    procedure = _meta(md, "esST_procedureId")
    if type_code == "0" and procedure:
        return TENDER_URL.format(procedure=procedure)
    if call_id:  # a cascade call: the URL it gives is its topic's, shared by its siblings
        return CASCADE_URL.format(call_id=quote(call_id, safe=""))
    given = _meta(md, "url") or str(result.get("url") or "")
    if type_code in ("1", "") and ident:
        return TOPIC_URL.format(identifier=ident)
    # Legacy records point at a JSON data endpoint, not a page.
    if given and not given.endswith(".json"):
        return given
    return TOPIC_URL.format(identifier=ident) if ident else given


def _json_list(text: str | None) -> list[Any]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else [value]


def _is_legacy(result: Mapping[str, Any], md: Mapping[str, Any], datasource: str) -> bool:
    """Whether a record comes from the legacy copy of the data (``SEDIA_PRD_CENTRICITY``).

    Its ``DATASOURCE`` says so (the legacy copy writes it twice, as ``DATASOURCE`` and
    ``datasource``; either is enough). A record naming no data source at all is taken for
    legacy when its ``url`` is the legacy JSON data endpoint (``…/data/topicDetails/….json``)
    rather than a portal page. ``apiVersion`` is no sign: it belongs to the response (the
    real archived sample has a legacy record in an apiVersion 2.151 answer).
    """
    if datasource:
        return datasource == LEGACY_DATASOURCE
    url = _meta(md, "url") or str(result.get("url") or "")
    return _LEGACY_URL_PART in url and url.endswith(".json")


def _sedia_date(value: Any, *, legacy: bool = False) -> datetime | date | None:
    """A SEDIA date (``2027-04-08T00:00:00.000+0000``) as an instant or a date only.

    The formats the portal has written (see "Dates" under ``ft-portal`` in docs/sources.md):

    * current records: midnight UTC (``…T00:00:00.000+0000``) carries only a date (the
      deadline hour is not in the search index), returned as a ``date`` so the pipeline
      applies the end-of-day rule instead of closing the call at 02:00 Swedish time; any
      other time is the instant written;
    * older API versions wrote that same midnight UTC with a local offset
      (``2023-12-07T01:00:00.000+0100``): still a date only, the UTC day;
    * the legacy copy (``legacy``) writes the Brussels wall clock as if it were UTC:
      ``2023-09-20T17:00:00.000+0000`` is 17:00 in Brussels (15:00 UTC in summer).
    """
    if not value:
        return None
    text = str(value).strip()
    for fmt in _SEDIA_DATE_FORMATS:
        try:
            dt = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d":
            return dt.date()
        in_utc = dt.astimezone(UTC)
        if (in_utc.hour, in_utc.minute, in_utc.second, in_utc.microsecond) == (0, 0, 0, 0):
            return in_utc.date()
        if legacy and dt.utcoffset() == timedelta(0):
            return dt.replace(tzinfo=BRUSSELS)
        return dt
    return None


def _budget(
    md: Mapping[str, Any], identifier: str | None
) -> tuple[str | None, float | None, str | None]:
    """Budget of this topic from ``budgetOverview`` (a JSON string), else ``budget``."""
    overview_text = _meta(md, "budgetOverview")
    if overview_text and identifier:
        try:
            overview = json.loads(overview_text)
        except ValueError:
            overview = None
        actions = []
        if isinstance(overview, dict) and isinstance(overview.get("budgetTopicActionMap"), dict):
            for entries in overview["budgetTopicActionMap"].values():
                for entry in entries if isinstance(entries, list) else []:
                    # The map covers the whole call; only this topic's actions count.
                    action = str(entry.get("action", "")) if isinstance(entry, dict) else ""
                    if re.match(rf"{re.escape(identifier)}(\s|$)", action):
                        actions.append(entry)
        if actions:
            total = 0.0
            years: dict[str, float] = {}
            grants = 0
            for entry in actions:
                for year, amount in (entry.get("budgetYearMap") or {}).items():
                    value = _float(amount)
                    if value is not None:
                        years[str(year)] = years.get(str(year), 0.0) + value
                        total += value
                grants += _int(entry.get("expectedGrants")) or 0
            if total > 0:
                text = f"EUR {_money(total)}"
                if len(years) > 1:
                    text += (
                        " (" + ", ".join(f"{y}: {_money(years[y])}" for y in sorted(years)) + ")"
                    )
                if grants:
                    text += f"; {grants} grant{'s' if grants != 1 else ''} expected"
                return text, total, "EUR"
    amount = _float(_meta(md, "budget"))
    if amount:
        currency = _meta(md, "currency") or "EUR"
        return f"{currency} {_money(amount)}", amount, currency
    return None, None, None


def _float(value: Any) -> float | None:
    try:
        return float(str(value).replace(" ", "").replace(",", ""))
    except (TypeError, ValueError):
        return None


def _money(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ")
