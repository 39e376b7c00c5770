"""Configuration problems in the interface's language.

Validation speaks English (``watcher check-config``, logs, the API). The admin shows the
same problems next to the fields it edits, in Swedish when the interface is Swedish: each
message is matched against the patterns below and rewritten, with the quoted values kept as
they are. A message no pattern knows is shown as it came (in English) rather than lost.
"""

from __future__ import annotations

import re

# (pattern matching the whole English message, Swedish template with {0}, {1} … for groups)
_SV: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.DOTALL), t)
    for p, t in [
        # pydantic's own messages, for the types the configuration uses
        (r"Field required", "obligatoriskt fält"),
        (r"unknown key", "okänd nyckel"),
        (r"Input should be a valid integer.*", "ange ett heltal"),
        (r"Input should be a valid number.*", "ange ett tal"),
        (r"Input should be a valid boolean.*", "ange true eller false"),
        (r"Input should be a valid string", "ange en text"),
        (r"Input should be a valid (?:list|tuple|array)", "ange en lista"),
        (r"Input should be a valid dictionary.*", "ange en tabell"),
        (r"Input should be greater than or equal to (.+)", "minst {0}"),
        (r"Input should be greater than (.+)", "större än {0}"),
        (r"Input should be less than or equal to (.+)", "högst {0}"),
        (r"Input should be less than (.+)", "mindre än {0}"),
        (r"String should have at least 1 character", "får inte vara tomt"),
        (r"String should have at least (\d+) characters", "minst {0} tecken"),
        (r"String should have at most (\d+) characters", "högst {0} tecken"),
        (r"Input should be a valid URL.*", "ange en giltig adress (URL)"),
        (r"Input should be (.+) or ('[^']*')", "ska vara {0} eller {1}"),
        (r"Input should be ('[^']*')", "ska vara {0}"),
        # watcher/config.py
        (r"interval must be at least 1 minute", "intervallet måste vara minst 1 minut"),
        (r"invalid cron expression (.+?): (.+)", "ogiltigt cron-uttryck {0}: {1}"),
        (
            r"(.+) is neither an interval like .+ nor a 5-field cron expression like .+",
            "{0} är varken ett intervall som '6h', '30m', '1d' eller ett cron-uttryck med fem "
            "fält som '0 7 * * 1-5'",
        ),
        (r"(.+) is not one plain email address", "{0} är inte en enda e-postadress"),
        (
            r"use printable ASCII only \(it is sent as an HTTP header\)",
            "använd bara skrivbara ASCII-tecken (texten skickas som HTTP-huvud)",
        ),
        (r"unknown time zone (.+)", "okänd tidszon {0}"),
        (
            r"(.+) is not an IP address, CIDR network or IP:port",
            "{0} är varken en IP-adress, ett CIDR-nät eller IP:port",
        ),
        (
            r"passwords and secret keys do not belong in config\.toml.*",
            "lösenord och hemliga nycklar hör inte hemma i config.toml: sätt "
            "WATCHER_ADMIN_PASSWORD / WATCHER_SECRET_KEY i miljön",
        ),
        (
            r"the SMTP password must not be in config\.toml.*",
            "SMTP-lösenordet får inte stå i config.toml: lägg det i miljövariabeln som "
            "email.smtp.password_env anger (normalt WATCHER_SMTP_PASSWORD)",
        ),
        (
            r"use lower-case letters, digits, '-' and '_' \(max 63\)",
            "använd gemener, siffror, '-' och '_' (högst 63 tecken)",
        ),
        (r"(.+) is not an http\(s\) URL", "{0} är inte en http(s)-adress"),
        (
            r"(.+): use 'daily HH:MM', 'weekdays HH:MM' or days like .+",
            "{0}: ange 'daily HH:MM', 'weekdays HH:MM' eller dagar som 'mon 08:00', "
            "'mon,thu 08:00'",
        ),
        (r"(.+) is listed twice", "{0} står två gånger"),
        (r"unknown area (.+); known: (.+)", "okänt område {0}; kända: {1}"),
        (r"unknown theme (.+); known: (.+)", "okänt tema {0}; kända: {1}"),
        (r"sources: duplicate id\(s\) (.+)", "källor: dubbla id: {0}"),
        (r"networks: duplicate id\(s\) (.+)", "nätverk: dubbla id: {0}"),
        (r"unknown adapter kind (.+); known: (.+)", "okänd källtyp {0}; kända: {1}"),
        # the adapters' options (sources/)
        (r"invalid regular expression (.+?): (.+)", "ogiltigt reguljärt uttryck {0}: {1}"),
        (r"invalid CSS selector (.+?): (.+)", "ogiltig CSS-väljare {0}: {1}"),
        (
            r"unknown programme (.+); use a numeric code or one of (.+)",
            "okänt program {0}; ange en sifferkod eller något av {1}",
        ),
        (r"unknown type (.+); use one of (.+)", "okänd typ {0}; ange något av {1}"),
        (r"unknown status (.+); use one of (.+)", "okänd status {0}; ange något av {1}"),
        (r"at least one type is needed", "minst en typ behövs"),
        (r"at least one status is needed", "minst en status behövs"),
        (r"use OPEN, CLOSED or ALL", "ange OPEN, CLOSED eller ALL"),
        (
            r"unknown ESF\+ region (.+); use one of (.+) or 'nationell'",
            "okänd ESF+-region {0}; ange någon av {1} eller 'nationell'",
        ),
        (
            r"unknown region (.+); use a region name such as .+",
            "okänd region {0}; ange ett regionnamn som 'Västra Götaland', 'Halland', ett "
            "programområde som 'Västsverige', eller 'national'",
        ),
    ]
]


