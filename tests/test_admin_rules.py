"""Admin rules: view, edit, validate, back-test before saving, save atomically, re-tag."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from tests.web_builders import config_text, csrf_of, full_disk_for, raw, seed
from watcher.app import App

RULE = """\
# Lokala regler
[[rule]]
id = "lokal-robotar"
area = "partners"
terms.sv = ["robotdammsugare"]
"""

BAD_RULE = """\
[[rule]]
id = "lokal-fel"
area = "inget-sadant-omrade"
terms.sv = ["robot"]
"""


def edit_url(html: str) -> str:
    m = re.search(r'href="(/admin/rules/edit\?file=[^"]+)"', html)
    assert m, "no editable rule file listed"
    return m.group(1).replace("&amp;", "&")


def form_fields(html: str) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))
    return {k: v.replace("&amp;", "&") for k, v in fields.items()}


@pytest.fixture
def robot_item(web_app: App) -> int:
    [item_id] = seed(web_app, "nyheter", [raw("r1", "Robotdammsugare testas i kommunens skolor")])
    item = web_app.storage.get_item(item_id)
    assert item is not None and not item.tag_ids("area")
    return item_id


def test_a_new_local_rule_file_is_back_tested_then_saved_listed_and_applied(
    web_app: App, admin: httpx.Client, robot_item: int
) -> None:
    overview = admin.get("/admin/rules").text
    url = edit_url(overview)
    target = Path(web_app.config.base_dir) / "rules" / "local.toml"
    assert unquote(url.split("file=")[1]) == str(target.resolve())
    assert "skapas när du sparar" in overview
    # Not listed yet: the page does not claim the file is in [rules] paths (issue 15.8).
    assert "Inga egna regelfiler finns i [rules] paths ännu" in overview
    assert "Filerna i [rules] paths i config.toml" not in overview

    page = admin.get(url)
    fields = form_fields(page.text)
    assert fields["version"] == "absent"
    # 1. Back-test: the diff is shown, nothing is written.
    r = admin.post("/admin/rules/edit", data={**fields, "text": RULE, "action": "check"})
    assert r.status_code == 200
    assert "1 av 1 lagrade poster skulle få ändrade taggar." in r.text
    assert "+ area:partners" in r.text and "lokal-robotar" in r.text
    assert not target.exists()
    # 2. Save, with the token of the back-tested text.
    tested = form_fields(r.text)
    assert tested["tested"]
    r = admin.post("/admin/rules/edit", data={**tested, "text": RULE, "action": "save"})
    assert r.status_code == 303, r.text[-2000:]
    assert target.read_text(encoding="utf-8") == RULE
    assert web_app.config.rules.paths == ("rules/local.toml",)
    assert 'paths = ["rules/local.toml"]' in config_text(web_app)
    # 3. In force, and the stored item re-tagged with the rule that explains it.
    item = web_app.storage.get_item(robot_item)
    assert item is not None
    tag = next(t for t in item.tags if t.tag == "partners")
    assert tag.rule_id == "lokal-robotar"
    assert "1 av 1 poster fick ändrade taggar" in admin.get("/admin/rules").text
    entry = web_app.storage.audit_entries()[0]
    assert entry["action"] == "rules.save"
    assert '+terms.sv = ["robotdammsugare"]' in entry["details"]["diff"]
    assert entry["details"]["retag"]["changed"] == 1


def test_saving_a_text_that_was_not_back_tested_shows_the_back_test_first(
    web_app: App, admin: httpx.Client, robot_item: int
) -> None:
    page = admin.get(edit_url(admin.get("/admin/rules").text))
    fields = form_fields(page.text)
    r = admin.post("/admin/rules/edit", data={**fields, "text": RULE, "action": "save"})
    assert r.status_code == 200 and "Provkörning" in r.text
    tested = form_fields(r.text)
    changed = RULE.replace("robotdammsugare", "robotgräsklippare")
    r = admin.post("/admin/rules/edit", data={**tested, "text": changed, "action": "save"})
    assert r.status_code == 200 and "0 av 1 lagrade poster" in r.text  # tested again
    assert not (Path(web_app.config.base_dir) / "rules" / "local.toml").exists()


def test_an_invalid_rule_is_refused_with_its_line_and_nothing_written(
    web_app: App, admin: httpx.Client
) -> None:
    page = admin.get(edit_url(admin.get("/admin/rules").text))
    fields = form_fields(page.text)
    r = admin.post("/admin/rules/edit", data={**fields, "text": BAD_RULE, "action": "check"})
    assert r.status_code == 422
    assert "Reglerna har fel och kan inte sparas" in r.text
    assert "rad 3" in r.text and "inget-sadant-omrade" in r.text
    assert BAD_RULE.splitlines()[2] in r.text.replace("&#34;", '"')  # the text is kept
    assert not (Path(web_app.config.base_dir) / "rules" / "local.toml").exists()
    assert web_app.config.rules.paths == ()
    assert web_app.storage.audit_entries()[0]["action"] == "admin.login"  # a check: not a save
    # A save of it is refused the same way, and recorded with the problem.
    r = admin.post("/admin/rules/edit", data={**fields, "text": BAD_RULE, "action": "save"})
    assert r.status_code == 422
    refused = web_app.storage.audit_entries()[0]
    assert (refused["action"], refused["details"]["reason"]) == ("rules.save_refused", "invalid")
    assert "inget-sadant-omrade" in refused["details"]["problems"][0]["message"]


def test_a_rule_file_changed_meanwhile_is_not_overwritten(
    web_app: App, admin: httpx.Client, robot_item: int
) -> None:
    page = admin.get(edit_url(admin.get("/admin/rules").text))
    r = admin.post(
        "/admin/rules/edit", data={**form_fields(page.text), "text": RULE, "action": "check"}
    )
    tested = form_fields(r.text)
    target = Path(web_app.config.base_dir) / "rules" / "local.toml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# someone else's rules\n", encoding="utf-8")
    r = admin.post("/admin/rules/edit", data={**tested, "text": RULE, "action": "save"})
    assert r.status_code == 409
    assert "Regelfilen har ändrats sedan du öppnade den" in r.text
    assert "robotdammsugare" in r.text  # the admin's text is kept
    assert target.read_text(encoding="utf-8") == "# someone else's rules\n"
    refused = web_app.storage.audit_entries()[0]
    assert (refused["action"], refused["details"]["reason"]) == ("rules.save_refused", "conflict")


def test_only_the_configured_rule_files_can_be_edited(web_app: App, admin: httpx.Client) -> None:
    token = csrf_of(admin.get("/admin/rules").text)
    for path in ("/etc/passwd", str(Path(web_app.config.base_dir) / "config.toml"), "../x.toml"):
        assert admin.get("/admin/rules/edit", params={"file": path}).status_code == 404
        r = admin.post(
            "/admin/rules/edit",
            data={"csrf_token": token, "file": path, "text": "x", "version": "absent"},
        )
        assert r.status_code == 404
    assert admin.get("/admin/rules/default", params={"name": "areas.toml"}).status_code == 200
    assert admin.get("/admin/rules/default", params={"name": "../loader.py"}).status_code == 404


def test_a_rule_file_that_cannot_be_written_is_shown_with_the_text_kept(
    web_app: App, admin: httpx.Client, robot_item: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = (Path(web_app.config.base_dir) / "rules" / "local.toml").resolve()
    full_disk_for(monkeypatch, target)
    page = admin.get(edit_url(admin.get("/admin/rules").text))
    r = admin.post(
        "/admin/rules/edit", data={**form_fields(page.text), "text": RULE, "action": "check"}
    )
    r = admin.post(
        "/admin/rules/edit", data={**form_fields(r.text), "text": RULE, "action": "save"}
    )
    assert r.status_code == 500
    assert "local.toml kunde inte skrivas (No space left on device)" in r.text
    assert "robotdammsugare" in r.text  # the admin's text is kept
    assert not target.exists() and web_app.config.rules.paths == ()
    assert web_app.storage.audit_entries()[0]["details"]["reason"] == "write_failed"
