"""The demo: EU-bevakning on a temporary database filled with sample data of every kind.

``watcher demo`` (``watcher/cli/demo_cmd.py``) runs the service as ``watcher run`` does,
on a folder made for it and removed when it stops. This module holds what it needs:

* ``SOURCES`` and ``NETWORKS``: the demo's config, written to ``config.toml`` in that folder
  by ``write_config`` (the admin's edits go there, and are gone with it);
* ``history(now)``: three weeks of polls, as values (``Poll``): which source gave which raw
  items when, and which polls failed. Dates are relative to ``now``, so the demo always shows
  open calls and deadlines ahead;
* ``seed(app)``: plays that history through the real pipeline, as ``watcher.polling`` does
  inside its write transaction (normalise → classify → layout check → ``track.decide`` →
  ``arrivals`` → ``Storage.apply``; a failure through ``Storage.record_failure``), then
  refreshes statuses and sends each network's first digest (email to files), so every page
  shows what a real run would have stored;
* ``SampleFeeds``: a loopback HTTP server the demo's sources point at, so the scheduler's polls
  really run without the internet: each feed answers a conditional GET with 304 Not Modified
  (the seeded polls stored its ETag), and the Brussels office's page answers 500, so its
  health keeps failing. See "The demo" in ``docs/design.md`` for why.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from xml.sax.saxutils import escape

import tomlkit

from watcher.app import App
from watcher.config import SourceConfig
from watcher.dates import STOCKHOLM
from watcher.pipeline.arrivals import arrivals
from watcher.pipeline.layout import check_layout
from watcher.pipeline.normalise import normalise
from watcher.pipeline.track import candidate_keys, decide
from watcher.polling import next_attempt
from watcher.types import (
    Classification,
    IntentKind,
    PollResult,
    PollStatus,
    RawItem,
    SourceError,
)

# -- the demo's config -----------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSource:
    """A source of the demo: named as the real one, served by ``SampleFeeds`` at ``path``."""

    id: str
    name: str
    kind: str
    path: str
    schedule: str
    areas: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    language: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    broken: bool = False  # its page answers 500: a source whose health shows a failure

    def etag(self) -> str:
        return f'"demo-{self.id}"'


SOURCES: tuple[DemoSource, ...] = (
    DemoSource(
        "ft-portal",
        "EU Funding & Tenders Portal",
        "rss",
        "/ft-portal.xml",
        "6h",
        areas=("fonder-program",),
        language="en",
    ),
    DemoSource(
        "esf-utlysningar",
        "Svenska ESF-rådet: utlysningar och utlysningsplan",
        "rss",
        "/esf.xml",
        "3h",
        areas=("fonder-program",),
        themes=("arbetsmarknad",),
        language="sv",
    ),
    DemoSource(
        "tillvaxtverket-utlysningar",
        "Tillväxtverket: utlysningar (Regionalfonden)",
        "rss",
        "/tillvaxtverket.xml",
        "3h",
        areas=("fonder-program",),
        themes=("naringsliv-innovation",),
        language="sv",
    ),
    DemoSource(
        "interreg-kalender",
        "Interreg: kalender över utlysningar",
        "ical",
        "/interreg.ics",
        "12h",
        areas=("fonder-program",),
    ),
    DemoSource(
        "haveyoursay",
        "Have your say: öppna samråd",
        "rss",
        "/haveyoursay.xml",
        "12h",
        areas=("paverkan",),
        language="en",
    ),
    DemoSource(
        "presscorner",
        "Europeiska kommissionen: Press Corner",
        "rss",
        "/presscorner.xml",
        "2h",
        language="en",
    ),
    DemoSource(
        "goteborg-bryssel",
        "Göteborgs Stad: Brysselkontoret",
        "html",
        "/bryssel/aktuellt",
        "1h",
        language="sv",
        options={"item": "article", "title": "h2", "date": "time", "summary": "p"},
        broken=True,
    ),
)

NETWORKS: tuple[dict[str, Any], ...] = (
    {
        "id": "gr-eu-natverk",
        "name": "GR:s EU-nätverk",
        "areas": ["all"],
        "themes": ["all"],
        "members": ["eu-samordnare@molndal.example", "internationellt@kungsbacka.example"],
        "schedule": "mon 08:00",
    },
    {
        "id": "arbetsmarknad-utbildning",
        "name": "EU-nätverket för arbetsmarknad och utbildning",
        "areas": ["fonder-program", "forhandsinfo", "kompetens"],
        "themes": ["arbetsmarknad", "utbildning"],
        "members": ["anna.lindqvist@partille.example", "omar.haddad@goteborg.example"],
        "schedule": "weekdays 07:30",
    },
    {
        "id": "samhallsbyggnad-innovation",
        "name": "Urban development and innovation (English digest)",
        "areas": ["fonder-program", "paverkan", "partners"],
        "themes": ["samhallsbyggnad", "naringsliv-innovation"],
        "members": ["project.office@lerum.example"],
        "schedule": "thu 08:00",
        "language": "en",
    },
)


def config_data(
    root: Path, feeds_url: str, allow_entry: str, base_url: str, password_hash: str
) -> dict[str, Any]:
    """The demo's config.toml as data: everything under ``root``, the sources on the loopback
    server at ``feeds_url`` (admitted by ``allow_entry``), the admin's password hash."""
    return {
        "watcher": {
            "database_url": f"sqlite:///{root / 'watcher.db'}",
            "data_dir": str(root),
            "base_url": base_url,
            "start_jitter": 5.0,
        },
        "fetch": {"allow_private_networks": [allow_entry], "retries": 0, "timeout": 10.0},
        "web": {"admin_password_hash": password_hash},
        "email": {
            "backend": "file",
            "outbox": str(root / "outbox"),
            "sender": "EU-bevakning (demo) <eu-bevakning@demo.example>",
        },
        "sources": [
            {
                "id": s.id,
                "name": s.name,
                "kind": s.kind,
                "url": feeds_url + s.path,
                "schedule": s.schedule,
                "areas": list(s.areas),
                "themes": list(s.themes),
                **({"language": s.language} if s.language else {}),
                **({"options": dict(s.options)} if s.options else {}),
            }
            for s in SOURCES
        ],
        "networks": [dict(n) for n in NETWORKS],
    }


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    return path


