"""config_edit: comment- and order-preserving edits, atomic writes, version tokens."""

from __future__ import annotations

import difflib
import errno
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
import tomlkit

from tests.conftest import REPO
from watcher import config_edit
from watcher.config_edit import (
    ABSENT,
    SOURCE_KEYS,
    ConfigFile,
    FileWriteError,
    TextFile,
    diff_entries,
    redact,
    redact_url,
    remove_stale_temp_files,
    save_text,
    version_of,
)
from watcher.exceptions import ConfigError, EditConflict

CONFIG = """\
# Top comment: keep me.

[watcher]
database_url = "sqlite:///var/watcher.db"  # the database

[web]
port = 8000

[rules]
paths = []

# --- Sources -----------------------------------------------------------

[[sources]]
# Comment inside a: keep me.
id = "a"
name = "Källa A"  # inline comment of a
kind = "rss"
url = "https://a.example/feed.xml"
schedule = "6h"

[sources.options]
include = ["EU"]  # keep EU news only

# About b: goes with b.
[[sources]]
id = "b"
name = "Källa B"
kind = "html"
url = "https://b.example/"

[sources.options]
item = "li.call"

# About c: goes with c.
[[sources]]
id = "c"
name = "Källa C"
kind = "rss"
url = "https://c.example/feed.xml"

# --- Networks ----------------------------------------------------------

[[networks]]
id = "gr"
name = "GR"
members = ["a@example.se"]
"""


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(CONFIG, encoding="utf-8")
    return p


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_editing_one_value_changes_only_that_line(cfg_path: Path) -> None:
    cf = ConfigFile.read(cfg_path)
    entry = cf.entries("sources")[0]
    cf.put_entry("sources", {**entry, "name": "Källa A2"}, replace_id="a", order=SOURCE_KEYS)
    cf.save()
    after = cfg_path.read_text(encoding="utf-8")
    assert changed_lines(CONFIG, after) == [
        '-name = "Källa A"  # inline comment of a',
        '+name = "Källa A2"  # inline comment of a',
    ]


def test_option_changes_stay_in_their_table_with_comments(cfg_path: Path) -> None:
    cf = ConfigFile.read(cfg_path)
    entry = cf.entries("sources")[0]
    entry["options"] = {"include": ["EU", "Bryssel"], "max_items": 20}
    entry["language"] = "sv"
    cf.put_entry("sources", entry, replace_id="a", order=SOURCE_KEYS)
    cf.save()
    after = cfg_path.read_text(encoding="utf-8")
    assert "# Comment inside a: keep me." in after
    assert 'include = ["EU", "Bryssel"]  # keep EU news only' in after
    # The new key goes into the source, before its options table; the new option after
    # the old ones, and the comment introducing b still stands right above b.
    block_a = after.split("# About b")[0]
    assert block_a.index('language = "sv"') < block_a.index("[sources.options]")
    assert block_a.index("include =") < block_a.index("max_items = 20")
    assert '# About b: goes with b.\n[[sources]]\nid = "b"' in after
    assert tomlkit.parse(after).unwrap()["sources"][0]["options"]["max_items"] == 20


def test_adding_a_source_puts_it_after_the_last_one_before_the_next_section(
    cfg_path: Path,
) -> None:
    cf = ConfigFile.read(cfg_path)
    cf.put_entry(
        "sources",
        {
            "id": "d",
            "name": "D",
            "kind": "html",
            "url": "https://d.example/",
            "options": {"item": "article"},
        },
        order=SOURCE_KEYS,
    )
    cfg = cf.save()
    after = cfg_path.read_text(encoding="utf-8")
    assert [s.id for s in cfg.sources] == ["a", "b", "c", "d"]
    # Every line of the original is still there, in the same order.
    assert [line for line in changed_lines(CONFIG, after) if line.startswith("-")] == []
    new_block = after.index('id = "d"')
    assert after.index('id = "c"') < new_block < after.index("# --- Networks")
    assert '[sources.options]\nitem = "article"' in after


