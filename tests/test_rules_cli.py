"""`watcher rules …` end to end: check, back-test on stored items, evaluate, retag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import DATA, fetch_settings, write_config
from watcher.cli import main

FEED = """<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>x</title>
<item><guid>1</guid><title>Kommunen bygger ut fjärrvärmenätet</title><link>https://x.example/1</link></item>
</channel></rss>"""

NEW_RULE = """
[[rule]]
id = "local-fjarrvarme"
theme = "samhallsbyggnad"
terms.sv = ["fjärrvärme"]
"""


@pytest.fixture
def setup(tmp_path: Path, loopback):
    loopback.add("/f.xml", FEED, content_type="application/rss+xml")
    local = tmp_path / "local.toml"
    local.write_text("# no local rules yet\n", encoding="utf-8")
    cfg = write_config(
        tmp_path / "config.toml",
        {
            "watcher": {"database_url": f"sqlite:///{tmp_path / 'w.db'}"},
            "fetch": fetch_settings(loopback),
            "rules": {"paths": [str(local)]},
            "sources": [
                {
                    "id": "f",
                    "name": "f",
                    "kind": "rss",
                    "url": loopback.url("/f.xml"),
                    "areas": ["forhandsinfo"],
                }
            ],
        },
    )
    runner = CliRunner()

    def run(*args: str) -> object:
        return runner.invoke(main, ["--config", str(cfg), *args])

    return run, tmp_path, local


def test_check_names_file_line_and_rule(setup):
    run, tmp_path, _local = setup
    assert run("rules", "check").exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[rule]]\nid = "oops"\ntheme = "no-such-theme"\nterms = ["x"]\n', encoding="utf-8"
    )
    res = run("rules", "check", str(bad))
    assert res.exit_code == 1
    assert "bad.toml:" in res.output and "oops" in res.output


def test_backtest_shows_gains_without_saving(setup):
    run, tmp_path, local = setup
    assert run("poll").exit_code == 0
    changed = tmp_path / "changed.toml"
    changed.write_text(NEW_RULE, encoding="utf-8")
    res = run("rules", "test", "--rules", str(changed), "--json")
    assert res.exit_code == 0, res.output
    [diff] = [json.loads(x) for x in res.stdout.splitlines()]
    assert diff["gained"] == ["theme:samhallsbyggnad"] and diff["lost"] == []
    assert "local-fjarrvarme" in diff["why"]["theme:samhallsbyggnad"]
    # Nothing was saved: the stored item still lacks the theme.
    item = json.loads(run("items", "list", "--json").stdout.splitlines()[0])
    assert "samhallsbyggnad" not in item["themes"]
    # Once the rule is in the configured file, retag applies it.
    local.write_text(NEW_RULE, encoding="utf-8")
    assert "1 changed" in run("rules", "retag").output
    item = json.loads(run("items", "list", "--json").stdout.splitlines()[0])
    assert "samhallsbyggnad" in item["themes"]


def test_evaluate_json_on_the_dev_set(setup):
    run, _tmp, _local = setup
    data = DATA / "classification/classification-dev.jsonl"
    if not data.exists():
        pytest.skip(f"labelled set missing: {data}")
    res = run("rules", "evaluate", "--data", str(data), "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert set(report) >= {"areas", "themes", "relevance_accuracy", "items"}
    assert report["areas"]["macro_f1"] >= 0.85 and report["themes"]["macro_f1"] >= 0.85
    assert report["relevance_accuracy"] >= 0.9
    assert "fonder-program" in report["areas"]["per_label"]