# -- the sample history ----------------------------------------------------------------------


@dataclass(frozen=True)
class Poll:
    """One poll in the sample history: ``source_id`` gave ``items`` (or failed with
    ``error``) ``days`` days from now (negative: in the past)."""

    source_id: str
    days: float
    items: tuple[RawItem, ...] = ()
    error: SourceError | None = None


def _at(now: datetime, days: float, hour: int | None = None, minute: int = 0) -> datetime:
    """``days`` from ``now``; with ``hour``, at that time of the day in Stockholm."""
    t = (now + timedelta(days=days)).astimezone(STOCKHOLM)
    if hour is not None:
        t = t.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return t


def _year(now: datetime) -> int:
    """The year the sample calls are for: next year's work programme from autumn on."""
    return (now + timedelta(days=120)).year


def _ft_portal(now: datetime) -> list[RawItem]:
    def d(days: float, hour: int = 17) -> datetime:
        return _at(now, days, hour)

    y, prev = _year(now), _year(now) - 1
    base = "https://ec.europa.eu/info/funding-tenders/opportunities/portal/screen/opportunities/topic-details/"
    return [
        RawItem(
            key=f"HORIZON-CL5-{y}-D2-01",
            title="Climate-neutral and smart cities: integrated local energy transitions (two-stage)",
            link=base + f"horizon-cl5-{y}-d2-01",
            summary=(
                "Horizon Europe, Cluster 5. Municipalities and public authorities, together with "
                "research partners and companies, demonstrate integrated plans for climate-neutral "
                "districts: energy, mobility and urban planning. Two-stage call: a short first-stage "
                "proposal, then a full proposal by invitation."
            ),
            language="en",
            kind="call",
            programme="Horizon Europe (HORIZON)",
            identifier=f"HORIZON-CL5-{y}-D2-01",
            status="open",
            published=d(-32, 10),
            opening=d(-30, 9),
            deadlines=(d(26), d(160)),
            budget="EUR 30 000 000",
            budget_amount=30_000_000,
            currency="EUR",
        ),
        RawItem(
            key=f"ERASMUS-EDU-{y}-PI-ALL-INNO",
            title="Alliances for Innovation: skills for the green and digital transition",
            link=base + f"erasmus-edu-{y}-pi-all-inno",
            summary=(
                "Erasmus+ cooperation between higher education, vocational education and training "
                "and employers to close skills gaps. Applicants: education providers, regional "
                "authorities and companies in at least four programme countries."
            ),
            language="en",
            kind="call",
            programme="Erasmus+ (ERASMUS+)",
            identifier=f"ERASMUS-EDU-{y}-PI-ALL-INNO",
            status="open",
            published=d(-25, 10),
            opening=d(-25, 9),
            deadlines=(d(48),),
            budget="EUR 48 000 000",
        ),
        RawItem(
            key=f"LIFE-{y}-CET-LOCAL",
            title="LIFE Clean Energy Transition: technical assistance for local authorities",
            link=base + f"life-{y}-cet-local",
            summary=(
                "Support for municipalities and local authorities that prepare investment "
                "programmes for energy renovation of buildings and sustainable heating."
            ),
            language="en",
            kind="call",
            programme="LIFE Programme (LIFE)",
            identifier=f"LIFE-{y}-CET-LOCAL",
            status="open",
            published=d(-22, 10),
            opening=d(-22, 9),
            deadlines=(d(40),),
            budget="EUR 16 000 000",
        ),
        RawItem(
            key=f"CERV-{y}-CITIZENS-TOWN-NT",
            title="Networks of Towns: citizens' engagement in local democracy",
            link=base + f"cerv-{y}-citizens-town-nt",
            summary=(
                "Citizens, Equality, Rights and Values (CERV). Towns and municipalities with their "
                "associations build thematic networks on democratic participation and social inclusion."
            ),
            language="en",
            kind="call",
            programme="Citizens, Equality, Rights and Values (CERV)",
            identifier=f"CERV-{y}-CITIZENS-TOWN-NT",
            status="open",
            published=d(-40, 10),
            opening=d(-40, 9),
            deadlines=(d(9),),
            budget="EUR 5 200 000",
        ),
        RawItem(
            key=f"DIGITAL-{prev}-SKILLS-07",
            title="Specialised education programmes in key digital capacity areas",
            link=base + f"digital-{prev}-skills-07",
            summary=(
                "Digital Europe Programme. Master's programmes and short training courses in "
                "cybersecurity, artificial intelligence and data."
            ),
            language="en",
            kind="call",
            programme="Digital Europe Programme (DIGITAL)",
            identifier=f"DIGITAL-{prev}-SKILLS-07",
            status="closed",
            published=d(-80, 10),
            opening=d(-80, 9),
            deadlines=(d(-9),),
            budget="EUR 25 000 000",
        ),
        RawItem(
            key=f"ESF-{y}-SOCPL",
            title="ESF+ Social Innovation+: transfer of innovative solutions for inclusion",
            link=base + f"esf-{y}-socpl",
            summary=(
                "Forthcoming call under the European Social Fund Plus. The call will open for "
                "proposals on transferring tested social innovations to new regions: "
                "employment of long-term unemployed people and social inclusion."
            ),
            language="en",
            kind="forthcoming_call",
            programme="European Social Fund + (ESF+)",
            identifier=f"ESF-{y}-SOCPL",
            status="forthcoming",
            published=d(-12, 10),
            opening=d(35, 9),
            deadlines=(d(120),),
            budget="EUR 10 000 000",
        ),
    ]