def test_deleting_a_source_takes_its_own_comment_and_leaves_the_others(cfg_path: Path) -> None:
    cf = ConfigFile.read(cfg_path)
    removed = cf.delete_entry("sources", "b")
    cf.save()
    after = cfg_path.read_text(encoding="utf-8")
    assert removed["name"] == "Källa B"
    assert "About b" not in after and 'id = "b"' not in after
    assert '# About c: goes with c.\n[[sources]]\nid = "c"' in after
    assert "# Comment inside a: keep me." in after

    cf = ConfigFile.read(cfg_path)
    cf.delete_entry("sources", "a")
    cf.delete_entry("sources", "c")
    cfg = cf.save()
    after = cfg_path.read_text(encoding="utf-8")
    assert cfg.sources == ()
    # The section comments around the sources survive; the entries' own comments do not.
    assert "# --- Sources" in after and "# --- Networks" in after and "# Top comment" in after
    assert "About c" not in after and "inside a" not in after
    assert [n.id for n in cfg.networks] == ["gr"]


def test_rewriting_every_real_source_unchanged_leaves_the_file_byte_identical(
    tmp_path: Path,
) -> None:
    p = tmp_path / "config.toml"
    shutil.copy(REPO / "config.toml", p)
    before = p.read_bytes()
    cf = ConfigFile.read(p)
    for entry in cf.entries("sources"):
        cf.put_entry("sources", entry, replace_id=entry["id"], order=SOURCE_KEYS)
    for entry in cf.entries("networks"):
        cf.put_entry("networks", entry, replace_id=entry["id"])
    assert cf.text().encode("utf-8") == before


def test_a_save_based_on_a_stale_version_is_refused_and_nothing_is_lost(cfg_path: Path) -> None:
    first = ConfigFile.read(cfg_path)
    second = ConfigFile.read(cfg_path)
    first.set_value("web.port", 8001)
    first.save()
    saved = cfg_path.read_bytes()
    second.set_value("web.port", 8002)
    with pytest.raises(EditConflict) as err:
        second.save()
    assert "changed by someone else" in str(err.value)
    assert cfg_path.read_bytes() == saved
    assert "port = 8001" in saved.decode()


def test_an_invalid_edit_is_refused_with_its_key_path_and_nothing_is_written(
    cfg_path: Path,
) -> None:
    cf = ConfigFile.read(cfg_path)
    entry = cf.entries("sources")[1]
    cf.put_entry(
        "sources",
        {**entry, "url": "ftp://b.example/", "options": {"item": "li[[["}},
        replace_id="b",
        order=SOURCE_KEYS,
    )
    with pytest.raises(ConfigError) as err:
        cf.save()
    paths = {p.path: p.message for p in err.value.problems}
    assert "not an http(s) URL" in paths["sources[1].url"]
    assert "invalid CSS selector" in paths["sources[1].options.item"]
    assert cfg_path.read_text(encoding="utf-8") == CONFIG


