"""``watcher admin set-password`` and ``watcher admin audit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.web_builders import BASE_CONFIG
from watcher.cli import main
from watcher.config import load
from watcher.web.auth import verify_password


@pytest.fixture
def config_file(make_app: Any) -> Path:
    app = make_app(BASE_CONFIG)
    path = Path(app.config.path)
    path.write_text("# Kommentar som ska stå kvar\n" + path.read_text(encoding="utf-8"))
    return path


def test_set_password_stores_a_hash_never_the_password(config_file: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(
        main,
        ["--config", str(config_file), "admin", "set-password", "--password-stdin"],
        input="ett riktigt bra lösenord\n",
    )
    assert r.exit_code == 0, r.output
    text = config_file.read_text(encoding="utf-8")
    assert text.startswith("# Kommentar som ska stå kvar\n")
    assert "ett riktigt bra lösenord" not in text
    stored = load(config_file).web.admin_password_hash
    assert stored and stored.startswith("scrypt$")
    assert verify_password("ett riktigt bra lösenord", stored)
    r = runner.invoke(main, ["--config", str(config_file), "admin", "audit", "--json"])
    assert r.exit_code == 0, r.output
    entry = json.loads(r.output.strip().splitlines()[-1])
    assert entry["action"] == "admin.set_password"
    assert entry["details"]["admin_password_hash"] == "***"


def test_set_password_asks_twice_and_can_set_the_user(config_file: Path) -> None:
    r = CliRunner().invoke(
        main,
        ["--config", str(config_file), "admin", "set-password", "--user", "samordnare"],
        input="långt lösenord 123\nlångt lösenord 123\n",
    )
    assert r.exit_code == 0, r.output
    cfg = load(config_file)
    assert cfg.web.admin_user == "samordnare"
    assert cfg.web.admin_password_hash and verify_password(
        "långt lösenord 123", cfg.web.admin_password_hash
    )


def test_a_short_password_is_refused_and_nothing_written(config_file: Path) -> None:
    before = config_file.read_bytes()
    r = CliRunner().invoke(
        main,
        ["--config", str(config_file), "admin", "set-password", "--password-stdin"],
        input="kort\n",
    )
    assert r.exit_code == 2
    assert "at least 10 characters" in r.output
    assert config_file.read_bytes() == before


def test_the_audit_table_shows_what_changed_with_its_values(make_app) -> None:
    """Issue 15.8: ``watcher admin audit`` listed the changed field names only."""
    from watcher.editing import ConfigEditor

    app = make_app(BASE_CONFIG)
    editor = ConfigEditor(app, "admin")
    cf = editor.read()
    entry = dict(editor.entry(cf, "sources", "esf"))
    editor.save_entry(
        cf, "sources", {**entry, "schedule": "6h"}, replace_id="esf", version=cf.version
    )
    r = CliRunner().invoke(main, ["--config", str(app.config.path), "admin", "audit"])
    assert r.exit_code == 0, r.output
    assert "schedule: 3h → 6h" in r.output