def _esf(now: datetime) -> list[RawItem]:
    def d(days: float, hour: int = 23) -> datetime:
        return _at(now, days, hour, 59 if hour == 23 else 0)

    base = "https://www.esf.se/utlysningar/"
    return [
        RawItem(
            key="esf-kompetens-vast",
            title="Kompetensförsörjning och omställning i Västsverige",
            link=base + "kompetensforsorjning-och-omstallning-i-vastsverige/",
            summary=(
                "Utlysning inom ESF+, programområde A. Projekt som stärker kompetensen hos "
                "anställda i små och medelstora företag och i offentlig sektor, så att de kan "
                "ställa om på arbetsmarknaden. Kommuner, regioner och kommunalförbund kan söka."
            ),
            language="sv",
            kind="call",
            programme="ESF+ programområde A",
            status="open",
            published=d(-16, 9),
            opening=d(-14, 9),
            deadlines=(d(30),),
            budget="60 miljoner kronor",
            budget_amount=60_000_000,
            currency="SEK",
        ),
        RawItem(
            key="esf-vagar-till-arbete",
            title="Vägar till arbete för personer långt från arbetsmarknaden – förstudie och genomförande",
            link=base + "vagar-till-arbete/",
            summary=(
                "Ansökan sker i två steg: först en förstudie, sedan ett genomförandeprojekt. "
                "Insatser för arbetslösa som står långt från arbetsmarknaden, till exempel "
                "personer med funktionsnedsättning, i samverkan mellan kommun och "
                "Arbetsförmedlingen."
            ),
            language="sv",
            kind="call",
            programme="ESF+ programområde B",
            status="open",
            published=d(-10, 9),
            opening=d(-10, 9),
            deadlines=(d(21), d(110)),
            budget="120 miljoner kronor",
        ),
        RawItem(
            key="esf-utlysningsplan-uvas",
            title="Utlysningsplan: unga som varken arbetar eller studerar",
            link="https://www.esf.se/utlysningsplan/",
            summary=(
                "Planerad utlysning i ESF+. Projekt som når unga 15–29 år som varken arbetar "
                "eller studerar och stöttar dem till studier eller arbete. Utlysningen "
                "planeras att öppna i höst."
            ),
            language="sv",
            kind="forthcoming_call",
            programme="ESF+ programområde B",
            status="forthcoming",
            published=d(-18, 9),
            opening=d(45, 9),
            deadlines=(d(140),),
        ),
        RawItem(
            key="esf-sociala-foretag",
            title="Arbetsintegrerande sociala företag som väg till arbete",
            link=base + "arbetsintegrerande-sociala-foretag/",
            summary=(
                "Utlysning för att utveckla arbetsintegrerande sociala företag och deras samverkan "
                "med kommunernas arbetsmarknadsenheter."
            ),
            language="sv",
            kind="call",
            programme="ESF+ programområde B",
            status="closed",
            published=d(-70, 9),
            opening=d(-60, 9),
            deadlines=(d(-20),),
            budget="40 miljoner kronor",
        ),
    ]