def localise(message: str, lang: str) -> str:
    """``message`` (a configuration problem, in English) in ``lang``."""
    if lang != "sv":
        return message
    for pattern, template in _SV:
        m = pattern.fullmatch(message)
        if m:
            return template.format(*m.groups())
    return message


# -- poll errors and health warnings ------------------------------------------------------------
#
# A failed poll is stored as a code (``watcher/http.py``'s table, the adapters' parse errors)
# and an English message holding the technical detail (a server's words, a URL). The pages
# name the code in the interface's language and show the detail as it came.

ERROR_LABELS: dict[str, tuple[str, str]] = {
    "timeout": ("tidsgränsen nåddes", "timed out"),
    "dns_error": ("adressen hittades inte (DNS)", "address not found (DNS)"),
    "connection_error": ("ingen anslutning", "no connection"),
    "tls_error": ("TLS-fel", "TLS error"),
    "invalid_url": ("ogiltig adress", "invalid URL"),
    "blocked_scheme": ("adresstypen är inte tillåten", "URL scheme not allowed"),
    "blocked_address": ("adressen är spärrad", "address blocked"),
    "too_many_redirects": ("för många omdirigeringar", "too many redirects"),
    "robots_disallowed": ("robots.txt förbjuder hämtning", "disallowed by robots.txt"),
    "rate_limited": ("servern bad oss vänta", "rate limited"),
    "too_large": ("svaret är för stort", "response too large"),
    "bad_encoding": ("felaktig kodning", "bad encoding"),
    "empty_body": ("tomt svar", "empty response"),
    "invalid_feed": ("inget giltigt flöde", "not a valid feed"),
    "invalid_ical": ("ingen giltig kalender", "not a valid calendar"),
    "invalid_json": ("ogiltig JSON", "invalid JSON"),
    "invalid_html": ("ogiltig HTML", "invalid HTML"),
    "hostile_xml": ("farlig XML", "hostile XML"),
    "selector_no_match": ("väljaren hittade inget", "selector matched nothing"),
    "unexpected_structure": ("oväntad uppbyggnad", "unexpected structure"),
    "db_unavailable": ("databasen svarar inte", "database unavailable"),
    "db_revision": ("databasen har fel version", "database at the wrong revision"),
    "db_busy": ("databasen är upptagen", "database busy"),
}


