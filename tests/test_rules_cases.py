"""The default rules against the named cases in tests/data/rules/cases.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from rules import PlainItem, RuleSet, classify, load_rules

CASES_FILE = Path(__file__).parent / "data" / "rules" / "cases.toml"
CASES: list[dict[str, Any]] = tomllib.loads(CASES_FILE.read_text(encoding="utf-8"))["case"]
KNOWN_KEYS = {
    "name", "title", "summary", "language", "kind", "status", "programme", "source",
    "expect", "absent", "relevant", "because",
}  # fmt: skip


@pytest.fixture(scope="module")
def default_rules() -> RuleSet:
    return load_rules()


def _item(case: dict[str, Any]) -> PlainItem:
    return PlainItem(
        title=case["title"],
        summary=case.get("summary", ""),
        source_id=case.get("source", "test"),
        kind=case.get("kind", "news"),
        programme=case.get("programme"),
        status=case.get("status"),
        language=case.get("language", "sv"),
    )


def test_case_table_is_well_formed() -> None:
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    for c in CASES:
        assert set(c) <= KNOWN_KEYS, f"{c['name']}: unknown keys {set(c) - KNOWN_KEYS}"
        assert {"expect", "absent", "relevant"} & set(c), f"{c['name']} checks nothing"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rule_case(case: dict[str, Any], default_rules: RuleSet) -> None:
    result = classify(_item(case), default_rules)
    got = {f"{t.kind}:{t.tag}" for t in result.tags}
    why = {f"{t.kind}:{t.tag}": t.why() for t in result.tags}
    for tag in case.get("expect", []):
        assert tag in got, f"expected {tag}; got {why} ({result.reason})"
    for tag in case.get("absent", []):
        assert tag not in got, f"did not expect {tag}: {why[tag]}"
    if "relevant" in case:
        assert result.relevant is case["relevant"], result.reason or why
        if not case["relevant"]:
            assert result.tags == ()
    for pair in case.get("because", []):
        tag_id, _, rule_id = pair.partition("=")
        tags = [t for t in result.tags if t.tag == tag_id]
        assert tags and tags[0].rule_id == rule_id, why
    for t in result.tags:
        assert t.evidence, f"{t.tag} has no evidence"