def _tillvaxtverket(now: datetime, moved: bool) -> list[RawItem]:
    def d(days: float, hour: int = 23) -> datetime:
        return _at(now, days, hour, 59 if hour == 23 else 0)

    base = "https://tillvaxtverket.se/tillvaxtverket/utlysningar/"
    summary = (
        "Regionalfondsprogram för Västsverige, insatsområde 5. Stöd till kommuner och "
        "offentliga aktörer för gröna och inkluderande stadsmiljöer: hållbar stadsutveckling, "
        "klimatanpassning och trygga offentliga rum."
    )
    if moved:
        summary += " Sista ansökningsdag har förlängts."
    return [
        RawItem(
            key="tvv-hallbar-stadsutveckling-vast",
            title="Hållbar stadsutveckling i Västsverige",
            link=base + "hallbar-stadsutveckling-i-vastsverige.html",
            summary=summary,
            language="sv",
            kind="call",
            programme="Regionalfondsprogram för Västsverige",
            status="open",
            published=d(-21, 9),
            opening=d(-21, 9),
            deadlines=(d(39) if moved else d(18),),
            budget="85 miljoner kronor",
        ),
        RawItem(
            key="tvv-innovation-smf-vast",
            title="Innovation och digitalisering i små och medelstora företag",
            link=base + "innovation-och-digitalisering-i-sma-och-medelstora-foretag.html",
            summary=(
                "Regionalfonden stöder projekt som ökar små och medelstora företags förmåga att "
                "utveckla nya produkter och tjänster, bland annat genom innovationsstöd och "
                "samverkan med universitet och näringsliv."
            ),
            language="sv",
            kind="call",
            programme="Regionalfondsprogram för Västsverige",
            status="open",
            published=d(-9, 9),
            opening=d(-9, 9),
            deadlines=(d(55),),
            budget="50 miljoner kronor",
        ),
    ]