def test_the_write_is_atomic_keeps_the_mode_and_leaves_no_temp_files(
    cfg_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.chmod(cfg_path, 0o640)
    cf = ConfigFile.read(cfg_path)
    cf.set_value("web.port", 8080)
    cf.save()
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o640
    assert sorted(p.name for p in cfg_path.parent.iterdir()) == ["config.toml"]

    # A failure at the rename leaves the old file whole and no temp file behind, and is a
    # FileWriteError (a ConfigError: every surface reports it), not a bare OSError.
    before = cfg_path.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(config_edit.os, "replace", boom)
    cf = ConfigFile.read(cfg_path)
    cf.set_value("web.port", 9090)
    with pytest.raises(FileWriteError, match="No space left on device") as err:
        cf.save()
    assert isinstance(err.value, ConfigError) and isinstance(err.value.__cause__, OSError)
    assert err.value.path == cfg_path
    assert cfg_path.read_bytes() == before
    assert sorted(p.name for p in cfg_path.parent.iterdir()) == ["config.toml"]


def test_a_folder_that_refuses_the_temp_file_is_a_file_write_error(
    cfg_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only folder (the tests run as root, who may write anyway: the refusal is
    made by hand)."""
    before = cfg_path.read_bytes()

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(config_edit.tempfile, "mkstemp", refuse)
    with pytest.raises(FileWriteError, match="Permission denied"):
        save_text(cfg_path, "x = 1\n", version_of(before))
    assert cfg_path.read_bytes() == before


def test_temp_files_left_by_killed_writes_are_removed_and_nothing_else(
    cfg_path: Path,
) -> None:
    folder = cfg_path.parent
    left = [folder / ".config.toml.k1x2y3.tmp", folder / ".config.toml.abc_9.tmp"]
    for p in left:
        p.write_text("[watcher]\nhalf a fi", encoding="utf-8")
    others = [
        folder / ".other.toml.k1x2y3.tmp",  # another file's
        folder / "config.toml.tmp",
        folder / ".config.toml.bak",
        folder / "notes.txt",
    ]
    for p in others:
        p.write_text("keep", encoding="utf-8")
    (folder / ".config.toml.dir.tmp").mkdir()
    before = cfg_path.read_bytes()
    assert sorted(remove_stale_temp_files(cfg_path)) == sorted(left)
    assert not any(p.exists() for p in left)
    assert all(p.exists() for p in others) and (folder / ".config.toml.dir.tmp").is_dir()
    assert cfg_path.read_bytes() == before
    assert remove_stale_temp_files(cfg_path) == []
    assert remove_stale_temp_files(folder / "missing" / "config.toml") == []


def test_of_two_concurrent_saves_of_one_version_exactly_one_wins(cfg_path: Path) -> None:
    files = [ConfigFile.read(cfg_path) for _ in range(2)]
    for n, cf in enumerate(files):
        cf.set_value("web.port", 9000 + n)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def save(cf: ConfigFile) -> None:
        barrier.wait()
        try:
            cf.save()
            outcomes.append("saved")
        except EditConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=save, args=(cf,)) for cf in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "saved"]


def test_set_value_creates_sections_and_rules_paths_are_added_once(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    cf = ConfigFile.read(p)
    assert cf.version == ABSENT
    cf.set_value("web.admin_password_hash", "scrypt$1$1$1$AA==$AA==")
    cf.add_rules_path("rules/local.toml")
    cf.add_rules_path("rules/local.toml")
    cfg = cf.save()
    assert cfg.rules.paths == ("rules/local.toml",)
    assert cfg.web.admin_password_hash == "scrypt$1$1$1$AA==$AA=="
    cf = ConfigFile.read(p)
    cf.set_value("web.admin_password_hash", None)
    assert cf.save().web.admin_password_hash is None


def test_text_files_are_saved_atomically_against_their_version(tmp_path: Path) -> None:
    p = tmp_path / "rules" / "local.toml"
    v1 = save_text(p, "# one", ABSENT)
    assert p.read_text() == "# one\n"
    with pytest.raises(EditConflict):
        save_text(p, "# two", ABSENT)  # someone created it meanwhile
    tf = TextFile.read(p)
    assert tf.version == v1 and tf.exists
    save_text(p, "# three\n", v1)
    with pytest.raises(EditConflict):
        save_text(p, "# four\n", v1)
    assert p.read_text() == "# three\n"


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        ("hunter2", "admin_password_hash", "***"),
        ("abc", "api_key", "***"),
        ("", "password_env", ""),
        ("https://user:pw@host.example/x?a=1", "url", "https://***@host.example/x?a=1"),
        (
            "https://host.example/x?token=s3cr3t&q=eu",
            "url",
            "https://host.example/x?token=%2A%2A%2A&q=eu",
        ),
        ({"smtp": {"password": "x", "host": "h"}}, "", {"smtp": {"password": "***", "host": "h"}}),
        (
            {"admin": {"alert_urls": ["msteams://T/A/B/C"], "alert_emails": ["a@x.se"]}},
            "",
            {"admin": {"alert_urls": "***", "alert_emails": ["a@x.se"]}},
        ),
    ],
    ids=["hash", "api-key", "empty-stays", "url-userinfo", "url-token", "nested", "apprise-urls"],
)
def test_redact(value: object, key: str, expected: object) -> None:
    assert redact(value, key) == expected


def test_diff_entries_names_changed_fields_with_secrets_masked() -> None:
    old = {"id": "a", "url": "https://h.example/?api_key=old", "options": {"item": "li"}}
    new = {"id": "a", "url": "https://h.example/?api_key=new", "options": {"item": "article"}}
    assert diff_entries(old, new) == {
        "options.item": {"old": "li", "new": "article"},
        "url": {
            "old": "https://h.example/?api_key=%2A%2A%2A",
            "new": "https://h.example/?api_key=%2A%2A%2A",
        },
    }
    assert redact_url("not a url") == "not a url"
