"""Config validation: every problem reported with its key path; secrets refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sources.registry import load_config, validate_config
from watcher import config as config_mod
from watcher.config import DigestSchedule, Schedule, validate_data
from watcher.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[1]


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        validate_config(data)
    return {p.path: p.message for p in exc.value.problems}


def source(**kw):
    return {"id": "s", "name": "S", "kind": "rss", "url": "https://example.org/feed", **kw}


def test_the_shipped_config_is_valid_and_lists_the_real_sources():
    cfg = load_config(REPO / "config.toml")
    kinds = {s.kind for s in cfg.sources}
    assert {
        "ft-portal",
        "esf",
        "tillvaxtverket",
        "ical",
        "haveyoursay",
        "rss",
        "html",
        "page",
    } <= kinds
    assert all(s.enabled and (s.areas or s.themes or s.options) for s in cfg.sources)
    assert all(s.url.startswith("https://") for s in cfg.sources)


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ({"sources": [source(kind="nope")]}, "sources[0].kind", "unknown adapter kind"),
        ({"sources": [source(url="file:///etc/passwd")]}, "sources[0].url", "not an http(s) URL"),
        ({"sources": [source(url="ftp://x/y")]}, "sources[0].url", "not an http(s) URL"),
        ({"sources": [source(schedule="often")]}, "sources[0].schedule", "neither an interval"),
        ({"sources": [source(schedule="61 * * * *")]}, "sources[0].schedule", "cron"),
        ({"sources": [source(areas=["economy"])]}, "sources[0].areas", "unknown area"),
        (
            {"sources": [source(options={"colour": "red"})]},
            "sources[0].options.colour",
            "unknown key",
        ),
        (
            {"sources": [source(kind="html", options={"item": "div[", "title": "h2"})]},
            "sources[0].options.item",
            "invalid CSS selector",
        ),
        ({"sources": [source(kind="html", options={})]}, "sources[0].options.item", "required"),
        ({"sources": [source(id="Bad Id")]}, "sources[0].id", "lower-case"),
        ({"watcher": {"timezone": "Mars/Olympus"}}, "watcher.timezone", "unknown time zone"),
        (
            {"fetch": {"allow_private_networks": ["intranet"]}},
            "fetch.allow_private_networks",
            "not an IP",
        ),
        ({"fetch": {"timeout": -1}}, "fetch.timeout", "greater than 0"),
        ({"email": {"smtp": {"password": "hunter2"}}}, "email.smtp", "must not be in config.toml"),
        ({"web": {"admin_password": "x"}}, "web", "do not belong in config.toml"),
        (
            {"networks": [{"id": "n", "name": "N", "members": ["a@b.se, c@d.se"]}]},
            "networks[0].members",
            "one plain email",
        ),
        (
            {"networks": [{"id": "n", "name": "N", "members": ["x@y.se\r\nBcc: z@w.se"]}]},
            "networks[0].members",
            "one plain email",
        ),
        (
            {"networks": [{"id": "n", "name": "N", "schedule": "sometimes"}]},
            "networks[0].schedule",
            "daily HH:MM",
        ),
        (
            {"networks": [{"id": "n", "name": "N", "themes": ["sport"]}]},
            "networks[0].themes",
            "unknown theme",
        ),
        ({"surprise": 1}, "surprise", "unknown key"),
        ({"watcher": {"user_agent": "Bevakning för GR"}}, "watcher.user_agent", "printable ASCII"),
    ],
)
def test_problems_name_their_key(data, path, fragment):
    found = problems(data)
    assert path in found, found
    assert fragment in found[path]


def test_all_problems_are_reported_at_once():
    found = problems(
        {
            "sources": [source(url="gopher://x"), source(id="t", schedule="x")],
            "fetch": {"retries": -1},
        }
    )
    assert {"sources[0].url", "sources[1].schedule", "fetch.retries"} <= set(found)


def test_option_problems_come_with_the_others():
    found = problems({"sources": [source(url="gopher://x", options={"colour": "red"})]})
    assert {"sources[0].url", "sources[0].options.colour"} <= set(found)


def test_the_config_model_alone_keeps_options_raw():
    """``watcher.config`` is below the adapters: its own ``validate_data`` checks the
    structure only; the adapter options are checked one layer up, by the registry."""
    data = {"sources": [source(options={"colour": "red"})]}
    assert validate_data(data).sources[0].options == {"colour": "red"}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.options\.colour"):
        validate_config(data)


def test_load_config_checks_the_options_of_a_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[[sources]]\nid = "s"\nname = "S"\nkind = "html"\nurl = "https://example.org/"\n'
        '[sources.options]\nitem = "div["\n',
        encoding="utf-8",
    )
    assert config_mod.load(path).sources[0].options == {"item": "div["}
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [p.path for p in exc.value.problems] == ["sources[0].options.item"]
    assert exc.value.source == str(path)


def test_duplicate_ids():
    found = problems({"sources": [source(), source()]})
    assert any("duplicate id" in m for m in found.values())


def test_sources_are_found_by_id_and_duplicates_named_once_each():
    """Counted once, not compared with every other id (a config of thousands of sources),
    and found by id from an index the frozen config makes once."""
    many = [source(id=f"s{n}") for n in range(3)] + [source(id="s1"), source(id="s1")]
    found = problems({"sources": many})
    assert any("duplicate id(s) s1" in m and "s0" not in m for m in found.values())
    cfg = config_mod.validate_data({"sources": [source(id=f"s{n}") for n in range(3)]}, "x")
    assert cfg.source("s2") is cfg.sources[2]
    assert cfg.sources_by_id == {s.id: s for s in cfg.sources}
    with pytest.raises(KeyError):
        cfg.source("s9")


def test_schedules():
    assert Schedule.parse("6h").interval.total_seconds() == 21600
    assert Schedule.parse("0 7 * * 1-5").cron == "0 7 * * 1-5"
    with pytest.raises(ValueError):
        Schedule.parse("10s")
    assert DigestSchedule.parse("mon 08:00") == DigestSchedule((0,), 8, 0)
    assert DigestSchedule.parse("daily 07:30").days == tuple(range(7))
    assert DigestSchedule.parse("mon,thu 9:05") == DigestSchedule((0, 3), 9, 5)


def test_load_reports_toml_syntax_and_missing_file(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[watcher\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_mod.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        config_mod.load(tmp_path / "missing.toml")


def test_the_config_is_toml_1_0_as_the_standard_librarys_parser_reads_it(tmp_path):
    """config.toml is read with tomli, which reads TOML 1.1 from version 2.4: the project
    keeps it below, so that what loads here loads with ``tomllib`` (and the other way)."""
    for text in (
        '[watcher]\ntimezone = "Europe/Stockholm"\n[email]\noutbox = "var/outbox"\n',
        '[watcher]\ntimezone = "\\u0045urope/Stockholm"\n',
    ):
        good = tmp_path / "good.toml"
        good.write_text(text, encoding="utf-8")
        assert config_mod.load(good).watcher.timezone == tomllib.loads(text)["watcher"]["timezone"]
    for text in (
        '[email]\nsmtp = { host = "smtp.example.org",\n  port = 587 }\n',  # multi-line
        '[watcher]\nuser_agent = "EU\\x2Dbevakning"\n',  # \x escape
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(tomllib.TOMLDecodeError):
            tomllib.loads(text)
        with pytest.raises(ConfigError, match="not valid TOML"):
            config_mod.load(bad)


def test_every_toml_example_in_the_docs_parses_and_validates():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    checked = 0
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        for block in text.split("```toml")[1:]:
            body = block.split("```", 1)[0]
            data = tomllib.loads(body)
            if {"sources", "watcher", "fetch", "networks", "email", "web"} & set(data):
                validate_config(data)
                checked += 1
    assert checked >= 1


async def test_the_shipped_config_builds_the_service_parts():
    from watcher.http import HttpClient

    cfg = load_config(REPO / "config.toml")
    async with HttpClient(cfg.fetch, cfg.watcher.user_agent):
        pass