def _interreg(now: datetime) -> list[RawItem]:
    def d(days: float, hour: int = 23) -> datetime:
        return _at(now, days, hour, 59 if hour == 23 else 0)

    return [
        RawItem(
            key="oks-utlysning-6@interreg.no",
            title="Interreg Öresund-Kattegat-Skagerrak: utlysning 6 – grön omställning och innovation",
            link="https://interreg-oks.eu/utlysningar",
            summary=(
                "Gränsöverskridande samarbetsprojekt mellan Sverige, Danmark och Norge om grön "
                "omställning, innovation och hållbar transport."
            ),
            language="sv",
            kind="call",
            programme="Interreg Öresund-Kattegat-Skagerrak",
            status="open",
            opening=d(-20, 9),
            deadlines=(d(33),),
        ),
        RawItem(
            key="northsea-call-4@interreg.no",
            title="Interreg North Sea: Call 4 – climate-resilient cities and regions",
            link="https://www.interregnorthsea.eu/calls",
            summary=(
                "Transnational projects on climate adaptation, green transition of ports and "
                "cities, and innovation in the North Sea Region. Open to public authorities."
            ),
            language="en",
            kind="call",
            programme="Interreg North Sea",
            status="open",
            opening=d(-10, 9),
            deadlines=(d(70),),
        ),
        RawItem(
            key="interreg-europe-call-5@interreg.no",
            title="Interreg Europe: fifth call for project proposals (upcoming)",
            link="https://www.interregeurope.eu/next-call-for-projects",
            summary=(
                "The next call is expected to open for interregional cooperation projects on "
                "regional development policies. Start looking for partners now."
            ),
            language="en",
            kind="forthcoming_call",
            programme="Interreg Europe",
            status="forthcoming",
            opening=d(60, 9),
            deadlines=(d(150),),
        ),
    ]


def _haveyoursay(now: datetime) -> list[RawItem]:
    def d(days: float, hour: int = 23) -> datetime:
        return _at(now, days, hour, 59 if hour == 23 else 0)

    base = "https://ec.europa.eu/info/law/better-regulation/have-your-say/initiatives/"
    return [
        RawItem(
            key="hys-14723",
            title="Cohesion policy after 2027 – public consultation",
            link=base + "14723-Cohesion-policy-after-2027_en",
            summary=(
                "The Commission invites regions, cities and citizens to give their views on the "
                "future of cohesion policy and its place-based approach in the next long-term "
                "EU budget. Feedback period open."
            ),
            language="en",
            kind="consultation",
            status="open",
            published=d(-14, 9),
            opening=d(-14, 9),
            deadlines=(d(18),),
        ),
        RawItem(
            key="hys-14810",
            title="European Skills Agenda – evaluation",
            link=base + "14810-European-Skills-Agenda-evaluation_en",
            summary=(
                "Call for evidence on how the Skills Agenda has supported upskilling and "
                "reskilling of adults, vocational education and lifelong learning."
            ),
            language="en",
            kind="consultation",
            status="open",
            published=d(-6, 9),
            opening=d(-6, 9),
            deadlines=(d(40),),
        ),
        RawItem(
            key="hys-14655",
            title="European Affordable Housing Plan – call for evidence",
            link=base + "14655-European-Affordable-Housing-Plan_en",
            summary=(
                "Views on affordable and social housing, homelessness and the role of cities "
                "and municipalities in housing policy."
            ),
            language="en",
            kind="consultation",
            status="closed",
            published=d(-40, 9),
            opening=d(-40, 9),
            deadlines=(d(-4),),
        ),
    ]


def _presscorner(now: datetime) -> list[RawItem]:
    def d(days: float, hour: int = 12) -> datetime:
        return _at(now, days, hour)

    base = "https://ec.europa.eu/commission/presscorner/detail/en/"
    return [
        RawItem(
            key="IP_27_1204",
            title="Commission proposes simpler rules for EU funds in the next long-term budget",
            link=base + "ip_27_1204",
            summary=(
                "The proposal for the next Multiannual Financial Framework brings national and "
                "regional partnership plans, fewer rules for beneficiaries and a stronger role "
                "for regions and cities in the design of programmes."
            ),
            language="en",
            kind="news",
            published=d(-3),
        ),
        RawItem(
            key="IP_27_1150",
            title="Commission presents first European Affordable Housing Plan",
            link=base + "ip_27_1150",
            summary=(
                "The plan aims to increase the supply of affordable and social housing and "
                "supports cities with investment, advice and simpler state aid rules."
            ),
            language="en",
            kind="news",
            published=d(-8),
        ),
        RawItem(
            key="IP_27_1098",
            title="Labour shortages persist in most EU regions, says employment and social report",
            link=base + "ip_27_1098",
            summary=(
                "The annual review of Employment and Social Developments in Europe finds labour "
                "and skills shortages in health care, construction and ICT, and calls for "
                "more adult learning and labour market integration of migrants."
            ),
            language="en",
            kind="news",
            published=d(-15),
        ),
    ]


