"""Evaluation: the measures, the report shapes, and the default rules on the dev set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules import LabelledItem, evaluate, load_labelled, load_rules, rules_from_text
from rules.evaluate import LabelScore
from watcher.exceptions import RuleError

DEV_SET = Path(__file__).parent / "data/classification/classification-dev.jsonl"

RULES = """
[[rule]]
id = "call"
area = "fonder-program"
terms = ["utlysning"]

[[rule]]
id = "webinar"
area = "kompetens"
terms = ["webbinarium"]

[[rule]]
id = "klimat"
theme = "samhallsbyggnad"
terms = ["klimat"]
"""


def row(
    title: str, areas: list[str], themes: tuple[str, ...] = (), relevant: bool = True
) -> LabelledItem:
    return LabelledItem(
        title=title, areas=frozenset(areas), themes=frozenset(themes), relevant=relevant
    )


def test_label_score_measures() -> None:
    s = LabelScore("x", tp=3, fp=1, fn=2)
    assert s.precision == 0.75 and s.recall == 0.6
    assert s.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert s.support == 5
    assert LabelScore("y", 0, 0, 0).f1 == 0.0 and not LabelScore("y", 0, 0, 0).counted


def test_evaluate_counts_and_macro_average() -> None:
    rules = rules_from_text(RULES)
    rows = [
        row("Utlysning om klimat", ["fonder-program"], ("samhallsbyggnad",)),  # all right
        row("Utlysning", ["fonder-program", "kompetens"]),  # misses kompetens
        row("Webbinarium", ["fonder-program"]),  # kompetens extra, fonder missed
        row("Logotyp", [], relevant=False),  # right: untagged, not relevant
        row("Klimat", [], relevant=False),  # wrong: tagged, so relevant
    ]
    report = evaluate(rows, rules)
    areas = {s.label: s for s in report.areas.labels}
    assert (areas["fonder-program"].tp, areas["fonder-program"].fp, areas["fonder-program"].fn) == (
        2,
        0,
        1,
    )
    assert (areas["kompetens"].tp, areas["kompetens"].fp, areas["kompetens"].fn) == (0, 1, 1)
    # Only labels that occur count in the macro average: fonder-program (0.8) and kompetens (0).
    assert report.areas.macro_f1 == pytest.approx(0.4)
    themes = {s.label: s for s in report.themes.labels}
    assert (themes["samhallsbyggnad"].tp, themes["samhallsbyggnad"].fp) == (1, 1)
    assert report.relevance_accuracy == pytest.approx(4 / 5)
    assert report.items == 5
    assert len(report.mistakes) == 3
    wrong = [m for m in report.mistakes if m.relevance_wrong]
    assert [m.item.title for m in wrong] == ["Klimat"]


def test_json_shape() -> None:
    report = evaluate([row("Utlysning", ["fonder-program"])], rules_from_text(RULES))
    data = json.loads(json.dumps(report.as_json()))
    assert set(data) == {"areas", "themes", "relevance_accuracy", "items"}
    assert set(data["areas"]) == {"macro_f1", "per_label"}
    assert set(data["themes"]) == {"macro_f1", "per_label"}
    assert data["areas"]["per_label"]["fonder-program"] == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1,
    }  # fmt: skip
    assert set(data["areas"]["per_label"]) >= {"paverkan", "natverkssamverkan"}
    assert data["items"] == 1 and data["relevance_accuracy"] == 1.0


def test_text_report_lists_labels_and_mistakes() -> None:
    rows = [row("Webbinarium", ["fonder-program"])]
    text = evaluate(rows, rules_from_text(RULES)).as_text(mistakes=True)
    assert "fonder-program" in text and "macro-F1" in text and "Relevance accuracy" in text
    assert "missing area:fonder-program" in text
    assert "extra area:kompetens [webinar (title: «Webbinarium»)]" in text


def test_load_labelled(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text(
        json.dumps({"id": "a", "title": "T", "source": "Src", "areas": ["paverkan"],
                    "themes": [], "relevant": True, "kind": "consultation"}) + "\n\n",
        encoding="utf-8",
    )  # fmt: skip
    [r] = load_labelled(path)
    assert r.source_id == "Src" and r.kind == "consultation" and r.areas == {"paverkan"}
    path.write_text('{"title": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_labelled(path)
    assert info.value.line == 2


@pytest.mark.skipif(not DEV_SET.exists(), reason=f"labelled dev set not found at {DEV_SET}")
def test_default_rules_meet_the_targets_on_the_dev_set() -> None:
    report = evaluate(load_labelled(DEV_SET), load_rules())
    summary = report.as_text(mistakes=True)
    assert report.items >= 80
    assert report.areas.macro_f1 >= 0.85, summary
    assert report.themes.macro_f1 >= 0.85, summary
    assert report.relevance_accuracy >= 0.9, summary
