"""The network teaches the tagger: an admin's one-click corrections on the item page win
over the rules, survive every re-tag, are audited, and come out as labelled data that
``watcher rules evaluate`` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from rules.corrections import Correction, apply_corrections, contradictions, shared_terms
from rules.learned import words
from tests.web_builders import csrf_of, raw, seed
from watcher.app import App
from watcher.classify import correct
from watcher.cli import main
from watcher.editing import RulesWorkspace
from watcher.types import Classification, Evidence, Tag

TITLE = "Informationsmöte om ESF+ utlysning för kompetensförsörjning"


def _seed(app: App) -> int:
    [item_id] = seed(
        app,
        "esf",
        [raw("k1", TITLE, summary="Välkommen till ett webbinarium om arbetsmarknad och skola.")],
    )
    return item_id


def _post(client: httpx.Client, item_id: int, **data: str) -> httpx.Response:
    page = client.get(f"/admin/items/{item_id}")
    return client.post(
        f"/admin/items/{item_id}/correct", data={"csrf_token": csrf_of(page.text), **data}
    )


def _tags(app: App, item_id: int) -> dict[str, str]:
    [item] = app.storage.get_items([item_id])
    return {f"{t.kind}:{t.tag}": t.rule_id for t in item.tags}


def test_anonymous_visitors_see_no_corrections(web_app: App, client: httpx.Client) -> None:
    item_id = _seed(web_app)
    page = client.get(f"/items/{item_id}")
    assert page.status_code == 200
    assert "/correct" not in page.text and "Rätta taggarna" not in page.text
    # the admin's view of the page needs a login
    assert client.get(f"/admin/items/{item_id}").status_code == 303
    # and cannot post one (no session: refused before anything is read)
    r = client.post(f"/admin/items/{item_id}/correct", data={"action": "relevant"})
    assert r.status_code == 403
    assert web_app.storage.corrections_of(item_id) == []


def test_a_correction_made_on_the_web_survives_every_retag(
    web_app: App, admin: httpx.Client, clock: Any
) -> None:
    item_id = _seed(web_app)
    before = _tags(web_app, item_id)
    assert before, "the rules tag the item"
    removed = next(iter(before))
    kind, _, tag = removed.partition(":")
    assert "Rätta taggarna" not in admin.get(f"/items/{item_id}").text  # the public page
    page = admin.get(f"/admin/items/{item_id}")
    assert "Rätta taggarna" in page.text and 'name="csrf_token"' in page.text

    r = _post(admin, item_id, action="remove", kind=kind, tag=tag)
    assert r.status_code == 303 and r.headers["location"].startswith(f"/admin/items/{item_id}")
    added = "theme:social-valfard" if "theme:social-valfard" not in before else "area:partners"
    a_kind, _, a_tag = added.partition(":")
    assert _post(admin, item_id, action="add", kind=a_kind, tag=a_tag).status_code == 303

    def check() -> None:
        tags = _tags(web_app, item_id)
        assert removed not in tags
        assert tags[added] == "correction:admin"

    check()
    page = admin.get(f"/admin/items/{item_id}")
    assert "rättad av admin admin" in page.text
    entries = [e for e in web_app.storage.audit_entries() if e["action"] == "item.correct"]
    assert {e["details"]["correction"] for e in entries} == {f"−{removed}", f"+{added}"}
    assert all(e["actor"] == "admin" and e["target"] == f"item:{item_id}" for e in entries)

    # a re-tag by the rules (what `watcher rules retag` and a rule edit run)
    clock.advance(hours=1)
    RulesWorkspace(web_app, "cli").retag()
    check()
    # a poll's update of the item writes the rules' fresh result
    [item] = web_app.storage.get_items([item_id])
    web_app.storage.set_tags_many({item_id: web_app.classifier(item, None)}, clock(), "v2")
    check()

    # undo: the rules decide the label again
    assert _post(admin, item_id, action="undo", kind=kind, tag=tag).status_code == 303
    assert removed in _tags(web_app, item_id)


def test_not_relevant_and_back(web_app: App, admin: httpx.Client) -> None:
    item_id = _seed(web_app)
    assert _post(admin, item_id, action="not_relevant").status_code == 303
    [item] = web_app.storage.get_items([item_id])
    assert not item.relevant and item.tags == ()
    RulesWorkspace(web_app, "cli").retag()
    [item] = web_app.storage.get_items([item_id])
    assert not item.relevant
    assert _post(admin, item_id, action="relevant").status_code == 303
    [item] = web_app.storage.get_items([item_id])
    assert item.relevant and item.tags


def test_a_post_without_the_token_or_from_elsewhere_is_refused(
    web_app: App, admin: httpx.Client
) -> None:
    item_id = _seed(web_app)
    r = admin.post(f"/admin/items/{item_id}/correct", data={"action": "not_relevant"})
    assert r.status_code == 403
    page = admin.get(f"/admin/items/{item_id}")
    r = admin.post(
        f"/admin/items/{item_id}/correct",
        data={"csrf_token": csrf_of(page.text), "action": "not_relevant"},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    assert web_app.storage.corrections_of(item_id) == []
    assert _post(admin, item_id, action="add", kind="area", tag="nope").status_code == 400


def test_export_round_trips_through_evaluate(
    web_app: App, admin: httpx.Client, tmp_path: Path
) -> None:
    item_id = _seed(web_app)
    assert _post(admin, item_id, action="add", kind="area", tag="partners").status_code == 303
    assert _post(admin, item_id, action="add", kind="theme", tag="utbildning").status_code == 303
    download = admin.get("/admin/rules/corrections.jsonl")
    assert download.status_code == 200
    [row] = [json.loads(line) for line in download.text.splitlines()]
    assert row["title"] == TITLE and "partners" in row["areas"] and row["relevant"] is True
    assert "+area:partners" in row["rationale"]
    expected = {"title", "summary", "areas", "themes", "relevant", "source", "language", "id"}
    assert expected <= set(row)

    out = tmp_path / "corrections.jsonl"
    runner = CliRunner()
    config = ["--config", str(web_app.config.path)]
    res = runner.invoke(main, [*config, "rules", "corrections", "--export", str(out)])
    assert res.exit_code == 0, res.output
    assert [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()] == [row]
    by_file = runner.invoke(main, [*config, "rules", "evaluate", "--data", str(out), "--json"])
    by_db = runner.invoke(main, [*config, "rules", "evaluate", "--corrections", "--json"])
    assert by_file.exit_code == 0 and by_db.exit_code == 0, by_file.output + by_db.output
    assert json.loads(by_file.output) == json.loads(by_db.output)
    report = json.loads(by_db.output)
    assert report["items"] == 1
    # the rules missed the two labels the admin added
    assert report["areas"]["per_label"]["partners"]["recall"] == 0.0
    listed = runner.invoke(main, [*config, "rules", "corrections"])
    assert "+area:partners" in listed.output and "1 corrected item" in listed.output


def test_the_admin_sees_the_rules_the_corrections_contradict(
    web_app: App, admin: httpx.Client
) -> None:
    ids = seed(
        web_app,
        "esf",
        [
            raw("a", TITLE, summary="Seminarium om matchmaking för partnersökning."),
            raw("b", "Informationsmöte om utlysning", summary="Partnersökning och matchmaking."),
        ],
    )
    for item_id in ids:
        tags = _tags(web_app, item_id)
        for label in tags:
            kind, _, tag = label.partition(":")
            if kind == "area":
                _post(admin, item_id, action="remove", kind=kind, tag=tag)
        _post(admin, item_id, action="add", kind="area", tag="natverkssamverkan")
    page = admin.get("/admin/rules/corrections")
    assert page.status_code == 200
    assert "Regler som rättelserna motsäger mest" in page.text
    assert "<code>natverkssamverkan" in page.text  # a rule that missed the added area
    assert "+area:natverkssamverkan" in page.text
    assert "matchmaking" in page.text  # a word both corrected items share
    # never applied: the rules in force are what they were
    assert not any(e["action"].startswith("rules.") for e in web_app.storage.audit_entries())


def test_corrections_win_over_the_rules_pure() -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    rules = Classification(
        (
            Tag("area", "kompetens", "kompetens-events", (Evidence("title", "seminarium"),)),
            Tag("theme", "utbildning", "utbildning-school"),
        ),
        True,
    )
    out = apply_corrections(
        rules,
        [
            Correction("theme", "utbildning", False, "anna", at),
            Correction("area", "partners", True, "anna", at),
        ],
    )
    assert out.ids("area") == {"kompetens", "partners"} and out.ids("theme") == frozenset()
    tag = next(t for t in out.tags if t.tag == "partners")
    assert tag.rule_id == "correction:anna" and tag.evidence[0].matched == "2026-12-05T09:30+00:00"
    dropped = Classification((), False, "no rule matched")
    assert apply_corrections(dropped, [Correction("area", "partners", True, "a", at)]).relevant
    assert not apply_corrections(rules, [Correction("relevance", "", False, "a", at)]).relevant

    class It:
        id = 1
        title = "Matchmaking för partnersökning"
        summary = ""
        language = "sv"

    pairs = [(It(), [Correction("theme", "utbildning", False, "a", at)])]
    [c] = contradictions(pairs, [rules], {})
    assert c.rule_id == "utbildning-school" and c.gave_removed == 1
    assert shared_terms(pairs, words) == []  # one item: nothing shared yet


def test_correct_helper_reports_missing_items(web_app: App) -> None:
    from datetime import UTC, datetime

    c = Correction("area", "partners", True, "a", datetime(2026, 12, 5, tzinfo=UTC))
    assert not correct(web_app.storage, web_app.classifier, 999_999, c)
