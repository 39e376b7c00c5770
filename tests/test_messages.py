"""Configuration problems in Swedish for the admin: every problem the validators report for
a spread of bad configurations has a Swedish rendering, with the quoted values kept."""

from __future__ import annotations

from typing import Any

import pytest

from sources.registry import validate_config
from watcher.exceptions import ConfigError
from watcher.web.messages import localise

URL = "https://x.example/feed"


def source(kind: str = "rss", **fields: Any) -> dict[str, Any]:
    return {"id": "a", "name": "A", "kind": kind, "url": URL, "schedule": "1h", **fields}


BAD_CONFIGS: list[dict[str, Any]] = [
    {"sources": [source(schedule="6 hours")]},
    {"sources": [source(schedule="0 99 * * *")]},
    {"sources": [source(schedule="30s")]},
    {"sources": [{"id": "a", "kind": "rss", "url": URL}]},
    {"fetch": {"timeout": "abc", "per_host_concurrency": 0, "max_redirects": -1}},
    {"fetch": {"respect_robots_txt": "maybe", "allow_private_networks": ["not-a-net"]}},
    {"sources": [source(url="ftp://x", enabled="x", areas=["nope"], themes=["nada"])]},
    {"sources": [source("html", options={"item": "<<<", "bogus": 1, "deadline_regex": "("})]},
    {
        "networks": [
            {
                "id": "Bad Id",
                "name": "N",
                "members": ["not an email", "a@b.se", "A@b.se"],
                "schedule": "sometimes",
            }
        ]
    },
    {"watcher": {"timezone": "Mars/Base", "user_agent": "Bevakning/1 (å)"}},
    {"sources": "x"},
    {"sources": [source(), source()]},
    {"sources": [source("nope")]},
    {"sources": [source("ft-portal", options={"programmes": ["zzz"], "types": ["q"]})]},
    {"sources": [source("ft-portal", options={"statuses": ["q"]})]},
    {"sources": [source("haveyoursay", options={"feedback_status": "SOON"})]},
    {"sources": [source("esf", options={"regions": ["Atlantis"]})]},
    {"sources": [source("tillvaxtverket", options={"regions": ["Atlantis"]})]},
    {"web": {"admin_password": "hunter2"}},
    {"email": {"backend": "pigeon", "smtp": {"security": "ssl"}}},
]


def problems() -> list[str]:
    out = []
    for data in BAD_CONFIGS:
        with pytest.raises(ConfigError) as e:
            validate_config(data)
        out.extend(p.message for p in e.value.problems)
    return out


def test_every_problem_reported_has_a_swedish_rendering() -> None:
    found = problems()
    assert len(found) >= 25
    untranslated = [m for m in found if localise(m, "sv") == m]
    assert untranslated == []
    half = [localise(m, "sv") for m in found if " or " in localise(m, "sv")]
    assert half == []  # no English left in a Swedish sentence


def test_quoted_values_are_kept_and_english_stays_english() -> None:
    message = "'6 hours' is neither an interval like '6h', '30m', '1d' nor a 5-field cron "
    message += "expression like '0 7 * * 1-5'"
    assert localise(message, "sv").startswith("'6 hours' är varken ett intervall")
    assert localise(message, "en") == message
    assert localise("something new", "sv") == "something new"  # unknown: shown as it came
