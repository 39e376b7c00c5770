"""The editing service (``watcher.editing``) on its own, without the web: config entries
saved under the version check, deleted and switched, each put in force and audited; the
rule workspace's targets, candidate, back-test, save and re-tag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rules.loader import RuleSetError
from tests.conftest import REPO
from tests.web_builders import BASE_CONFIG, config_text, full_disk_for, raw, seed
from watcher.app import App
from watcher.config_edit import ABSENT, FileWriteError, TextFile
from watcher.editing import ConfigEditor, RulesWorkspace, remove_interrupted_writes
from watcher.exceptions import ConfigError, ConfigProblem, EditConflict

NEW_SOURCE = {
    "id": "vinnova",
    "name": "Vinnova",
    "kind": "rss",
    "url": "https://vinnova.example/feed.xml?token=hemligt",
}

ROBOT_RULE = """\
[[rule]]
id = "lokal-robotar"
area = "partners"
terms.sv = ["robotdammsugare"]
"""


@pytest.fixture
def app(make_app: Any) -> App:
    return make_app(BASE_CONFIG)  # type: ignore[no-any-return]


def actions(app: App) -> list[str]:
    """The audit log's actions, oldest first."""
    return [e["action"] for e in reversed(app.storage.audit_entries())]


# -- config entries ------------------------------------------------------------------------