def _bryssel(now: datetime, *, dated: bool, second: bool) -> list[RawItem]:
    """The Brussels office's page: ``dated``: before its layout changed (entries with a
    date); ``second``: after it wrote about the LIFE call."""

    def d(days: float, hour: int = 10) -> datetime:
        return _at(now, days, hour)

    base = "https://goteborg.se/wps/portal/enhetssida/brysselkontoret/aktuellt/"

    def pub(days: float) -> datetime | None:
        return d(days) if dated else None

    out = [
        RawItem(
            key=base + "veckobrev-sammanhallningspolitik",
            title="Veckobrev från Brysselkontoret: så påverkar vi sammanhållningspolitiken efter 2027",
            link=base + "veckobrev-sammanhallningspolitik",
            summary=(
                "Kommissionen har öppnat ett samråd om sammanhållningspolitiken. Göteborgs Stad "
                "och Göteborgsregionen tar fram ett gemensamt remissvar och bjuder in "
                "kommunernas EU-samordnare att bidra med ståndpunkter."
            ),
            language="sv",
            kind="news",
            published=pub(-24),
        ),
        RawItem(
            key=base + "webbinarium-horisont-europa",
            title="Webbinarium: så skriver ni en vinnande ansökan till Horisont Europa",
            link=base + "webbinarium-horisont-europa",
            summary=(
                "Brysselkontoret och Vinnova håller en utbildning för kommunala tjänstepersoner: "
                "steg för steg genom ansökan, budget och partnerskap. Anmälan senast veckan före."
            ),
            language="sv",
            kind="event",
            published=pub(-24),
            opening=d(9, 13),
        ),
        RawItem(
            key=base + "partnersok-porto-yrkesutbildning",
            title="Partnersökning: Porto söker partner till Erasmus+-projekt om yrkesutbildning",
            link=base + "partnersok-porto-yrkesutbildning",
            summary=(
                "Porto kommun söker en svensk kommun som partner i ett Erasmus+-projekt om "
                "lärlingsplatser och yrkesutbildning för unga. Intresseanmälan till "
                "Brysselkontoret."
            ),
            language="sv",
            kind="partner_search",
            published=pub(-24),
            deadlines=(d(15, 17),),
        ),
    ]
    if second:
        life = f"LIFE-{_year(now)}-CET-LOCAL"
        out += [
            RawItem(
                key=base + "life-energiomstallning-kommuner",
                title=f"{life}: stöd till kommunernas energiomställning",
                link=base + "life-energiomstallning-kommuner",
                summary=(
                    f"EU:s LIFE-program har öppnat utlysningen {life} om tekniskt "
                    "stöd för energirenovering av byggnader. Passar kommuner och "
                    "fastighetsbolag i Göteborgsregionen."
                ),
                language="sv",
                kind="call",
                identifier=life,
                published=pub(-15),
                deadlines=(_at(now, 40, 17),),
            ),
            RawItem(
                key=base + "natverkstraff-eu-samordnare",
                title="Nätverksträff för EU-samordnare i Göteborgsregionen",
                link=base + "natverkstraff-eu-samordnare",
                summary=(
                    "Höstens träff i EU-nätverket: erfarenhetsutbyte mellan kommunernas "
                    "EU-samordnare och Göteborgs Stad om gemensamma ansökningar."
                ),
                language="sv",
                kind="news",
                published=pub(-15),
            ),
        ]
    return out


SERVER_ERROR = SourceError(
    "http_500",
    "HTTP 500 Internal Server Error from https://goteborg.se/wps/portal/enhetssida/brysselkontoret/aktuellt",
)


