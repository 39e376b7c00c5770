"""Svenska ESF-rådet (esf.se): ESF+ calls and the call plan, WordPress JSON first, HTML second.

esf.se is WordPress with the public REST API. Calls are read from
``/wp-json/wp/v2/<post_type>`` (paged by the ``X-WP-TotalPages`` header) and the plan from
``/wp-json/wp/v2/pages?slug=utlysningsplan``; when a JSON route answers with an error or with
something that is not a WordPress list, the adapter falls back to the HTML pages
(``/utlysningar/`` and ``/utlysningar/utlysningsplan/``). Both carry the facts as Swedish
text ("Öppnar 3 februari 2026", "Stänger 16 mars 2026", "Västsverige", "40 miljoner
kronor"), which one set of patterns reads whichever way the page came.

The call markup is not documented anywhere (the archives keep text only), so the HTML
readers look for structure loosely (articles, heading links, tables, heading blocks) and
raise ``ParseError`` when a page has none of it, rather than returning nothing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urljoin, urlsplit

from bs4 import BeautifulSoup, Tag
from pydantic import Field, field_validator

from sources import _html
from sources.base import Adapter, FetchContext, Options
from sources.registry import register
from watcher.exceptions import FetchError, ParseError
from watcher.types import CacheState, Fetched, FetchStatus, Page, RawItem

if TYPE_CHECKING:
    from watcher.http import HttpClient

NATIONAL = "Nationell"
ESF_REGIONS: tuple[str, ...] = (
    "Övre Norrland", "Mellersta Norrland", "Norra Mellansverige", "Stockholm",
    "Östra Mellansverige", "Småland och Öarna", "Sydsverige", "Västsverige",
)  # fmt: skip
_REGION_ALIASES = {
    "nationell": NATIONAL, "nationellt": NATIONAL, "national": NATIONAL,
    "nationella enheten": NATIONAL, "nationell utlysning": NATIONAL, "hela sverige": NATIONAL,
    "nationella utlysningar": NATIONAL,
    "stockholmsregionen": "Stockholm", "region stockholm": "Stockholm",
    "region västsverige": "Västsverige", "västra götaland och halland": "Västsverige",
}  # fmt: skip
_REGION_BY_LOWER = {r.lower(): r for r in ESF_REGIONS} | _REGION_ALIASES
_REGION_SLUGS = sorted(
    ((_html.slugify(k), v) for k, v in _REGION_BY_LOWER.items()), key=lambda kv: -len(kv[0])
)
_REGION_IN_TEXT = re.compile(
    r"(?<!\w)("
    + "|".join(re.escape(r) for r in sorted(ESF_REGIONS, key=len, reverse=True))
    + r")(?!\w)",
    re.IGNORECASE,
)

_DATE_ANY = rf"(?:{_html.LONG_DATE}|{_html.ISO_DATE}|\d{{8}})"
_OPEN_LABEL = (
    r"(?:Öppnar|Öppningsdatum|Öppnade|Öppen från|Ansökningsomgången öppnar|"
    r"Utlysningen öppnar|Beräknas öppna|Preliminärt öppningsdatum)"
)
_CLOSE_LABEL = (
    r"(?:Stänger|Stängningsdatum|Stängde|Sista dag(?:en)?(?: att ansöka| för ansökan)?|"
    r"Sista ansökningsdag(?:en)?|Sista ansökningsdatum|Ansök senast|Beräknas stänga|"
    r"Preliminärt stängningsdatum)"
)
_GLUE = r"\s*(?::|är|den)?\s*(?:den\s+)?(?:ca\.?\s+|cirka\s+)?"
_OPEN_RE = re.compile(rf"{_OPEN_LABEL}{_GLUE}(?P<date>{_DATE_ANY})", re.IGNORECASE)
_CLOSE_RE = re.compile(rf"{_CLOSE_LABEL}{_GLUE}(?P<date>{_DATE_ANY})", re.IGNORECASE)
# Plans give months ("Öppnar februari 2026"): kept as text, an opening on the 1st.
_OPEN_MONTH_RE = re.compile(rf"{_OPEN_LABEL}{_GLUE}(?P<date>{_html.MONTH_YEAR})", re.IGNORECASE)
_CLOSE_MONTH_RE = re.compile(rf"{_CLOSE_LABEL}{_GLUE}(?P<date>{_html.MONTH_YEAR})", re.IGNORECASE)
_STATUS_LABEL_RE = re.compile(
    r"^(?:Status\s*:?\s*)?(?P<word>Öppen(?: för ansökan)?|Stängd|Kommande|Planerad|Pågående)\.?$",
    re.IGNORECASE,
)
_REGION_LABEL_RE = re.compile(r"^Region(?:er)?\s*:?\s+(?P<name>.+)$", re.IGNORECASE)
_AREA_RE = re.compile(r"Programomr(?:å|a)de\s*:?\s*(?P<area>[A-E]\d?)\b", re.IGNORECASE)
_EMPTY_LIST_RE = re.compile(
    r"\binga\s+(?:öppna\s+|aktuella\s+|publicerade\s+|planerade\s+|kommande\s+)?utlysningar\b",
    re.IGNORECASE,
)
_STATUS_WORDS = {
    "öppen": "open", "öppen för ansökan": "open", "pågående": "open", "stängd": "closed",
    "kommande": "forthcoming", "planerad": "forthcoming",
}  # fmt: skip
_TITLE_COLS = ("utlysning", "rubrik", "namn", "insats", "titel")
_HEADING_TAGS = ("h2", "h3", "h4")


def canonical_region(text: str) -> str | None:
    """An ESF+ region name ("Västsverige", "Nationell") for a label, term or slug."""
    t = _html.one_line(text).strip(" •·-–—:.").lower()
    if t in _REGION_BY_LOWER:
        return _REGION_BY_LOWER[t]
    slug = _html.slugify(t)
    for region_slug, name in _REGION_SLUGS:
        if slug == region_slug or slug.endswith("-" + region_slug):
            return name
    return None


class EsfOptions(Options):
    """Options of the ``esf`` adapter."""

    regions: tuple[str, ...] = Field(
        ("Västsverige", "nationell"),
        validate_default=True,
        description="keep calls of these ESF+ regions (or 'nationell'); empty = all",
    )
    calls: bool = Field(True, description="read the calls")
    plan: bool = Field(True, description="read the call plan (utlysningsplan)")
    api: bool = Field(True, description="try the WordPress JSON API before the HTML pages")
    post_type: str = Field("utlysning", pattern=r"^[a-z0-9_-]+$")
    wp_query: dict[str, str] = Field(default_factory=dict, description="extra WP query parameters")
    plan_slug: str = Field("utlysningsplan", pattern=r"^[a-z0-9_-]+$")
    plan_url: str | None = Field(
        None, description="HTML plan page; default <site>/utlysningar/<plan_slug>/"
    )
    per_page: int = Field(100, ge=1, le=100)
    max_pages: int = Field(10, ge=1, le=100)

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for r in v:
            canon = canonical_region(r)
            if canon is None:
                raise ValueError(
                    f"unknown ESF+ region {r!r}; use one of {', '.join(ESF_REGIONS)} or 'nationell'"
                )
            out.append(canon)
        return tuple(dict.fromkeys(out))

    @field_validator("plan_url")
    @classmethod
    def _plan_url(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


@dataclass(frozen=True)
class _Facts:
    """What the text of one call says."""

    opening: str | None
    deadline: str | None
    status: str | None
    regions: tuple[str, ...]
    budget: str | None
    budget_amount: float | None
    currency: str | None
    area: str | None
    notes: Mapping[str, str]


@register
class EsfAdapter(Adapter):
    """Svenska ESF-rådet: ESF+ calls (utlysningar) and the call plan (utlysningsplan).

    Reads the calls through esf.se's WordPress JSON API (``/wp-json/wp/v2/<post_type>``,
    all pages) and the call plan page (``pages?slug=utlysningsplan``); when the API route is
    missing or fails, it reads the HTML pages instead (the source URL is the listing,
    ``https://www.esf.se/utlysningar/``). Opening and closing dates come from the Swedish
    text ("Öppnar 3 februari 2026", "Stänger 16 mars 2026", "Sista dag att ansöka …"),
    the region from labels, WordPress terms or the title, the budget from "X miljoner
    kronor". Keeps Västsverige and national calls by default; calls whose region cannot be
    told are kept. Planned calls become forthcoming-call items. The key is the call page's
    slug, the same whichever way the page was read.
    """

    kind: ClassVar[str] = "esf"
    Options: ClassVar[type[Options]] = EsfOptions
    expected_fields: ClassVar[tuple[str, ...]] = ("title", "link", "deadlines")

    options: EsfOptions

    # --- addresses ---------------------------------------------------------------------

    @property
    def site(self) -> str:
        parts = urlsplit(self.source.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def calls_api_url(self) -> str:
        return f"{self.site}/wp-json/wp/v2/{self.options.post_type}"

    @property
    def plan_api_url(self) -> str:
        return f"{self.site}/wp-json/wp/v2/pages"

    @property
    def plan_html_url(self) -> str:
        return self.options.plan_url or f"{self.site}/utlysningar/{self.options.plan_slug}/"

    def _is_plan(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.path.rstrip("/").endswith("/wp/v2/pages"):
            return parse_qs(parts.query).get("slug", [""])[0] == self.options.plan_slug
        plan = urlsplit(self.plan_html_url)
        return (parts.netloc, parts.path.rstrip("/")) == (plan.netloc, plan.path.rstrip("/"))

    # --- fetch -------------------------------------------------------------------------

    async def fetch(self, http: HttpClient, ctx: FetchContext) -> Fetched:
        pages: list[Page] = []
        if self.options.calls:
            pages.extend(await self._fetch_calls(http))
        if self.options.plan:
            pages.append(await self._fetch_plan(http))
        # The JSON routes are read whole each poll (no validators on WP REST lists).
        return Fetched(FetchStatus.OK, tuple(pages), CacheState())

    async def _fetch_calls(self, http: HttpClient) -> list[Page]:
        if self.options.api:
            try:
                return await self._fetch_calls_json(http)
            except (FetchError, _NotWordPress) as e:
                json_problem = str(e)
            try:
                return [(await http.get(self.source.url)).page]
            except FetchError as e:
                raise FetchError(
                    f"ESF: JSON route failed ({json_problem}) and the HTML listing failed: {e}",
                    code=e.code,
                ) from e
        return [(await http.get(self.source.url)).page]

    async def _fetch_calls_json(self, http: HttpClient) -> list[Page]:
        pages: list[Page] = []
        total: int | None = None
        number = 1
        while number <= self.options.max_pages:
            params = {
                **self.options.wp_query,
                "per_page": str(self.options.per_page),
                "page": str(number),
                "_embed": "wp:term",
            }
            resp = await http.get(self.calls_api_url, params=params)
            page = resp.page
            data = _wp_list(page)
            if data is None:
                if number == 1:
                    raise _NotWordPress(f"{page.url} did not answer with a WordPress list")
                raise ParseError(
                    f"ESF: page {number} of {self.calls_api_url} is not a WordPress list",
                    code="unexpected_structure",
                )
            pages.append(page)
            if total is None:
                total = _int(_header(resp.headers, "x-wp-totalpages"))
            if total is not None:
                if number >= total:
                    break
            elif len(data) < self.options.per_page:
                break
            number += 1
        return pages

    async def _fetch_plan(self, http: HttpClient) -> Page:
        if self.options.api:
            try:
                resp = await http.get(self.plan_api_url, params={"slug": self.options.plan_slug})
                data = _wp_list(resp.page)
                if data:
                    return resp.page
            except FetchError:
                pass  # the HTML page below is the fallback; its failure is reported
        return (await http.get(self.plan_html_url)).page

    # --- parse -------------------------------------------------------------------------

    def parse(self, page: Page) -> list[RawItem]:
        plan = self._is_plan(page.url)
        if _html.looks_like_json(page):
            data = _html.load_json(page, "ESF")
            if not isinstance(data, list):
                what = (
                    f"{{code: {data.get('code')!r}}}"
                    if isinstance(data, dict)
                    else type(data).__name__
                )
                raise ParseError(
                    f"ESF: {page.url} answered {what}, not a list of WordPress objects",
                    code="unexpected_structure",
                )
            objects = [o for o in data if isinstance(o, dict)]
            if data and not any("link" in o and "title" in o for o in objects):
                raise ParseError(
                    f"ESF: the objects from {page.url} have no 'link'/'title' (not WordPress?)",
                    code="unexpected_structure",
                )
            if plan:
                items = []
                for obj in objects:
                    content = _rendered(obj.get("content"))
                    items.extend(
                        self._plan_items(
                            _html.soup(content), str(obj.get("link") or page.url), strict=False
                        )
                    )
                return self._filter(items)
            return self._filter([i for i in (self._json_call(o) for o in objects) if i])
        doc = _html.soup(page)
        if plan:
            return self._filter(self._plan_items(doc, page.url, strict=True))
        return self._filter(self._html_calls(doc, page.url))

    def _filter(self, items: Iterable[RawItem]) -> list[RawItem]:
        wanted = set(self.options.regions)
        out: dict[str, RawItem] = {}
        for item in items:
            if wanted and item.regions and not wanted & set(item.regions):
                continue
            out.setdefault(item.key, item)
        return list(out.values())

    # --- calls from JSON ---------------------------------------------------------------

    def _json_call(self, obj: Mapping[str, Any]) -> RawItem | None:
        link = str(obj.get("link") or "")
        title = _plain(_rendered(obj.get("title")))
        if not link or not title:
            return None
        content = _rendered(obj.get("content"))
        excerpt = _rendered(obj.get("excerpt"))
        lines = _html.text_lines(_html.soup(content)) if content.strip() else []
        if excerpt.strip():
            lines = _html.text_lines(_html.soup(excerpt)) + lines
        hints = list(_terms(obj))
        acf_value = obj.get("acf")
        acf: Mapping[str, Any] = acf_value if isinstance(acf_value, dict) else {}
        facts = _facts(title, lines, hints, acf)
        key = _html.last_path_segment(link) or str(obj.get("slug") or "") or f"wp-{obj.get('id')}"
        published = obj.get("date_gmt")
        extra: dict[str, Any] = {"wp_id": obj.get("id"), "modified": obj.get("modified_gmt")}
        return _item(
            key=key,
            title=title,
            link=link,
            summary=excerpt or content,
            summary_is_html=True,
            facts=facts,
            kind="call",
            published=f"{published}+00:00" if published else None,
            extra=extra,
        )

    # --- calls from the HTML listing ---------------------------------------------------

    def _html_calls(self, doc: BeautifulSoup, url: str) -> list[RawItem]:
        root = _content_root(doc)
        listing_path = urlsplit(url).path.rstrip("/")
        blocks = [a for a in root.find_all("article") if isinstance(a, Tag)]
        if not blocks:
            blocks = _link_blocks(root)
        items: list[RawItem] = []
        for block in blocks:
            a = _title_link(block)
            if a is None:
                continue
            link = urljoin(url, str(a.get("href") or ""))
            path = urlsplit(link).path.rstrip("/")
            title = _html.node_text(a)
            if not title or path == listing_path:
                continue
            segment = _html.last_path_segment(link)
            lines = _html.text_lines(block)
            text = "\n".join(lines)
            is_call = "/utlysningar/" in path + "/" or bool(
                _OPEN_RE.search(text) or _CLOSE_RE.search(text)
            )
            if not is_call or segment == self.options.plan_slug:
                continue
            hints = [str(c) for c in block.get("class") or []]
            hints += [
                _html.node_text(t)
                for t in block.select(".region, .tag, .category, [class*=region]")
            ]
            facts = _facts(title, [line for line in lines if line != title], hints, {})
            summary_lines = [
                line for line in lines if line != title and len(line) > 60 and not _date_line(line)
            ]
            items.append(
                _item(
                    key=segment or _html.slugify(title),
                    title=title,
                    link=link,
                    summary="\n\n".join(summary_lines[:3]),
                    summary_is_html=False,
                    facts=facts,
                    kind="call",
                )
            )
        if not items:
            text = " ".join(_html.text_lines(root))
            if _EMPTY_LIST_RE.search(text):
                return []
            raise ParseError(
                f"ESF: no call blocks on {url} (no article or heading link to /utlysningar/… "
                "and no 'Öppnar/Stänger <datum>' text): has the page layout changed?",
                code="unexpected_structure",
            )
        return items

    # --- the call plan -----------------------------------------------------------------

    def _plan_items(self, doc: BeautifulSoup, url: str, *, strict: bool) -> list[RawItem]:
        root = _content_root(doc)
        items = _plan_tables(root, url)
        if not items:
            items = _plan_blocks(root, url)
        if not items:
            text = " ".join(_html.text_lines(root))
            if _EMPTY_LIST_RE.search(text):
                return []
            raise ParseError(
                f"ESF: the call plan at {url} has no table with dates and no heading blocks "
                "with 'Öppnar/Stänger' dates: has the page layout changed?",
                code="unexpected_structure",
            )
        return items


class _NotWordPress(Exception):
    """The JSON route answered, but not with a WordPress list (fall back to HTML)."""


def _wp_list(page: Page) -> list[Any] | None:
    if not _html.looks_like_json(page):
        return None
    try:
        data = _html.load_json(page, "ESF")
    except ParseError:
        return None
    return data if isinstance(data, list) else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _rendered(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("rendered") or "")
    return str(value or "")


def _plain(markup: str) -> str:
    text = html.unescape(markup)
    if "<" in text:
        text = _html.node_text(_html.soup(text).body)
    return _html.one_line(text)


def _terms(obj: Mapping[str, Any]) -> Iterable[str]:
    """Term names from ``_embedded['wp:term']`` and slugs from ``class_list``."""
    embedded = obj.get("_embedded")
    if isinstance(embedded, dict):
        for group in embedded.get("wp:term") or []:
            for term in group if isinstance(group, list) else []:
                if isinstance(term, dict) and term.get("name"):
                    yield html.unescape(str(term["name"]))
    classes = obj.get("class_list")
    if isinstance(classes, dict):
        classes = list(classes.values())
    for c in classes if isinstance(classes, list) else []:
        yield str(c)


def _content_root(doc: BeautifulSoup) -> Tag | BeautifulSoup:
    main = doc.find("main") or doc.select_one('[role="main"]')
    if isinstance(main, Tag):
        return main
    body = doc.body or doc
    for noise in body.find_all(["nav", "header", "footer"]):
        noise.decompose()
    return body


def _title_link(block: Tag) -> Tag | None:
    for sel in ("h2 a[href]", "h3 a[href]", "h4 a[href]", "a[href]"):
        a = block.select_one(sel)
        if isinstance(a, Tag):
            return a
    return None


def _link_blocks(root: Tag | BeautifulSoup) -> list[Tag]:
    """For each heading link, the largest ancestor that holds no other heading link."""
    links = root.select("h2 a[href], h3 a[href], h4 a[href]")
    blocks: list[Tag] = []
    for a in links:
        block: Tag = a
        parent = a.parent
        while isinstance(parent, Tag) and parent is not root:
            if len(parent.select("h2 a[href], h3 a[href], h4 a[href]")) > 1:
                break
            block = parent
            parent = parent.parent
        if block not in blocks:
            blocks.append(block)
    return blocks


def _acf_fields(
    acf: Mapping[str, Any],
) -> tuple[str | None, str | None, str | None, list[str]]:
    """ACF custom fields: (opening, deadline, budget text, other fields as "key: value")."""
    opening = deadline = budget = None
    lines = []
    for key, value in acf.items():
        if isinstance(value, (dict, list)) or value in (None, "", False):
            continue
        text = _html.ymd_to_iso(str(value))
        k = _html.slugify(str(key))
        if re.search(r"budget|belopp", k):
            budget = budget or text
        elif re.search(r"oppn|open|start", k) and re.match(rf"^{_DATE_ANY}$", text):
            opening = opening or text
        elif re.search(r"stang|deadline|sista|close|slut", k) and re.match(rf"^{_DATE_ANY}$", text):
            deadline = deadline or text
        else:
            lines.append(f"{key}: {text}")
    return opening, deadline, budget, lines


def _facts(
    title: str, lines: Sequence[str], hints: Sequence[str], acf: Mapping[str, Any]
) -> _Facts:
    acf_open, acf_close, acf_budget, acf_lines = _acf_fields(acf)
    all_lines = [*lines, *acf_lines]
    text = "\n".join(all_lines)
    notes: dict[str, str] = {}

    opening = acf_open or _match(_OPEN_RE, text)
    deadline = acf_close or _match(_CLOSE_RE, text)
    if opening is None:
        month = _match(_OPEN_MONTH_RE, text)
        if month:
            opening = month
            notes["opening_text"] = month
    if deadline is None:
        month = _match(_CLOSE_MONTH_RE, text)
        if month:
            # A month is not a deadline (the 1st would close the call a month early).
            notes["deadline_text"] = month
    opening = _html.ymd_to_iso(opening) if opening else None
    deadline = _html.ymd_to_iso(deadline) if deadline else None

    status = None
    regions: list[str] = []
    for line in all_lines:
        s = _STATUS_LABEL_RE.match(line)
        if s and status is None:
            status = _STATUS_WORDS[s["word"].lower()]
        r = _REGION_LABEL_RE.match(line)
        if r:
            regions.extend(
                x for x in (canonical_region(p) for p in re.split(r",|\boch\b", r["name"])) if x
            )
    if not regions:
        regions = [x for x in (canonical_region(h) for h in hints) if x]
    if not regions:
        regions = [canonical_region(m) or m for m in _REGION_IN_TEXT.findall(title)]
        if re.search(r"\bnationell", title, re.IGNORECASE):
            regions.append(NATIONAL)
    if not regions:
        regions = [x for x in (canonical_region(line) for line in all_lines if len(line) < 40) if x]
    if not regions:
        mentioned = {canonical_region(m) for m in _REGION_IN_TEXT.findall(text)}
        if len(mentioned) == 1:
            regions = [r for r in mentioned if r]

    budget_line = acf_budget or _html.budget_sentence(text)
    found = _html.find_budget(budget_line or "")
    area = _AREA_RE.search(f"{title}\n{text}")
    return _Facts(
        opening=opening,
        deadline=deadline,
        status=status,
        regions=_html.unique(regions),
        budget=budget_line,
        budget_amount=found[0] if found else None,
        currency=found[1] if found else None,
        area=area["area"] if area else None,
        notes=notes,
    )


def _date_line(line: str) -> bool:
    return bool(_OPEN_RE.search(line) or _CLOSE_RE.search(line))


def _match(pattern: re.Pattern[str], text: str) -> str | None:
    m = pattern.search(text)
    return m["date"] if m else None


def _item(
    *,
    key: str,
    title: str,
    link: str,
    summary: str,
    summary_is_html: bool,
    facts: _Facts,
    kind: str,
    published: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> RawItem:
    more: dict[str, Any] = dict(extra or {})
    more.update(facts.notes)
    if facts.area:
        more["programomrade"] = facts.area
    status = facts.status or ("forthcoming" if kind == "forthcoming_call" else None)
    return RawItem(
        key=key,
        title=title,
        link=link,
        summary=summary,
        summary_is_html=summary_is_html,
        language="sv",
        kind=kind,
        programme="ESF+",
        status=status,
        published=published,
        opening=facts.opening,
        deadlines=(facts.deadline,) if facts.deadline else (),
        budget=facts.budget,
        budget_amount=facts.budget_amount,
        currency=facts.currency,
        regions=facts.regions,
        extra={k: v for k, v in more.items() if v not in (None, "", [])},
    )


def _plan_tables(root: Tag | BeautifulSoup, url: str) -> list[RawItem]:
    """Plans laid out as tables: a header row naming the columns."""
    items: list[RawItem] = []
    for table in root.find_all("table"):
        rows = [r for r in table.find_all("tr") if isinstance(r, Tag)]
        if len(rows) < 2:
            continue
        header = [_html.node_text(c).lower() for c in rows[0].find_all(["th", "td"])]
        col = _columns(header)
        if col.get("title") is None or not ({"opening", "deadline"} & set(col)):
            continue
        current_region: str | None = None
        for row in rows[1:]:
            cells = [_html.node_text(c) for c in row.find_all(["th", "td"])]
            if len(cells) == 1:  # a region sub-heading row spanning the table
                current_region = canonical_region(cells[0]) or current_region
                continue
            title = _cell(cells, col.get("title"))
            if not title:
                continue
            lines = [title]
            for name, label in (("opening", "Öppnar"), ("deadline", "Stänger")):
                value = _cell(cells, col.get(name))
                if value:
                    lines.append(f"{label} {value}")
            region_text = _cell(cells, col.get("region"))
            area = _cell(cells, col.get("area"))
            if area:
                lines.append(f"Programområde {area}")
            hints = [region_text] if region_text else ([current_region] if current_region else [])
            facts = _facts(title, lines[1:], [h for h in hints if h], {})
            region_key = "-".join(facts.regions) or "okand"
            items.append(
                _item(
                    key="plan-" + _html.slugify(f"{region_key}-{title}"),
                    title=title,
                    link=url,
                    summary="",
                    summary_is_html=False,
                    facts=facts,
                    kind="forthcoming_call",
                )
            )
    return items


def _columns(header: Sequence[str]) -> dict[str, int]:
    col: dict[str, int] = {}
    for i, h in enumerate(header):
        if "region" in h:
            col.setdefault("region", i)
        elif "programområde" in h:
            col.setdefault("area", i)
        elif any(w in h for w in ("öppnar", "öppning", "öppen")):
            col.setdefault("opening", i)
        elif any(w in h for w in ("stänger", "stängning", "sista")):
            col.setdefault("deadline", i)
        elif any(w in h for w in _TITLE_COLS):
            col.setdefault("title", i)
    return col


def _cell(cells: Sequence[str], index: int | None) -> str:
    return cells[index].strip() if index is not None and index < len(cells) else ""


def _plan_blocks(root: Tag | BeautifulSoup, url: str) -> list[RawItem]:
    """Plans laid out as headings: region headings, and a heading per planned call
    followed by its text ("Öppnar februari 2026, stänger …")."""
    items: list[RawItem] = []
    current_region: str | None = None
    region_level = 0
    for heading in root.find_all(_HEADING_TAGS):
        level = int(heading.name[1])
        text = _html.node_text(heading)
        region = canonical_region(text)
        if region is not None:
            current_region, region_level = region, level
            continue
        if current_region is not None and level <= region_level:
            current_region = None  # a new section at the region's level ends it
        lines: list[str] = []
        for sib in heading.next_siblings:
            if isinstance(sib, Tag):
                if sib.name in _HEADING_TAGS or sib.find(_HEADING_TAGS):
                    break
                lines.extend(_html.text_lines(sib))
            elif str(sib).strip():
                lines.append(_html.one_line(str(sib)))
        body = "\n".join(lines)
        if not (_OPEN_RE.search(body) or _CLOSE_RE.search(body) or _OPEN_MONTH_RE.search(body)):
            continue
        hints = [current_region] if current_region else []
        facts = _facts(text, lines, hints, {})
        anchor = heading.get("id")
        region_key = "-".join(facts.regions) or "okand"
        items.append(
            _item(
                key="plan-" + _html.slugify(f"{region_key}-{text}"),
                title=text,
                link=f"{url}#{anchor}" if anchor else url,
                summary="\n\n".join(line for line in lines if len(line) > 60)[:1500],
                summary_is_html=False,
                facts=facts,
                kind="forthcoming_call",
            )
        )
    return items
