"""The merge of a poll's intent into the stored record, value in and value out, from the named
cases in tests/data/merge/cases.toml (no database: ``merge`` is pure)."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from watcher.dates import from_iso
from watcher.pipeline.merge import RecordWrite, Retag, StoredRecord, item_values, merge
from watcher.types import (
    TRACKED_FIELDS,
    Classification,
    FieldChange,
    Item,
    Kind,
    Linked,
    NewItem,
    Status,
    Updated,
    tracked_values,
)

CASES_FILE = Path(__file__).parent / "data" / "merge" / "cases.toml"
CASES: list[dict[str, Any]] = tomllib.loads(CASES_FILE.read_text(encoding="utf-8"))["case"]
NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
CASE_KEYS = {
    "name", "doc", "intent", "now", "stored", "item", "takes_over", "changed", "relevant",
    "expect",
}  # fmt: skip
EXPECT_KEYS = {"values", "unset", "history", "history_fields", "notable", "retag", "takes_over"}
ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
NONE = "<none>"  # an expected value that must be written as None


def when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def build_item(fields: dict[str, Any], key: str = "k") -> Item:
    source = fields["source"]
    return Item(
        source_id=source,
        key=key,
        title=fields["title"],
        link=fields.get("link", f"https://{source}.example/{key}"),
        summary=fields.get("summary", ""),
        language=fields.get("language", "sv"),
        kind=Kind(fields.get("kind", "news")),
        status=Status(fields["status"]) if fields.get("status") else None,
        programme=fields.get("programme"),
        identifier=fields.get("identifier"),
        published=None,
        opening=when(fields.get("opening")),
        deadlines=tuple(sorted(d for x in fields.get("deadlines", ()) if (d := when(x)))),
        budget=fields.get("budget"),
        budget_amount=fields.get("budget_amount"),
        currency=fields.get("currency"),
        regions=(),
        topics=(),
        content_hash="",
    )


def stored_record(fields: dict[str, Any], item_id: int = 1) -> StoredRecord:
    """A record as storage reads it back: instants in UTC, deadlines as UTC ISO strings."""
    it = build_item(fields, key="stored")
    values = {
        "id": item_id,
        "uid": f"{it.source_id}:stored",
        "source_id": it.source_id,
        "relevant": True,
        "first_seen": NOW,
        "last_seen": NOW,
        "changed_at": None,
        "baseline": False,
        "held": False,
        **item_values(it),
    }
    for col in ("opening", "deadline"):
        if values[col] is not None:
            values[col] = values[col].astimezone(UTC)
    values["deadlines"] = [shown(d) for d in values["deadlines"]]
    return StoredRecord(item_id, values, frozenset(fields.get("linked", [it.source_id])))


def shown(value: Any) -> Any:
    """A value as the cases write it: instants as UTC ISO strings."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, str) and ISO_INSTANT.match(value):
        d = from_iso(value)
        return d.astimezone(UTC).isoformat() if d else value
    if isinstance(value, list):
        return [shown(v) for v in value]
    return value


def run_case(case: dict[str, Any]) -> RecordWrite:
    now = when(case.get("now")) or NOW
    item = build_item(case["item"])
    cls = Classification((), case.get("relevant", True))
    if case["intent"] == "new":
        return merge(None, NewItem(item, cls), now)
    stored = stored_record(case["stored"])
    if case["intent"] == "linked":
        intent: Linked | Updated = Linked(item, stored.id, "test", case.get("takes_over", False))
    else:
        old = {f: stored.values[f] for f in TRACKED_FIELDS}
        new = tracked_values(item)
        changes = tuple(FieldChange(f, old[f], new[f]) for f in case["changed"])
        intent = Updated(item, stored.id, changes, classification=cls)
    return merge(stored, intent, now)


def test_case_table_is_well_formed() -> None:
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in CASES:
        assert set(case) <= CASE_KEYS, (case["name"], set(case) - CASE_KEYS)
        assert set(case["expect"]) <= EXPECT_KEYS, (case["name"], set(case["expect"]))
        assert case["intent"] in ("new", "linked", "updated"), case["name"]
        assert ("stored" in case) == (case["intent"] != "new"), case["name"]
        assert ("changed" in case) == (case["intent"] == "updated"), case["name"]
    kinds = {c["intent"] for c in CASES}
    assert kinds == {"new", "linked", "updated"}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_merge_case(case: dict[str, Any]) -> None:
    w = run_case(case)
    expect = case["expect"]
    for col, want in expect.get("values", {}).items():
        assert col in w.values, f"{col} not written"
        got = w.values[col]
        assert shown(got) == (None if want == NONE else shown(want)), col
    for col in expect.get("unset", []):
        assert col not in w.values, f"{col} written: {w.values[col]!r}"
    history = expect["history"]
    if history == "none":
        assert w.history is None
    else:
        assert w.history is not None and w.history.kind == history
        if "history_fields" in expect:
            assert [c["field"] for c in w.history.changes] == expect["history_fields"]
        assert w.history.notable == expect["notable"]
    assert w.notable == expect["notable"]
    assert w.retag == Retag(expect["retag"])
    assert w.takes_over == expect.get("takes_over", False)


def test_every_write_carries_the_record_for_the_duplicate_index() -> None:
    """The index learns the record as written: a takeover's identifier and the kept title
    of a merge that only filled gaps."""
    by_name = {c["name"]: c for c in CASES}
    taken = run_case(by_name["takeover-the-call-rewrites-a-record-that-named-it"])
    assert taken.index_entry is not None
    assert taken.index_entry.identifier == "HORIZON-CL5-2027-01-D3-02"
    assert taken.index_entry.title == "Clean energy transition"
    assert taken.index_entry.days == ("2027-04-15",)
    filled = run_case(by_name["linked-fills-gaps-only"])
    assert filled.index_entry is not None
    assert filled.index_entry.title == "Kompetensförsörjning i Västsverige"
    assert filled.index_entry.identifier == "ESF-2027-KOMP-01"


def test_a_new_item_writes_its_link_and_an_update_finds_its_own_link_by_key() -> None:
    by_name = {c["name"]: c for c in CASES}
    new = run_case(by_name["new-item-is-a-whole-record"])
    assert new.item_id is None and new.link.insert and new.link.values["source_id"] == "esf"
    upd = run_case(by_name["owner-moves-a-deadline-is-news"])
    assert upd.item_id == 1 and not upd.link.insert and upd.link.match_key == "k"
    assert upd.link.values["values"]["deadlines"] == ["2027-04-20T21:59:59+00:00"]


def test_a_renamed_key_updates_the_link_stored_under_the_old_key() -> None:
    case = next(c for c in CASES if c["name"] == "owner-moves-a-deadline-is-news")
    stored = stored_record(case["stored"])
    item = build_item(case["item"], key="new-guid")
    w = merge(stored, Updated(item, stored.id, (), stored_key="old-guid"), NOW)
    assert w.link.match_key == "old-guid" and w.link.values["key"] == "new-guid"


def test_linked_and_updated_need_the_stored_record() -> None:
    item = build_item({"source": "esf", "title": "x"})
    with pytest.raises(ValueError):
        merge(None, Linked(item, 1, "same identifier"), NOW)