def history(now: datetime) -> list[Poll]:
    """Three weeks of polls, oldest first. Every source was polled a few times; the
    Tillväxtverket call's deadline moved between two polls; the Brussels office's page lost
    its dates (a layout warning) and then failed three times in a row."""
    polls = [
        Poll("ft-portal", -21, tuple(_ft_portal(now)[:4] + _ft_portal(now)[4:5])),
        Poll("esf-utlysningar", -20, tuple(_esf(now)[:1] + _esf(now)[2:])),
        Poll("tillvaxtverket-utlysningar", -20, tuple(_tillvaxtverket(now, moved=False)[:1])),
        Poll("interreg-kalender", -19, tuple(_interreg(now))),
        Poll("haveyoursay", -19, tuple(_haveyoursay(now)[:1] + _haveyoursay(now)[2:])),
        Poll("presscorner", -19, ()),
        Poll("goteborg-bryssel", -23, tuple(_bryssel(now, dated=True, second=False))),
        Poll("presscorner", -14, tuple(_presscorner(now)[2:])),
        Poll("goteborg-bryssel", -15, tuple(_bryssel(now, dated=True, second=True))),
        Poll("ft-portal", -11, tuple(_ft_portal(now))),
        Poll("esf-utlysningar", -9, tuple(_esf(now))),
        Poll("tillvaxtverket-utlysningar", -8, tuple(_tillvaxtverket(now, moved=False))),
        Poll("presscorner", -7, tuple(_presscorner(now)[1:])),
        Poll("goteborg-bryssel", -6, tuple(_bryssel(now, dated=False, second=True))),
        Poll("haveyoursay", -5, tuple(_haveyoursay(now))),
        Poll("tillvaxtverket-utlysningar", -4, tuple(_tillvaxtverket(now, moved=True))),
        Poll("interreg-kalender", -3, tuple(_interreg(now))),
        Poll("presscorner", -2, tuple(_presscorner(now))),
        Poll("goteborg-bryssel", -2, error=SERVER_ERROR),
        Poll("ft-portal", -1, tuple(_ft_portal(now))),
        Poll("esf-utlysningar", -1, tuple(_esf(now))),
        Poll("goteborg-bryssel", -1, error=SERVER_ERROR),
        Poll("goteborg-bryssel", -0.1, error=SERVER_ERROR),
        Poll("haveyoursay", -0.5, tuple(_haveyoursay(now))),
        Poll("tillvaxtverket-utlysningar", -0.3, tuple(_tillvaxtverket(now, moved=True))),
        Poll("interreg-kalender", -0.4, tuple(_interreg(now))),
        Poll("presscorner", -0.2, tuple(_presscorner(now))),
    ]
    return sorted(polls, key=lambda p: p.days)


def latest(now: datetime) -> dict[str, tuple[RawItem, ...]]:
    """What each source gives now (its last successful poll): what ``SampleFeeds`` serves."""
    out: dict[str, tuple[RawItem, ...]] = {}
    for p in history(now):
        if p.error is None:
            out[p.source_id] = p.items
    return out


# -- seeding ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedReport:
    now: datetime  # the time the history was played up to
    polls: int
    items: int
    digests_sent: int


def seed(app: App) -> SeedReport:
    """Play ``history(app.now())`` through the real pipeline into ``app``'s storage, refresh
    the statuses and send each network's digest (email to files)."""
    from notifications.delivery import run_digests

    now = app.now()
    polls = history(now)
    for p in polls:
        poll_once(app, app.config.source(p.source_id), p, now + timedelta(days=p.days))
    app.refresh_statuses()
    outcomes = run_digests(app)
    sent = sum(o.sent for o in outcomes)
    return SeedReport(now=now, polls=len(polls), items=app.storage.count_items(), digests_sent=sent)


def _etag(source_id: str) -> str:
    return next(s.etag() for s in SOURCES if s.id == source_id)


