"""Back-test: the diff of two rule sets over items, before anything is saved."""

from __future__ import annotations

from rules import PlainItem, backtest, rules_from_text
from rules.backtest import format_backtest, summarise
from watcher.types import Classification, Evidence, Tag

OLD = """
[[rule]]
id = "klimat"
theme = "samhallsbyggnad"
terms = ["klimat"]

[[rule]]
id = "utlysning"
area = "fonder-program"
terms = ["utlysning"]
"""

NEW = """
[[rule]]
id = "klimat"
theme = "samhallsbyggnad"
terms = ["klimat", "energi"]

[[rule]]
id = "webb"
area = "kompetens"
terms = ["webbinarium"]
"""

ITEMS = [
    PlainItem("Utlysning om klimat", source_id="a"),  # loses fonder-program
    PlainItem("Energi i städer", source_id="a"),  # gains samhallsbyggnad, becomes relevant
    PlainItem("Klimatet", source_id="a"),  # unchanged
    PlainItem("Webbinarium om utlysning", source_id="b"),  # swaps fonder-program for kompetens
]


def test_backtest_lists_gained_and_lost_tags_with_evidence() -> None:
    diffs = backtest(ITEMS, rules_from_text(OLD), rules_from_text(NEW))
    assert [d.item.title for d in diffs] == [
        "Utlysning om klimat",
        "Energi i städer",
        "Webbinarium om utlysning",
    ]
    first, second, third = diffs
    assert first.gained == ()
    assert [(t.tag, t.rule_id, t.evidence) for t in first.lost] == [
        ("fonder-program", "utlysning", (Evidence("title", "Utlysning"),))
    ]
    assert not first.relevance_changed
    assert [(t.tag, t.evidence) for t in second.gained] == [
        ("samhallsbyggnad", (Evidence("title", "Energi"),))
    ]
    assert second.relevance_changed and second.after.relevant
    assert [t.tag for t in third.gained] == ["kompetens"]
    assert [t.tag for t in third.lost] == ["fonder-program"]
    assert summarise(diffs) == {
        "area:fonder-program": (0, 2),
        "area:kompetens": (1, 0),
        "theme:samhallsbyggnad": (1, 0),
    }


def test_same_rules_change_nothing() -> None:
    rules = rules_from_text(OLD)
    assert backtest(ITEMS, rules, rules) == []
    assert format_backtest([]) == "No item would change."


def test_source_defaults_apply_to_both_sides() -> None:
    old, new = rules_from_text(OLD), rules_from_text(NEW)
    diffs = backtest(ITEMS, old, new, source_defaults={"b": (["fonder-program"], [])})
    third = next(d for d in diffs if d.item.source_id == "b")
    # With the source default the item keeps fonder-program: only kompetens is new.
    assert [t.tag for t in third.gained] == ["kompetens"] and third.lost == ()


def test_backtest_against_stored_classifications() -> None:
    stored = Classification((Tag("area", "partners", "old-rule"),), True)
    diffs = backtest(
        ITEMS[:1], rules_from_text(OLD), rules_from_text(NEW), current=lambda item: stored
    )
    [d] = diffs
    assert [t.tag for t in d.lost] == ["partners"]
    assert [t.tag for t in d.gained] == ["samhallsbyggnad"]


def test_text_report() -> None:
    diffs = backtest(ITEMS, rules_from_text(OLD), rules_from_text(NEW))
    text = format_backtest(diffs, limit=2)
    assert "Utlysning om klimat" in text
    assert "- area:fonder-program  utlysning (title: «Utlysning»)" in text
    assert "+ theme:samhallsbyggnad  klimat (title: «Energi»)" in text
    assert "relevant: False → True" in text
    assert "… and 1 more items" in text
    assert "3 items would change." in text
    assert "area:fonder-program: +0 −2" in text