def error_label(code: str | None, lang: str) -> str:
    """A poll error's code in words (``http_503`` is "HTTP-fel 503"); an unknown code as is."""
    if not code:
        return ""
    if code.startswith("http_") and code[5:].isdigit():
        return f"HTTP-fel {code[5:]}" if lang == "sv" else f"HTTP error {code[5:]}"
    pair = ERROR_LABELS.get(code)
    if pair is None:
        return code
    return pair[1] if lang == "en" else pair[0]


_FIELDS_SV = {
    "published": "publiceringsdatum",
    "deadline": "sista dag",
    "deadlines": "sista dagar",
    "opening": "öppningsdag",
    "summary": "sammanfattning",
    "status": "status",
    "programme": "program",
    "budget": "budget",
    "identifier": "id",
    "link": "länk",
    "title": "titel",
}


def _fields_sv(names: str) -> str:
    return ", ".join(_FIELDS_SV.get(n.strip(), n.strip()) for n in names.split(","))


_WARNINGS_SV: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.DOTALL), t)
    for p, t in [
        # watcher/pipeline/layout.py
        (
            r"layout changed\? the source gave no items \(last time (\d+)\)",
            "sidan kan ha ändrats: källan gav inga poster (förra gången {0})",
        ),
        (
            r"layout changed\? no items found — check the CSS selectors",
            "sidan kan ha ändrats: inga poster hittades, kontrollera CSS-väljarna",
        ),
        (r"layout changed\? no items found", "sidan kan ha ändrats: inga poster hittades"),
        (
            r"layout changed\? items no longer have (.+)",
            "sidan kan ha ändrats: posterna saknar nu {fields0}",
        ),
        # watcher/pipeline/arrivals.py
        (
            r"(\d+) open calls on a first poll \(more than (\d+)\): held for the admin .+",
            "{0} öppna utlysningar vid första hämtningen (fler än {1}): hålls kvar hos admin i "
            "stället för att skickas; släpp eller kasta dem i admin",
        ),
        (
            r"(\d+) new items at once \(more than (\d+)\): held for the admin .+",
            "{0} nya poster på en gång (fler än {1}): hålls kvar hos admin i stället för att "
            "skickas; släpp eller kasta dem i admin",
        ),
        # watcher/polling.py
        (
            r"(\d+) item\(s\) could not be read and were skipped",
            "{0} poster kunde inte läsas och hoppades över",
        ),
        (
            r"(\d+) item\(s\) stored without (.+?): (.+); read again on the next poll",
            "{0} poster sparade utan {fields1}: {2}; läses igen vid nästa hämtning",
        ),
        (
            r"(\d+) item\(s\) stored: (.+); read again on the next poll",
            "{0} poster sparade: {1}; läses igen vid nästa hämtning",
        ),
        # watcher/http.py
        (
            r"robots\.txt of (.+) could not be read \((.+)\): polled as allowed",
            "robots.txt för {0} kunde inte läsas ({1}): hämtad som tillåten",
        ),
        (
            r"robots\.txt of (.+) could not be read again \((.+)\): its last copy holds",
            "robots.txt för {0} kunde inte läsas igen ({1}): den senaste kopian gäller",
        ),
        (
            r"invalid UTF-8 repaired: (\d+) invalid byte sequence\(s\) .+ in (.+)",
            "ogiltig UTF-8 lagad: {0} ogiltiga bytesekvenser ersattes med U+FFFD i {1}",
        ),
    ]
]


def warning_parts(text: str | None, lang: str) -> list[tuple[str, bool]]:
    """A source's health warning (notes joined by "; ") as (text, translated) parts: each
    note the patterns know in Swedish, the others as they came (``translated`` False)."""
    if not text:
        return []
    notes = [
        n.strip()
        for n in re.split(r"; (?=layout changed|\d+ (?:new|open|item)|robots|invalid UTF)", text)
    ]
    if lang != "sv":
        return [(n, True) for n in notes if n]
    out: list[tuple[str, bool]] = []
    for note in notes:
        for pattern, template in _WARNINGS_SV:
            m = pattern.fullmatch(note)
            if m:
                groups = m.groups()
                values = {f"fields{i}": _fields_sv(g) for i, g in enumerate(groups)}
                out.append((template.format(*groups, **values), True))
                break
        else:
            if note:
                out.append((note, False))
    return out