def poll_once(app: App, src: SourceConfig, poll: Poll, at: datetime) -> PollResult:
    """One poll of the history, written as ``Poller`` writes a poll: the same pure stages in
    the same order, the same storage calls. Only the fetch is replaced by ``poll.items``."""
    storage = app.storage
    state = storage.source_state(src.id, with_count=False)
    if poll.error is not None:
        failed = PollResult(src.id, PollStatus.ERROR, error=poll.error)
        retry = next_attempt(state.consecutive_failures + 1, src.parsed_schedule.approx_seconds, at)
        storage.record_failure(src.id, poll.error, failed, at, retry, at)
        return failed
    classifier = app.classifier
    items = [normalise(raw, src, at, app.config.tz) for raw in poll.items]
    by_key: dict[str, Classification] = {}
    for it in items:
        by_key.setdefault(it.key, classifier(it, src))
    layout = check_layout(state, items, src.kind)
    known = storage.known_slices(src.id)
    fresh = [it for it in items if it.key not in known]
    candidates = storage.duplicate_candidates(src.id, *candidate_keys(fresh)) if fresh else []
    intents = decide(items, known, candidates, by_key)
    arrived = arrivals(
        intents,
        at,
        first_poll=not state.baseline_done,
        flood_threshold=app.config.email.flood_threshold,
    )
    counts = {k: sum(1 for i in arrived.intents if i.kind == k) for k in IntentKind}
    notes = [*layout.warnings, *arrived.notes]
    result = PollResult(
        src.id,
        PollStatus.OK,
        new=counts[IntentKind.NEW],
        updated=counts[IntentKind.UPDATED],
        unchanged=counts[IntentKind.UNCHANGED],
        parsed=len(items),
        warnings=tuple(notes),
        announced=arrived.announced,
        baselined=arrived.baselined,
    )
    outcome = storage.apply(
        src.id,
        arrived.intents,
        result,
        at,
        cache=(_etag(src.id), None),
        warning="; ".join(notes) or None,
        field_profile=layout.profile,
        started_at=at,
        rules_version=classifier.version,
    )
    if outcome.merged_records:
        stored = storage.get_items(outcome.merged_records)
        storage.set_tags_many({s.id: classifier(s, src) for s in stored}, at, classifier.version)
    return result


# -- the sample feeds -------------------------------------------------------------------------


def rss(items: Sequence[RawItem], title: str) -> bytes:
    """An RSS 2.0 feed of ``items`` (what a preview of the source shows)."""
    rows = []
    for it in items:
        date = it.published if isinstance(it.published, datetime) else None
        rows.append(
            "<item>"
            f'<guid isPermaLink="false">{escape(it.key)}</guid>'
            f"<title>{escape(it.title)}</title><link>{escape(it.link)}</link>"
            f"<description>{escape(it.summary)}</description>"
            + (f"<pubDate>{format_datetime(date)}</pubDate>" if date else "")
            + "</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://demo.example/</link>"
        + "".join(rows)
        + "</channel></rss>"
    ).encode()


def ical(items: Sequence[RawItem]) -> bytes:
    """An iCalendar feed of ``items``: DTSTART the opening, DTEND the last deadline."""

    def stamp(value: object) -> str:
        assert isinstance(value, datetime)
        return value.astimezone(STOCKHOLM).strftime("%Y%m%d")

    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//EU-bevakning//demo//SV"]
    for it in items:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{it.key}",
            f"SUMMARY:{it.title}",
            f"URL:{it.link}",
            f"DESCRIPTION:{it.summary}",
            *([f"DTSTART;VALUE=DATE:{stamp(it.opening)}"] if it.opening else []),
            *([f"DTEND;VALUE=DATE:{stamp(it.deadlines[-1])}"] if it.deadlines else []),
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


class SampleFeeds:
    """The demo's sources on a loopback HTTP server, in a thread.

    A request that names the ETag the seeded polls stored gets 304 Not Modified (so a
    scheduled poll is real and changes nothing); one without it (a preview) gets the feed;
    a broken source's page answers 500; ``/robots.txt`` allows everything."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, tuple[DemoSource, bytes, str]] = {}
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, now: datetime) -> None:
        """Serve what each source gives at ``now`` (``latest``)."""
        current = latest(now)
        for s in SOURCES:
            items = current.get(s.id, ())
            body, ctype = (
                (ical(items), "text/calendar; charset=utf-8")
                if s.kind == "ical"
                else (rss(items, s.name), "application/rss+xml; charset=utf-8")
            )
            self.routes[s.path] = (s, body, ctype)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def allow_entry(self) -> str:
        """The ``[fetch] allow_private_networks`` entry that admits this server only."""
        return self.url.removeprefix("http://")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/robots.txt":
                    return self._send(200, b"User-agent: *\nAllow: /\n", "text/plain")
                route = routes.get(path)
                if route is None:
                    return self._send(404, b"not found", "text/plain")
                src, body, ctype = route
                if src.broken:
                    return self._send(500, b"Internal Server Error", "text/plain")
                if self.headers.get("If-None-Match") == src.etag():
                    return self._send(304, b"", ctype, src.etag())
                return self._send(200, body, ctype, src.etag())

            def _send(self, status: int, body: bytes, ctype: str, etag: str | None = None) -> None:
                self.send_response(status)
                if etag:
                    self.send_header("ETag", etag)
                if status != 304:
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        return Handler

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
