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