def test_saving_a_new_source_writes_it_puts_it_in_force_and_audits_it(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    cf = editor.read()
    cfg = editor.save_entry(cf, "sources", NEW_SOURCE, replace_id=None, version=cf.version)
    assert cfg.source("vinnova").name == "Vinnova"
    assert app.config.source("vinnova").url == NEW_SOURCE["url"]  # in force, no restart
    assert 'id = "vinnova"' in config_text(app)
    [entry] = app.storage.audit_entries()
    assert (entry["actor"], entry["action"], entry["target"]) == ("anna", "source.add", "vinnova")
    # The audit log never holds a secret, here a token in the URL.
    url = entry["details"]["changes"]["url"]["new"]
    assert url.startswith("https://vinnova.example/feed.xml?token=") and "hemligt" not in url
    assert entry["at"].replace(tzinfo=None) == app.now().replace(tzinfo=None)


def test_an_edit_records_only_the_fields_that_changed(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    cf = editor.read()
    changed = {**editor.entry(cf, "sources", "esf"), "name": "ESF-rådet Väst"}
    editor.save_entry(cf, "sources", changed, replace_id="esf", version=cf.version)
    assert app.config.source("esf").name == "ESF-rådet Väst"
    entry = app.storage.audit_entries()[0]
    assert entry["action"] == "source.edit"
    assert entry["details"]["changes"] == {"name": {"old": "ESF-rådet", "new": "ESF-rådet Väst"}}


def test_a_save_based_on_an_old_version_is_refused_and_writes_nothing(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    stale = editor.read().version
    # Someone else saves meanwhile.
    other = ConfigEditor(app, "bertil")
    cf = other.read()
    renamed = {**other.entry(cf, "networks", "gr-eu"), "name": "Bertils namn"}
    other.save_entry(cf, "networks", renamed, replace_id="gr-eu", version=cf.version)
    text = config_text(app)
    cf = editor.read()
    with pytest.raises(EditConflict) as err:
        editor.save_entry(cf, "sources", NEW_SOURCE, replace_id=None, version=stale)
    assert err.value.expected == stale and err.value.actual == cf.version
    assert config_text(app) == text
    assert "vinnova" not in {s.id for s in app.config.sources}
    # The refusal is recorded, with why and what was asked for (secrets redacted).
    assert actions(app) == ["network.edit", "source.add_refused"]
    refused = app.storage.audit_entries()[0]
    assert (refused["actor"], refused["target"]) == ("anna", "vinnova")
    assert refused["details"]["reason"] == "conflict"
    assert refused["details"]["version"] == {"expected": stale[:16], "actual": cf.version[:16]}
    assert refused["details"]["changes"]["name"] == {"old": None, "new": "Vinnova"}
    assert "hemligt" not in str(refused["details"])


def test_a_file_changed_between_read_and_write_is_not_overwritten(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    cf = editor.read()
    path = Path(str(app.config.path))
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited by hand\n", encoding="utf-8")
    with pytest.raises(EditConflict):
        editor.save_entry(cf, "sources", NEW_SOURCE, replace_id=None, version=cf.version)
    assert config_text(app).endswith("# edited by hand\n")
    [refused] = app.storage.audit_entries()
    assert (refused["action"], refused["details"]["reason"]) == ("source.add_refused", "conflict")


def test_an_invalid_entry_is_refused_with_its_key_path(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    cf = editor.read()
    bad = {**NEW_SOURCE, "url": "ftp://vinnova.example/"}
    with pytest.raises(ConfigError) as err:
        editor.save_entry(cf, "sources", bad, replace_id=None, version=cf.version)
    prefix = editor.key_path(cf, "sources", "vinnova")
    assert prefix == "sources[2]"
    assert any(p.path == f"{prefix}.url" for p in err.value.problems)
    assert "vinnova" not in config_text(app)
    [refused] = app.storage.audit_entries()
    assert (refused["action"], refused["target"]) == ("source.add_refused", "vinnova")
    assert refused["details"]["reason"] == "invalid"
    problems = refused["details"]["problems"]
    assert [p["path"] for p in problems] == [f"{prefix}.url"]
    assert "hemligt" not in str(refused["details"])


def test_an_invalid_edit_of_a_secret_keeps_the_secret_out_of_the_audit_log(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    cf = editor.read()
    bad = {**NEW_SOURCE, "url": "ftp://user:hemligt@vinnova.example/?api_key=hemligt"}
    with pytest.raises(ConfigError):
        editor.save_entry(cf, "sources", bad, replace_id=None, version=cf.version)
    refused = app.storage.audit_entries()[0]
    assert refused["details"]["reason"] == "invalid"
    assert "hemligt" not in str(refused["details"])


def test_a_delete_or_switch_refused_by_validation_is_recorded(app: App) -> None:
    """config.toml broken by hand meanwhile: nothing can be saved over it, and each
    refusal says why."""
    path = Path(str(app.config.path))
    text = path.read_text(encoding="utf-8").replace(
        'url = "https://news.example/"', 'url = "ftp://news.example/"'
    )
    path.write_text(text, encoding="utf-8")
    editor = ConfigEditor(app, "anna")
    with pytest.raises(ConfigError):
        editor.delete_entry("networks", "gr-eu")
    with pytest.raises(ConfigError):
        editor.set_enabled("sources", "esf", False)
    assert config_text(app) == text
    assert actions(app) == ["network.delete_refused", "source.disable_refused"]
    for entry in app.storage.audit_entries():
        assert entry["details"]["reason"] == "invalid"
        assert [p["path"] for p in entry["details"]["problems"]] == ["sources[1].url"]


def test_a_surface_records_the_refusals_of_its_own_checks(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    entry = {**editor.entry(editor.read(), "sources", "esf"), "schedule": "ibland"}
    editor.refuse_entry(
        "sources",
        entry,
        replace_id="esf",
        problems=[ConfigProblem("schedule", "Okänt schema")],
    )
    [refused] = app.storage.audit_entries()
    assert (refused["action"], refused["target"]) == ("source.edit_refused", "esf")
    assert refused["details"]["problems"] == [{"path": "schedule", "message": "Okänt schema"}]
    assert refused["details"]["changes"] == {"schedule": {"old": "3h", "new": "ibland"}}


def test_check_entry_validates_without_writing(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    cf = editor.read()
    text = config_text(app)
    cfg = editor.check_entry(cf, "sources", NEW_SOURCE, replace_id=None)
    assert cfg.source("vinnova").kind == "rss"
    assert config_text(app) == text and "vinnova" not in {s.id for s in app.config.sources}
    assert app.storage.audit_entries() == []


def test_deleting_an_entry_removes_it_and_audits_what_it_held(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    removed = editor.delete_entry("networks", "gr-eu")
    assert removed["members"] == ["anna@example.se"]
    assert not app.config.networks
    assert "gr-eu" not in config_text(app)
    entry = app.storage.audit_entries()[0]
    assert (entry["action"], entry["target"]) == ("network.delete", "gr-eu")
    assert entry["details"]["removed"]["name"] == "GR:s EU-nätverk"
    with pytest.raises(KeyError):
        editor.delete_entry("networks", "gr-eu")
    assert actions(app) == ["network.delete"]


def test_switching_a_source_off_and_on(app: App) -> None:
    editor = ConfigEditor(app, "anna")
    editor.set_enabled("sources", "nyheter", False)
    assert not app.config.source("nyheter").enabled
    assert "enabled = false" in config_text(app)
    editor.set_enabled("sources", "nyheter", True)
    assert app.config.source("nyheter").enabled
    assert "enabled" not in config_text(app)  # true is the default: not written
    assert actions(app) == ["source.disable", "source.enable"]
    entry = app.storage.audit_entries()[0]
    assert entry["details"]["changes"] == {"enabled": {"old": False, "new": None}}
    with pytest.raises(KeyError):
        editor.set_enabled("sources", "nope", True)


def test_the_editing_service_does_not_load_the_web_or_the_cli() -> None:
    """Below both surfaces: importing it loads neither (nor FastAPI, Starlette)."""
    code = (
        "import sys, watcher.editing; print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('fastapi', 'starlette')"
        " or m.startswith(('watcher.web', 'watcher.cli'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# -- rule files ------------------------------------------------------------------------------


def test_rule_targets_are_the_configured_files_or_a_new_local_one(
    make_app: Any, tmp_path: Path
) -> None:
    app = make_app(BASE_CONFIG)
    ws = RulesWorkspace(app, "anna")
    local = (tmp_path / "rules" / "local.toml").resolve()
    assert ws.targets() == [local]
    assert ws.target(str(local)) == local
    for other in ("/etc/passwd", str(tmp_path / "config.toml"), "rules/local.toml", ""):
        with pytest.raises(KeyError):
            ws.target(other)
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("b.toml", "a.toml", "notes.txt"):
        (folder / name).write_text("", encoding="utf-8")
    single = tmp_path / "single.toml"
    single.write_text("", encoding="utf-8")
    app = make_app({**BASE_CONFIG, "rules": {"paths": ["mine", str(single)]}})
    ws = RulesWorkspace(app, "anna")
    assert ws.targets() == [folder / "a.toml", folder / "b.toml", single]
    # The files in force: the built-in ones first, then the same targets.
    assert ws.files()[-3:] == ws.targets() and len(ws.files()) > 3


def test_a_candidate_replaces_one_file_and_names_the_file_of_each_error(app: App) -> None:
    ws = RulesWorkspace(app, "anna")
    [target] = ws.targets()
    rules = ws.candidate(target, ROBOT_RULE)
    assert "lokal-robotar" in {r.id for r in rules.rules}
    assert len(rules.rules) > 1  # the built-in rules too
    with pytest.raises(RuleSetError) as err:
        ws.candidate(target, ROBOT_RULE.replace('"partners"', '"inget-sadant"'))
    assert all(e.path == str(target) for e in err.value.errors)
    assert err.value.errors[0].line == 3


def test_a_backtest_lists_the_items_whose_tags_would_change_and_only_reads(app: App) -> None:
    [robot] = seed(app, "nyheter", [raw("r1", "Robotdammsugare testas i kommunens skolor")])
    seed(app, "nyheter", [raw("r2", "Kommunen bygger ut fjärrvärmen")])
    ws = RulesWorkspace(app, "anna")
    result = ws.backtest(ws.candidate(ws.targets()[0], ROBOT_RULE))
    assert result.checked == 2
    [diff] = result.diffs
    assert getattr(diff.item, "id", None) == robot
    assert [(t.kind, t.tag, t.rule_id) for t in diff.gained] == [
        ("area", "partners", "lokal-robotar")
    ]
    stored = app.storage.get_item(robot)
    assert stored is not None and "partners" not in stored.tag_ids("area")
    since = app.now().replace(year=app.now().year + 1)
    assert ws.backtest(ws.candidate(ws.targets()[0], ROBOT_RULE), since=since).checked == 0


def test_saving_a_new_rule_file_lists_it_reloads_retags_and_audits(app: App) -> None:
    [robot] = seed(app, "nyheter", [raw("r1", "Robotdammsugare testas i kommunens skolor")])
    retagged: list[list[int]] = []
    app.hooks.items_retagged.append(lambda ids: retagged.append(list(ids)))
    ws = RulesWorkspace(app, "anna")
    [target] = ws.targets()
    saved = ws.save(target, ROBOT_RULE, ABSENT)
    assert saved.error is None and saved.listed_as == "rules/local.toml"
    assert saved.old_version == ABSENT and saved.new_version == TextFile.read(target).version
    assert target.read_text(encoding="utf-8") == ROBOT_RULE
    assert app.config.rules.paths == ("rules/local.toml",)
    assert saved.retag is not None and (saved.retag.items, saved.retag.changed) == (1, 1)
    assert retagged == [[robot]]
    stored = app.storage.get_item(robot)
    assert stored is not None and "partners" in stored.tag_ids("area")
    entry = app.storage.audit_entries()[0]
    assert (entry["actor"], entry["action"], entry["target"]) == ("anna", "rules.save", str(target))
    assert '+terms.sv = ["robotdammsugare"]' in entry["details"]["diff"]
    assert entry["details"]["retag"]["changed"] == 1
    # Saved again (listed now): the same file, no second listing.
    again = ws.save(target, ROBOT_RULE + "# ok\n", saved.new_version)
    assert again.listed_as is None and again.error is None
    assert actions(app) == ["rules.save", "rules.save"]


def test_a_rule_file_changed_meanwhile_is_not_overwritten(app: App) -> None:
    ws = RulesWorkspace(app, "anna")
    [target] = ws.targets()
    target.parent.mkdir(parents=True)
    target.write_text("# someone else's rules\n", encoding="utf-8")
    with pytest.raises(EditConflict) as err:
        ws.save(target, ROBOT_RULE, ABSENT)
    assert err.value.actual == TextFile.read(target).version
    assert target.read_text(encoding="utf-8") == "# someone else's rules\n"
    assert app.config.rules.paths == ()
    [refused] = app.storage.audit_entries()
    assert (refused["action"], refused["target"]) == ("rules.save_refused", str(target))
    assert refused["details"]["reason"] == "conflict"


def test_a_rule_save_refused_because_the_rules_do_not_load_is_recorded(app: App) -> None:
    ws = RulesWorkspace(app, "anna")
    [target] = ws.targets()
    with pytest.raises(RuleSetError) as err:
        ws.candidate(target, "[[rule]]\nid = 'x'\narea = 'ingen-sådan'\n")
    ws.refuse(target, err.value)
    [refused] = app.storage.audit_entries()
    assert (refused["action"], refused["details"]["reason"]) == ("rules.save_refused", "invalid")
    assert refused["details"]["problems"][0]["path"].startswith(str(target))
    assert not target.exists()


def test_a_save_that_cannot_take_effect_is_kept_and_says_why(make_app: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(ROBOT_RULE, encoding="utf-8")
    mine = tmp_path / "mine.toml"
    mine.write_text("", encoding="utf-8")
    app = make_app({**BASE_CONFIG, "rules": {"paths": [str(broken), str(mine)]}})
    ws = RulesWorkspace(app, "anna")
    assert app.classifier.error is None
    broken.write_text("[[rule]\n", encoding="utf-8")  # another file breaks meanwhile
    saved = ws.save(mine.resolve(), "# nothing yet\n", TextFile.read(mine).version)
    assert saved.retag is None and saved.error is not None
    assert "do not load" in str(saved.error)
    assert mine.read_text(encoding="utf-8") == "# nothing yet\n"
    entry = app.storage.audit_entries()[0]
    assert entry["action"] == "rules.save" and "retag" not in entry["details"]


# -- failed and interrupted writes ------------------------------------------------------------


def test_a_failed_write_changes_nothing_and_is_recorded(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(str(app.config.path))
    full_disk_for(monkeypatch, path)
    before = path.read_bytes()
    editor = ConfigEditor(app, "anna")
    cf = editor.read()
    with pytest.raises(FileWriteError, match="No space left on device"):
        editor.save_entry(cf, "sources", NEW_SOURCE, replace_id=None, version=cf.version)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")) == []
    assert "vinnova" not in {s.id for s in app.config.sources}  # nothing put in force
    [refused] = app.storage.audit_entries()
    assert refused["action"] == "source.add_refused"
    assert refused["details"]["reason"] == "write_failed"
    assert "No space left" in refused["details"]["error"]


def test_a_failed_rule_file_write_is_recorded(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = RulesWorkspace(app, "anna")
    [target] = ws.targets()
    full_disk_for(monkeypatch, target)
    with pytest.raises(FileWriteError):
        ws.save(target, ROBOT_RULE, ABSENT)
    assert not target.exists() and app.config.rules.paths == ()
    assert actions(app) == ["rules.save_refused"]


def test_temp_files_of_interrupted_writes_are_removed(app: App) -> None:
    config_dir = Path(str(app.config.path)).parent
    [rule_file] = RulesWorkspace(app, "anna").targets()
    rule_file.parent.mkdir(parents=True)
    left = [config_dir / ".config.toml.q7w8e9.tmp", rule_file.parent / ".local.toml.r4t5.tmp"]
    for p in left:
        p.write_text("half", encoding="utf-8")
    keep = config_dir / ".watcher.db.x.tmp"
    keep.write_text("not ours", encoding="utf-8")
    assert sorted(remove_interrupted_writes(app)) == sorted(left)
    assert not any(p.exists() for p in left) and keep.exists()
