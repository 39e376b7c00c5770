"""The adapters' kinds and options as the admin's source form shows them, in Swedish.

An adapter speaks English where it documents itself (its class docstring, its ``Options``
fields' descriptions: ``watcher sources kinds`` and ``docs/sources.md`` show them), and
that stays its one source of truth for the English interface. The Swedish interface reads
the tables below: a label and a hint per option *name*, since an option name means the same
in every adapter that has it (``include``, ``max_pages``, ``kind`` …), with an entry per
``(kind, name)`` where one adapter gives a name its own meaning, and a short Swedish
description per kind. Keeping the Swedish in the web layer leaves the adapters free of the
interface's languages; ``tests/test_i18n.py`` fails when an adapter gains an option or a
kind these tables do not name, so nothing falls back to English unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OptionLabel:
    label: str  # Swedish
    hint: str = ""  # Swedish; values to type between backticks (shown as code)


_OPT = OptionLabel

OPTIONS: dict[str, OptionLabel] = {
    "api": _OPT("Använd API:t", "läs först WordPress JSON-API:t, sedan HTML-sidorna"),
    "calls": _OPT("Läs utlysningarna"),
    "concurrency": _OPT("Samtidiga hämtningar", "detaljsidor som hämtas samtidigt"),
    "date": _OPT("Publiceringsdatum", "väljare för publiceringsdatumet"),
    "deadline": _OPT("Sista ansökningsdag", "väljare för sista ansökningsdag"),
    "deadline_regex": _OPT(
        "Mönster för sista dag",
        "reguljärt uttryck som hittar sista dagen i postens text (grupp 1 = datumet)",
    ),
    "dtend_is_deadline": _OPT("Slutet är sista dag", "läs `DTEND` som sista ansökningsdag"),
    "exclude": _OPT(
        "Utesluta ord", "hoppa över poster vars titel eller sammanfattning innehåller något ord"
    ),
    "exclude_programmes": _OPT(
        "Uteslutna program", "prefix i `SUMMARY` (eller programnamn) som hoppas över"
    ),
    "feedback_status": _OPT(
        "Samrådsläge", "`OPEN`, `CLOSED` eller `ALL` (`ALL` filtrerar inte på läge)"
    ),
    "ignore": _OPT("Ignorera text", "reguljära uttryck för text som ändras utan betydelse"),
    "include": _OPT(
        "Bara ord", "behåll bara poster vars titel eller sammanfattning innehåller något ord"
    ),
    "item": _OPT("Post", "CSS-väljare för varje post i listan"),
    "kind": _OPT("Typ av poster", "typen som varje post får (nyhet, utlysning, evenemang …)"),
    "language": _OPT("Språk", "språket i posterna, t.ex. `no`"),
    "languages": _OPT("Språk", "språkkoder för titlar och texter"),
    "link": _OPT("Länk", "väljare för länken (normalt titelns länk)"),
    "max_details": _OPT("Högst antal detaljsidor", "detaljsidor som hämtas per hämtning"),
    "max_items": _OPT("Högst antal poster", "läs högst så här många poster"),
    "max_pages": _OPT("Högst antal sidor", "sidor som läses per hämtning"),
    "min_changed_chars": _OPT("Minsta ändring (tecken)", "mindre ändringar ignoreras"),
    "only_mapped": _OPT("Bara kända program", "behåll bara händelser vars prefix har ett program"),
    "opening_regex": _OPT(
        "Mönster för öppningsdag", "reguljärt uttryck som hittar öppningsdagen i postens text"
    ),
    "page_size": _OPT("Poster per sida", "antal träffar per anrop"),
    "per_page": _OPT("Poster per sida", "antal träffar per anrop"),
    "plan": _OPT("Läs utlysningsplanen"),
    "plan_slug": _OPT("Utlysningsplanens sidnamn", "sidans slug i WordPress"),
    "plan_url": _OPT(
        "Utlysningsplanens adress", "HTML-sidan med planen; normalt <webbplats>/utlysningar/<slug>/"
    ),
    "post_type": _OPT("Inläggstyp", "WordPress-inläggstypen för utlysningar"),
    "programme": _OPT("Program", "programnamnet som varje post får"),
    "programmes": _OPT(
        "Program", "programkoder eller förkortningar (`HORIZON`, `LIFE`, `ERASMUS` …)"
    ),
    "regions": _OPT(
        "Regioner", "behåll utlysningar för dessa regioner (eller `nationell`); tomt = alla"
    ),
    "selector": _OPT("Område på sidan", "CSS-väljare för den del av sidan som bevakas"),
    "status": _OPT("Status", "väljare för en statustext (öppen/stängd …)"),
    "statuses": _OPT("Lägen", "`forthcoming`, `open`, `closed` (eller SEDIA-koder)"),
    "summary": _OPT("Sammanfattning", "väljare för sammanfattningen"),
    "text": _OPT("Fritextsökning", "sökord; `***` betyder ingen sökning"),
    "title": _OPT("Titel", "väljare för titeln inuti en post"),
    "topics": _OPT("Ämnen", "ämneskoder (`REGIO`, `EMPL` …); tomt = alla"),
    "types": _OPT("Typer", "`tender`, `grant`, `proposals`, `cascade` (eller koderna 0/1/2/8)"),
    "use_guid": _OPT("Använd guid", "av: poster känns igen på länken även när en guid finns"),
    "wp_query": _OPT("Extra WP-parametrar", "fler parametrar till WordPress-sökningen"),
}

# Where one adapter gives an option name a meaning of its own.
KIND_OPTIONS: dict[tuple[str, str], OptionLabel] = {
    ("ical", "programmes"): _OPT("Program", "prefix i `SUMMARY` → programnamn"),
    ("haveyoursay", "language"): _OPT("Språk", "språket för titlar (tvåbokstavskod, t.ex. `EN`)"),
    ("haveyoursay", "text"): _OPT("Fritextsökning", "sökord; tomt = ingen sökning"),
    ("page", "kind"): _OPT("Typ av poster", "typen som ändringsposterna får"),
    ("tillvaxtverket", "regions"): _OPT(
        "Regioner", "behåll utlysningar för dessa regioner (eller `national`); tomt = alla"
    ),
}

KINDS: dict[str, str] = {
    "esf": (
        "Svenska ESF-rådet: ESF+-utlysningar och utlysningsplanen. Läser utlysningarna via "
        "esf.se:s WordPress JSON-API och sidan med utlysningsplanen; när API:t saknas läses "
        "HTML-sidorna. Öppnings- och sista dag läses ur den svenska texten, regionen ur "
        "etiketter eller titeln."
    ),
    "ft-portal": (
        "EU:s Funding & Tenders Portal (SEDIA-sökningens API). Läser portalens utlysningar sida "
        "för sida; som standard bidrag och kaskadfinansiering som är kommande eller öppna, i de "
        "program kommuner använder. Varje topic blir en post med sin identifierare."
    ),
    "haveyoursay": (
        "Kommissionens samråd på ”Have your say” (JSON-API:t). Varje initiativ som är öppet "
        "för synpunkter blir en post av typen samråd, med synpunktsperioden som öppningsdag "
        "och sista dag. Valfria filter: ämneskoder och fritext."
    ),
    "html": (
        "En listsida som läses med CSS-väljare. ”Post” väljer varje post; i den väljer titel, "
        "länk, datum, sammanfattning och sista dag delarna. Datum läses på svenska, norska, "
        "danska och engelska; mönstren hittar datum i texten när det inte finns något element "
        "för dem. En väljare som plötsligt inte hittar något visas i källans hälsa."
    ),
    "ical": (
        "Ett iCalendar-flöde (.ics), till exempel interreg.no:s kalender över utlysningar. "
        "Varje VEVENT blir en post: DTSTART är öppningsdagen, DTEND sista dagen. Prefixet i "
        "SUMMARY före ett kolon kan kopplas till ett programnamn."
    ),
    "page": (
        "Bevakar en sida utan poster (en utlysningsplan, en sida om nästa utlysning). Sidans "
        "text, eller den del som väljaren pekar ut, jämförs med förra versionen; varje "
        "betydande ändring blir en post som säger vad som lagts till och tagits bort. Första "
        "hämtningen sparar sidan som den är, i tysthet."
    ),
    "rss": (
        "Ett RSS- eller Atom-flöde. Posten känns igen på sin guid, annars länken. Orden i "
        "”Bara ord” och ”Utesluta ord” behåller eller hoppar över poster; mönstren hittar sista "
        "dag och öppningsdag i titel och sammanfattning."
    ),
    "tillvaxtverket": (
        "Tillväxtverket: Regionalfondens utlysningar (RSS och en detaljsida per utlysning). "
        "Läser flödet och sedan sidan för varje ny eller ännu inte stängd utlysning, för "
        "status, regioner, budget och specifika mål. Utlysningar för andra regioner hoppas över."
    ),
}


def option_label(kind: str, name: str) -> OptionLabel | None:
    """The Swedish label and hint of an adapter kind's option (None when unknown)."""
    return KIND_OPTIONS.get((kind, name)) or OPTIONS.get(name)


def kind_help(kind: str) -> str | None:
    """The Swedish description of an adapter kind (None when unknown)."""
    return KINDS.get(kind)
