"""Rule changes take effect without a restart: stored items are re-tagged with a history,
never made "new" again; a bad rule file keeps the last good rules."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import fetch_settings

FEED = """<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>x</title>
<item><guid>1</guid><title>Nyhet om fjärrvärmenätets framtid</title><link>https://x.example/1</link>
<description>Kommunen bygger om.</description></item></channel></rss>"""

RULE = """
[[rule]]
id = "local-fjarrvarme"
theme = "samhallsbyggnad"
terms.sv = ["fjärrvärme"]
"""


async def test_rule_edit_retags_stored_items(make_app, loopback, tmp_path: Path, clock):
    loopback.add("/f.xml", FEED, content_type="application/rss+xml")
    rules_file = tmp_path / "local.toml"
    rules_file.write_text("# local rules\n", encoding="utf-8")
    app = make_app(
        {
            "fetch": fetch_settings(loopback),
            "rules": {"paths": [str(rules_file)]},
            "sources": [{"id": "f", "name": "f", "kind": "rss", "url": loopback.url("/f.xml")}],
        }
    )
    await app.poll()
    [item] = app.storage.list_items()
    assert "samhallsbyggnad" not in item.tag_ids("theme")
    first_seen, changed_at = item.first_seen, item.changed_at
    old_version = app.classifier.version

    clock.advance(hours=1)
    rules_file.write_text(RULE, encoding="utf-8")
    assert app.reload_rules_if_changed()
    assert app.classifier.version != old_version
    [item] = app.storage.list_items()
    theme = [t for t in item.tags if t.tag == "samhallsbyggnad"]
    assert theme and theme[0].rule_id == "local-fjarrvarme"
    assert theme[0].evidence[0]["matched"].lower().startswith("fjärrvärme")
    assert (item.first_seen, item.changed_at) == (first_seen, changed_at)  # not "new" again
    history = app.storage.tag_history(item.id)
    assert "theme:samhallsbyggnad" in history[-1]["added"]
    assert history[-1]["rules_version"] == app.classifier.version

    # A broken edit: the last good rules stay, the error names the file and line.
    rules_file.write_text(
        RULE + '\n[[rule]]\nid = "broken"\ntheme = "nope"\nterms = ["x"]\n', encoding="utf-8"
    )
    assert not app.reload_rules_if_changed()
    assert app.classifier.error is not None
    assert "local.toml" in str(app.classifier.error)
    [item] = app.storage.list_items()
    assert "samhallsbyggnad" in item.tag_ids("theme")


async def test_config_change_of_rule_paths_takes_effect(make_app, loopback, tmp_path: Path):
    from watcher.config import validate_data

    loopback.add("/f.xml", FEED, content_type="application/rss+xml")
    data = {
        "fetch": fetch_settings(loopback),
        "sources": [{"id": "f", "name": "f", "kind": "rss", "url": loopback.url("/f.xml")}],
    }
    app = make_app(data)
    await app.poll()
    assert not app.reload_rules_if_changed()  # first check only records the version
    rules_file = tmp_path / "local.toml"
    rules_file.write_text(RULE, encoding="utf-8")
    app.set_config(validate_data({**data, "rules": {"paths": [str(rules_file)]}}, app.config.path))
    assert app.reload_rules_if_changed()
    [item] = app.storage.list_items()
    assert "samhallsbyggnad" in item.tag_ids("theme")
    # Source default tags follow a config change too.
    sources = [{**data["sources"][0], "areas": ["partners"]}]
    app.set_config(
        validate_data(
            {**data, "sources": sources, "rules": {"paths": [str(rules_file)]}}, app.config.path
        )
    )
    from watcher.classify import retag

    retag(app.storage, app.classifier, app.now())
    [item] = app.storage.list_items()
    assert "partners" in item.tag_ids("area")
