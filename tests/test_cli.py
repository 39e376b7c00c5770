"""The command line, end to end against a loopback server and a temp database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import DATA, fetch_settings, write_config
from tests.loopback import LoopbackServer
from watcher.cli import main
from watcher.storage.base import HEAD_REVISION

FEED = """<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>x</title>
<item><guid>1</guid><title>Utlysning: &lt;b&gt;kompetensförsörjning&lt;/b&gt; i Västsverige</title>
<link>https://esf.example/1</link><description>Sista ansökningsdag 16 mars 2027</description></item>
</channel></rss>"""


@pytest.fixture
def cli(tmp_path: Path, loopback: LoopbackServer) -> Any:
    loopback.add("/f.xml", FEED, content_type="application/rss+xml")
    cfg = write_config(
        tmp_path / "config.toml",
        {
            "watcher": {"database_url": f"sqlite:///{tmp_path / 'w.db'}"},
            "fetch": fetch_settings(loopback),
            "sources": [
                {
                    "id": "feed",
                    "name": "Feed",
                    "kind": "rss",
                    "url": loopback.url("/f.xml"),
                    "areas": ["fonder-program"],
                },
                {
                    "id": "cal",
                    "name": "Kalender",
                    "kind": "ical",
                    "url": loopback.url("/cal.ics"),
                    "options": {"programmes": {"Europe": "Interreg Europe"}},
                },
            ],
        },
    )
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        res = runner.invoke(main, ["--config", str(cfg), *args])
        assert res.exit_code == code, res.output
        return res

    return run


def test_poll_then_items_and_sources(cli):
    out = cli("poll").output
    assert "feed" in out and "ok" in out
    lines = [json.loads(x) for x in cli("items", "list", "--json").stdout.splitlines()]
    assert len(lines) == 1
    item = lines[0]
    assert item["title"] == "Utlysning: kompetensförsörjning i Västsverige"
    assert "fonder-program" in item["areas"]
    shown = json.loads(cli("items", "show", str(item["id"]), "--json").stdout)
    assert shown["history"][0]["kind"] == "new"
    assert any(t["tag"] == "fonder-program" and t["rule"] for t in shown["tags"])
    text = cli("items", "show", str(item["id"])).output
    assert "Taggar och varför" in text and "fonder-program" in text
    sources = [json.loads(x) for x in cli("sources", "list", "--json").stdout.splitlines()]
    by = {s["id"]: s for s in sources}
    assert by["feed"]["items"] == 1 and by["feed"]["last_success"] is not None
    assert by["cal"]["last_error"]["code"] == "http_404"
    assert by["cal"]["consecutive_failures"] == 1
    cli("items", "show", "999", code=2)
    assert cli("items", "list", "--since", "2999-01-01", "--json").stdout == ""


@pytest.mark.parametrize("terminal", [True, False])
def test_poll_draws_a_progress_bar_only_on_a_terminal(cli, monkeypatch, terminal):
    """A bar on a terminal; from cron or into a pipe no bar, and no thread redrawing one
    while the poll works (it cost a first poll of 2,000 sources CPU on its main process)."""
    import rich.progress
    from rich.console import Console

    from watcher import cli as cli_mod

    made: list[int] = []

    class Counted(rich.progress.Progress):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(rich.progress, "Progress", Counted)
    monkeypatch.setattr(cli_mod, "err_console", Console(stderr=True, force_terminal=terminal))
    out = cli("poll").output
    assert "feed" in out and "ok" in out
    assert made == ([1] if terminal else [])


def test_sources_test_from_a_saved_file_stores_nothing(cli):
    ics = DATA / "shared_samples/interreg_no_kalender_event.ics"
    if not ics.exists():
        pytest.skip(f"sample missing: {ics}")
    res = cli("sources", "test", "cal", "--file", str(ics), "--json")
    [item] = [json.loads(x) for x in res.stdout.splitlines()]
    assert item["programme"] == "Interreg Europe"
    assert item["deadlines"] == ["2024-06-06T12:00:00+02:00"]
    assert {"key", "title", "link", "status", "opening", "deadlines", "programme"} <= set(item)
    assert cli("items", "list", "--json").stdout == ""
    res = cli("sources", "test", "feed")
    assert "feed: 1 items (not stored)" in res.output
    cli("sources", "test", "nope", code=2)


def test_sources_kinds_lists_every_adapter(cli):
    out = cli("sources", "kinds").output
    for kind in (
        "rss",
        "html",
        "page",
        "ical",
        "ft-portal",
        "esf",
        "tillvaxtverket",
        "haveyoursay",
    ):
        assert kind in out


def test_check_config_and_db_upgrade(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[sources]]\nid = "x"\nname = "x"\nkind = "rss"\nurl = "file:///etc"\n[sources.options]\nfoo = 1\n'
    )
    res = runner.invoke(main, ["--config", str(bad), "check-config"])
    assert res.exit_code == 1
    assert "sources[0].url" in res.output and "sources[0].options.foo" in res.output
    res = runner.invoke(main, ["--config", str(bad), "poll"])
    assert res.exit_code == 2
    good = write_config(
        tmp_path / "good.toml", {"watcher": {"database_url": f"sqlite:///{tmp_path / 'd.db'}"}}
    )
    res = runner.invoke(main, ["--config", str(good), "check-config"])
    assert res.exit_code == 0 and "OK" in res.output
    res = runner.invoke(main, ["--config", str(good), "db", "upgrade"])
    assert res.exit_code == 0 and f"revision {HEAD_REVISION}" in res.output
    res = runner.invoke(main, ["--config", str(tmp_path / "missing.toml"), "check-config"])
    assert res.exit_code == 1 and "does not exist" in res.output


def test_small_things_a_person_notices_in_the_cli(cli):
    """Issue 15.8: ``sources kinds`` printed ``PydanticUndefined`` for options with a
    factory default; ``items list`` stopped at its limit without saying so and cut titles
    mid-word; piped tables squeezed their columns into 80 characters."""
    kinds = cli("sources", "kinds").output
    assert "PydanticUndefined" not in kinds
    assert "programmes ({})" in kinds
    cli("poll")
    out = cli("items", "list", "--limit", "1").output
    assert "Items (1)" in out  # one item stored: nothing hidden, nothing said
    title = "Utlysning: kompetensförsörjning i Västsverige"
    assert title in out  # the whole title on one line, though piped


def test_items_list_says_when_it_shows_only_some(web_app):
    from tests.web_builders import raw, seed

    seed(web_app, "esf", [raw(f"k{n}", f"Utlysning nummer {n} om kompetens") for n in range(3)])
    res = CliRunner().invoke(
        main, ["--config", str(web_app.config.path), "items", "list", "--limit", "2"]
    )
    assert res.exit_code == 0
    assert "Items (2 of 3)" in res.stdout
    assert "1 more not shown: use --limit" in res.stderr


def test_a_second_poll_does_not_fetch_robots_txt_again(tmp_path, loopback):
    """Issue 14: the robots.txt fetched by one `watcher poll` is kept in the database for
    the next (up to a day), so it does not cost every CLI poll a round trip per host."""
    loopback.add("/robots.txt", "User-agent: *\nAllow: /\n", content_type="text/plain")
    loopback.add("/f.xml", FEED, content_type="application/rss+xml")
    cfg = write_config(
        tmp_path / "config.toml",
        {
            "watcher": {"database_url": f"sqlite:///{tmp_path / 'w.db'}"},
            "fetch": fetch_settings(loopback, respect_robots_txt=True),
            "sources": [
                {"id": "feed", "name": "Feed", "kind": "rss", "url": loopback.url("/f.xml")}
            ],
        },
    )
    for _ in range(2):
        res = CliRunner().invoke(main, ["--config", str(cfg), "poll", "--json"])
        assert res.exit_code == 0, res.output
    assert [r.route for r in loopback.requests] == ["/robots.txt", "/f.xml", "/f.xml"]


def test_a_big_poll_lists_the_sources_with_something_to_tell(tmp_path, loopback):
    """Above 25 sources the table lists errors and warnings always, sources with news only
    while they are at most 25, and counts the rest (a 2,000-row table is read by nobody);
    --all lists every one."""
    loopback.add("/f.xml", FEED, content_type="application/rss+xml", etag='"f"')
    loopback.add(
        "/quiet.xml",
        FEED.replace("<guid>1</guid>", "<guid>2</guid>").replace("esf.example/1", "esf.example/2"),
        content_type="application/rss+xml",
        etag='"q"',
    )
    sources = [{"id": "news", "name": "News", "kind": "rss", "url": loopback.url("/f.xml")}]
    sources += [
        {"id": f"q{n:02d}", "name": f"Q{n}", "kind": "rss", "url": loopback.url("/quiet.xml")}
        for n in range(30)
    ]
    sources.append({"id": "gone", "name": "Gone", "kind": "rss", "url": loopback.url("/gone.xml")})
    cfg = write_config(
        tmp_path / "config.toml",
        {
            "watcher": {"database_url": f"sqlite:///{tmp_path / 'w.db'}"},
            "fetch": fetch_settings(loopback),
            "sources": sources,
        },
    )
    runner = CliRunner()
    first = runner.invoke(main, ["--config", str(cfg), "poll"]).output
    # Every source had news on its first poll: too many to list.
    assert "q07" not in first and "32 source(s): 1 error, 31 ok" in first
    assert "31 source(s) with news not listed; --all lists them" in first
    assert "gone" in first  # an error is listed however many sources had news
    newer = FEED.replace("<guid>1", "<guid>3").replace("esf.example/1", "esf.example/3")
    loopback.add(
        "/f.xml", newer.replace("Utlysning:", "Ny utlysning:"), content_type="application/rss+xml"
    )
    out = runner.invoke(main, ["--config", str(cfg), "poll"]).output
    assert "news" in out and "q07" not in out
    assert "32 source(s): 1 error, 30 not modified, 1 ok" in out
    assert "30 quiet source(s) not listed; --all lists them" in out
    again = runner.invoke(main, ["--config", str(cfg), "poll", "--all"]).output
    assert "q07" in again and "not listed" not in again
